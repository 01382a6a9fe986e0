"""The Adam-ε probe (muscale/coord/eps_probe.py): ε/√v̂ read from the optimizer state equals
a hand computation; the bulk fit recovers a known slope and extrapolation; an unscaled ε
(μP Adam, ``param.scale_eps=false``, ε = 1e-4) FAILS on the MLP and the GPT and names a
module; μP with ε scaled, microsoft/mup's MuAdam at its default ε = 1e-8 and SGD do not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from muscale.coord import eps_probe
from muscale.coord.eps_probe import EpsData
from muscale.errors import UserError
from tools import calibrate_coord_check as cal

Case = cal.Case
W = (64, 128, 256, 512)
GW = (32, 64, 128, 256)
UNSCALED = {"bug": "eps_unscaled", "param_kw": {"scale_eps": False}, "optim_kw": {"eps": 1e-4}}


def test_measure_is_eps_over_the_rms_of_sqrt_vhat():
    """After one Adam step v = (1 - β2) g², so √v̂ = |g|: the RMS over the entries that got a
    gradient (an embedding's unseen rows are left out)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    opt = torch.optim.Adam(
        [
            {"params": model[0].parameters(), "eps": 1e-3},
            {"params": model[1].parameters(), "eps": 1e-5},
        ],
        lr=0.1,
        betas=(0.9, 0.95),
    )
    idx = torch.tensor([1, 2, 2, 7])
    model(idx).pow(2).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    got = eps_probe.measure(model, opt)
    assert set(got) == {"0.weight", "1.weight", "1.bias"}
    emb = grads["0.weight"][[1, 2, 7]]  # rows the batch used
    assert got["0.weight"][0] == 1e-3
    assert got["0.weight"][1] == pytest.approx(emb.pow(2).mean().sqrt().item(), rel=1e-5)
    for name in ("1.weight", "1.bias"):
        assert got[name] == (1e-5, pytest.approx(grads[name].pow(2).mean().sqrt().item(), rel=1e-5))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    model(idx).sum().backward()
    sgd.step()
    assert eps_probe.measure(model, sgd) == {}


def _synthetic(slope, level, *, seeds=3, sizes=W, noise=0.0, extra_slope=None):
    """r = level · (n / n_max)^slope for three tensors (one with ``extra_slope``)."""
    rng = np.random.default_rng(0)
    n = np.asarray(sizes, float)[:, None, None]
    slopes = np.array([slope, slope, slope if extra_slope is None else extra_slope])
    r = (
        level
        * (n / n.max()) ** slopes
        * np.exp(noise * rng.standard_normal((len(sizes), seeds, 3)))
    )
    eps = np.full_like(r, 1e-4)
    return EpsData(names=["a.weight", "b.weight", "c.bias"], eps=eps, rms=eps / r)


def test_bulk_fit_recovers_slope_extrapolation_and_crossing():
    v = eps_probe.judge(_synthetic(1.0, 0.01, extra_slope=0.0), list(W), horizon=512 * 64)
    assert v.slope == pytest.approx(1.0, abs=1e-9)  # the median ignores the flat tensor
    assert v.ratio_at == pytest.approx(0.01 * 64, rel=1e-9)
    assert v.crossing == pytest.approx(5120, rel=1e-9)  # 0.01 -> 0.1 is 10x the widest width
    assert v.status == "fail"
    assert "a at width ≈ 5120" in v.message() and "param.scale_eps=true" in v.message()
    assert {t.module for t in v.growing()} == {"a", "b"}


@pytest.mark.parametrize(
    ("slope", "level", "horizon", "want"),
    [
        (0.0, 0.5, 65536, "pass"),  # ε scaled like the gradients: a width-free hyperparameter
        (1.0, 1e-6, 65536, "pass"),  # unscaled but harmless up to the horizon
        (1.0, 1e-2, 65536, "fail"),
        (1.0, 1e-2, 2048, "pass"),  # 0.04 at a horizon of 2048
    ],
)
def test_status_from_slope_and_horizon(slope, level, horizon, want):
    v = eps_probe.judge(_synthetic(slope, level, noise=0.01), list(W), horizon=horizon)
    assert v.status == want, v.message()


def test_one_seed_over_two_widths_cannot_decide():
    v = eps_probe.judge(_synthetic(1.0, 0.05, seeds=1, sizes=(64, 128)), [64, 128])
    assert v.status == "inconclusive" and math.isinf(v.half)
    assert "add seeds or widths" in v.message()


def _report(case):
    return cal.judge(case, cal.collect_case(case))


@pytest.mark.parametrize(
    "case",
    [
        Case(model="mlp", optim="adam", sizes=W, seeds=2, **UNSCALED),
        Case(model="gpt", optim="adam", sizes=GW, seeds=2, **UNSCALED),
    ],
    ids=["mlp", "gpt"],
)
def test_unscaled_eps_fails_and_names_a_module(case):
    rep = _report(case)
    assert rep.eps is not None and rep.eps.status == "fail", rep.verdict()
    assert rep.status == "fail"
    assert rep.eps.slope == pytest.approx(1.0, abs=0.15)  # gradients ∝ 1/m, ε fixed
    assert "Adam ε reaches 10% of √v̂" in rep.verdict()
    assert "param.scale_eps=true" in rep.verdict()
    first = rep.eps.growing()[0].module
    assert first in rep.verdict() and first in {t.module for t in rep.eps.tensors}


@pytest.mark.parametrize(
    "case",
    [
        Case(model="mlp", optim="adam", sizes=W, seeds=2, optim_kw={"eps": 1e-4}),
        Case(model="gpt", optim="adam", sizes=GW, seeds=2, optim_kw={"eps": 1e-4}),
        Case(model="mup-mlp", optim="adam", sizes=(128, 256, 512, 1024), seeds=2),
        Case(model="mup-gpt", optim="adam", sizes=GW, seeds=2),
    ],
    ids=["mlp-scaled-1e-4", "gpt-scaled-1e-4", "mup-MuAdam-mlp", "mup-MuAdam-gpt"],
)
def test_scaled_eps_and_mup_default_eps_pass(case):
    if case.model.startswith("mup-"):
        pytest.importorskip("mup")
    rep = _report(case)
    assert rep.eps is not None and rep.eps.status == "pass", rep.eps.message()
    if case.model.startswith("mup-"):  # MuAdam does not scale ε: slope 1, but tiny
        assert rep.eps.slope == pytest.approx(1.0, abs=0.15)
        assert rep.eps.ratio_at < 0.05
    else:
        assert abs(rep.eps.slope) < 0.15


def test_sgd_has_no_probe_and_json_carries_it(tmp_path, capsys):
    rep = _report(Case(model="mlp", optim="sgd", sizes=W, seeds=2))
    assert rep.eps is None and rep.to_json()["eps_probe"] is None
    from muscale.cli.main import main as cli

    args = ["coord-check", "model=mlp", "steps=2", "batch_size=32", "plot=false", "seeds=2"]
    args += ["widths=[64,128,256,512]", "expect=mup", "format=json"]
    bad = ["param.scale_eps=false", "optim.eps=1e-5"]
    assert cli([*args, *bad, f"out={tmp_path / 'a'}"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "fail" and d["eps_probe"]["status"] == "fail"
    assert d["eps_probe"]["horizon"] == 65536 and d["eps_probe"]["tensors"]
    # the horizon is a config key: at width 1024 this ε is still ~2 % of √v̂
    assert cli([*args, *bad, "eps_horizon=1024", f"out={tmp_path / 'b'}"]) == 0
    assert json.loads(capsys.readouterr().out)["eps_probe"]["status"] == "pass"
    assert cli([*args, "eps_horizon=-1", f"out={tmp_path / 'c'}"]) == 2
    err = capsys.readouterr().err
    assert "eps_horizon=-1" in err and "Traceback" not in err


def test_bad_horizon_is_a_user_error():
    from muscale.coord import report

    d = cal.collect_case(Case(model="mlp", optim="adam", sizes=(64, 128), seeds=1, steps=1))
    for bad in (0, -3.0, float("nan"), "wide", True):
        with pytest.raises(UserError, match="eps_horizon"):
            report(d, expect="mup", eps_horizon=bad)
