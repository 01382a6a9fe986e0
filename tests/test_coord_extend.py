"""Sequential extension of the coordinate check (muscale/coord/extend.py): merged data equal
data collected in one go, the round follows from why the verdict is undecided, an
INCONCLUSIVE correct model is decided by a wider width, a broken one still FAILS, extend=0
is the unextended check, and the CLI says what it added."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from coord_data import one_module
from torch import nn

from muscale.coord import coord_check, report
from muscale.coord import extend as ext
from muscale.coord.run import CoordData, collect, config_factory, synthetic_batch
from muscale.errors import UserError
from muscale.models.configs import MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

MLP = MLPConfig(width=32, depth=2, in_dim=16, out_dim=10)
ADAM = OptimConfig(name="adam", lr=0.01)


def _mlp(scheme: str = "mup", optim: OptimConfig = ADAM, **mkw):
    cfg = dataclasses.replace(MLP, **mkw)
    factory = config_factory(
        cfg, ParamConfig(scheme=scheme, base_width=32), family=optim.rule_family
    )
    return factory, {"batch": synthetic_batch(cfg, batch_size=16), "optimizer": optim}


def _assert_same(a: CoordData, b: CoordData) -> None:
    assert a.sizes == b.sizes and a.seeds == b.seeds
    for f in ("level", "change", "loss"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    ea, eb = a.meta["eps"], b.meta["eps"]
    assert ea.names == eb.names
    np.testing.assert_array_equal(ea.eps, eb.eps)
    np.testing.assert_array_equal(ea.rms, eb.rms)


def test_merged_widths_equal_one_collect():
    """A new width collected for every seed and merged equals a single run over all widths
    (the models are a deterministic function of width and seed)."""
    factory, kw = _mlp()
    once = collect(factory, [32, 64, 128], steps=2, seeds=2, **kw)
    first = collect(factory, [32, 64], steps=2, seeds=2, **kw)
    merged = ext.merge(first, ext.collect_more(factory, first, sizes=[128], **kw))
    _assert_same(merged, once)
    assert merged.wall_s >= first.wall_s


def test_merged_seeds_equal_one_collect():
    """New seeds k.. (shifted_seeds) equal seeds k.. of a single run, also for a factory that
    ignores the seed and draws its init from torch's RNG."""
    factory, kw = _mlp()
    once = collect(factory, [32, 64], steps=2, seeds=3, **kw)
    first = collect(factory, [32, 64], steps=2, seeds=1, **kw)
    _assert_same(ext.merge(first, ext.collect_more(factory, first, seeds=2, **kw)), once)

    def bare(width: int) -> nn.Module:  # no plan, no seed argument: torch's RNG decides
        return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 10))

    def opt(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=1e-3)

    bkw = {"batch": kw["batch"], "optimizer": opt, "points": {"0": "embed", "2": "logits"}}
    once = collect(bare, [32, 64], steps=1, seeds=2, **bkw)
    first = collect(bare, [32, 64], steps=1, seeds=1, **bkw)
    more = ext.collect_more(bare, first, seeds=1, **bkw)
    merged = ext.merge(first, more)
    for f in ("level", "change"):
        np.testing.assert_array_equal(getattr(merged, f), getattr(once, f))
    assert not np.array_equal(more.level, first.level)  # a different draw, not seed 0 again


def test_merge_refuses_mismatched_runs():
    factory, kw = _mlp()
    a = collect(factory, [32, 64], steps=1, seeds=1, **kw)
    with pytest.raises(UserError, match="steps"):
        ext.merge(a, collect(factory, [32, 64], steps=2, seeds=1, **kw))
    with pytest.raises(UserError, match="new sizes at the same seeds"):
        ext.merge(a, collect(factory, [64, 128], steps=1, seeds=1, **kw))


# --- the decision, on synthetic data -----------------------------------------------------


def _data(slopes, seeds: int, sizes=(64, 128, 256, 512)) -> CoordData:
    """One hidden module whose change has slope ``slopes[k]`` for seed k."""
    n = np.asarray(sizes, float)
    level = np.ones((len(sizes), seeds, 1, 3))
    for k in range(seeds):
        level[:, k, 0, 1:] = (n ** slopes[k])[:, None]
    change = level.copy()
    change[..., 0] = 0.0
    return one_module(level, change, sizes)


def test_choose_follows_why():
    """Outside the band (finite-width bias would be sharpened by seeds): double the widest
    width; inside but noisy: seeds; no spread at all: seeds; width capped: say so."""
    outside = report(_data([0.33, 0.39, 0.24], 3), expect="mup")  # mean +0.32 > +0.3
    assert outside.status == "inconclusive", outside.verdict()
    plan = ext.choose(outside, max_size=4096)
    assert plan == ext.Plan("size", 1024, plan.reason) and "finite-width drift" in plan.reason
    assert "max_size=512" in ext.choose(outside, max_size=512)
    inside = report(_data([0.26, 0.2], 2), expect="mup")  # +0.23 ± 0.09: 4 seeds decide
    assert inside.status == "inconclusive", inside.verdict()
    assert ext.choose(inside, max_size=4096) == ext.Plan("seeds", 2, "seed noise")
    # +0.225 ± 0.31 would need 34 seeds: a wider width costs less per unit of S_xx
    noisy = report(_data([0.33, 0.12], 2), expect="mup")
    plan = ext.choose(noisy, max_size=4096)
    assert (plan.kind, plan.new) == ("size", 1024) and "34 seeds" in plan.reason
    capped = ext.choose(noisy, max_size=512)  # no wider width allowed: seeds, doubled
    assert (capped.kind, capped.new) == ("seeds", 2) and "max_size=512" in capped.reason
    lone = report(_data([0.1], 1, sizes=(64, 128)), expect="mup")
    assert ext.choose(lone, max_size=4096) == ext.Plan("seeds", 2, "no seed spread to judge by")


def test_validate_budget():
    assert ext.validate(2, None, [64, 512]) == 2048  # two doublings by default
    assert ext.validate(0, 512, [64, 512]) == 512
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(UserError, match="extend="):
            ext.validate(bad, None, [64, 512])
    for bad in (0, 256, 2.0):
        with pytest.raises(UserError, match="max_size="):
            ext.validate(1, bad, [64, 512])


def test_looks_widen_only_the_fail_interval():
    """The FAIL level is family-wise over the planned looks (Bonferroni); PASS is not."""
    d = _data([0.5, 0.45, 0.6], 3)
    one, three = report(d, expect="mup"), report(d, expect="mup", looks=3)
    a = next(s for s in one.slopes if s.stat == "change")
    b = next(s for s in three.slopes if s.stat == "change")
    assert b.half == a.half and b.half_fail > a.half_fail


# --- real models ---------------------------------------------------------------------------


def _case(case):
    from tools import calibrate_coord_check as cal

    factory, kw = cal._parts(case)
    return factory, {"steps": case.steps, "seeds": case.seeds, "expect": "mup", **kw}


def test_inconclusive_correct_model_is_decided_by_more_data():
    """Issue 11's μP-SGD MLP (GELU, depth 4, batch 8, 2 seeds, widths 64-512): its hidden
    changes sit near the band's -0.3 edge (the incoherent n^-1/2 part of SGD's update);
    extend=0 is INCONCLUSIVE, equal to judging the requested data once; the slopes lie
    inside the band, so the default extension adds seeds (not a width) and it PASSES."""
    from tools.calibrate_coord_check import Case

    case = Case(
        model="mlp",
        optim="sgd",
        sizes=(64, 128, 256, 512),
        steps=4,
        seeds=2,
        batch=8,
        model_kw={"depth": 4, "activation": "gelu"},
    )
    factory, kw = _case(case)
    today = coord_check(factory, list(case.sizes), extend=0, **kw)
    assert today.status == "inconclusive" and today.extensions == [] and today.looks == 1
    data_kw = {k: v for k, v in kw.items() if k != "expect"}
    once = report(collect(factory, list(case.sizes), **data_kw), expect="mup")
    assert [(s.module, s.stat, s.slope, s.status) for s in today.slopes] == [
        (s.module, s.stat, s.slope, s.status) for s in once.slopes
    ]
    rep = coord_check(factory, list(case.sizes), **kw)
    assert rep.status == "pass", rep.verdict()
    assert rep.data.sizes == list(case.sizes) and rep.data.seeds == 4 and rep.looks == 3
    (round1,) = rep.extensions
    assert round1.kind == "seeds" and round1.added == [2, 3] and round1.status == "pass"
    # module, statistic, slope and the nearer edge, e.g. 'blocks.2 change -0.25 (edge -0.3)'
    assert any(" change -0.2" in u and u.endswith("(edge -0.3)") for u in round1.undecided)
    line = rep.to_json()["extension"]["summary"]
    assert line.startswith("Extended: inconclusive at widths 64–512 (2 seed(s)) on ")
    assert "added seeds 2–3 (seed noise" in line and line.endswith("→ PASSED")
    assert line in rep.verdict()


def test_broken_model_still_fails_after_extension():
    """NTK with SGD over widths 64-256 at 2 seeds is INCONCLUSIVE; a wider width makes its
    vanishing feature updates (slope -1/2) clear and it FAILS, naming the hidden changes."""
    from tools.calibrate_coord_check import Case

    case = Case(model="mlp", optim="sgd", sizes=(64, 128, 256), seeds=2, scheme="ntk")
    factory, kw = _case(case)
    assert coord_check(factory, list(case.sizes), extend=0, **kw).status == "inconclusive"
    rep = coord_check(factory, list(case.sizes), **kw)
    assert rep.status == "fail", rep.verdict()
    assert rep.extensions and rep.extensions[0].added == [512]
    assert {s.kind for s in rep.failures} & {"hidden", "embed"}
    assert rep.signature == "ntk"


def test_cli_prints_the_extension_and_rejects_bad_budgets(tmp_path, capsys):
    from muscale.cli.main import main as cli

    common = ["coord-check", "model=mlp", "steps=2", "batch_size=32", "plot=false"]
    # one seed over two widths has no spread: the extension adds seeds
    rc = cli([*common, "widths=[64,128]", "seeds=1", f"out={tmp_path / 'a'}"])
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("Extended: ")]
    assert len(lines) == 1 and "added seeds 1–2" in lines[0], out
    assert rc == {"PASSED": 0, "FAILED": 1, "INCONCLUSIVE": 3}[lines[0].split()[-1]]
    rc = cli([*common, "widths=[64,128]", "seeds=1", "extend=0", "format=json", f"out={tmp_path}"])
    assert rc == 3 and json.loads(capsys.readouterr().out)["extension"]["rounds"] == []
    for bad in ("extend=-1", "extend=1.5", "max_size=100", "max_size=0"):
        assert cli([*common, "widths=[64,128,256,512]", bad, f"out={tmp_path}"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and bad.split("=")[0] + "=" in err, err


def test_memory_guard_refuses_a_width_that_cannot_fit():
    """A width whose weights, gradients and Adam moments exceed half the free memory is
    refused with the numbers (the calibration's depth-8 MLP doubled twice from 4096 ran a
    23 GB machine out of memory); the MLP at twice its width fits."""
    factory, kw = _mlp()
    data = collect(factory, [32, 64], steps=1, seeds=1, **kw)
    assert ext.memory_note(factory, data, 128) is None
    note = ext.memory_note(factory, data, 2**24)  # ~2^40 weights
    assert note is not None and note.startswith("width 16777216 would need") and "GiB" in note
    # worker processes train several models of the new width at once: the need multiplies
    two = ext.memory_note(factory, data, 2**24, copies=2)

    def gib(text: str) -> float:
        return float(text.split("≈ ")[1].split(" GiB")[0])

    assert gib(two) == pytest.approx(2 * gib(note), rel=1e-2)
    outside = report(_data([0.33, 0.39, 0.24], 3), expect="mup")
    assert ext.choose(outside, 4096, fits=lambda n: f"no room for {n}") == "no room for 1024"
