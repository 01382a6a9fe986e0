"""Unit checks of the coordinate-check pieces: hooks against direct computation, slope fits
against closed forms, input validation, the CLI's exit codes and JSON, the pytest fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from coord_data import one_module

from muscale.cli.main import main as cli
from muscale.coord.points import Point, resolve_points
from muscale.coord.record import Recorder, attention_logits
from muscale.coord.run import validate
from muscale.coord.verdict import fit_slopes, report
from muscale.errors import UserError


def test_attention_logits_match_explicit_gqa():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, 2, 5, 8, generator=g)
    got = attention_logits(q, k, 0.3)
    ref = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) * 0.3
    torch.testing.assert_close(got, torch.tril(ref))


def test_recorder_level_and_change_are_exact():
    lin = torch.nn.Sequential(torch.nn.Linear(3, 4))
    x = torch.randn(5, 3)
    with Recorder(lin, [Point(name="0", kind="hidden")], steps=1) as rec:
        y0 = lin(x).detach().clone()
        with torch.no_grad():
            lin[0].weight.add_(1.0)
        rec.t = 1
        y1 = lin(x).detach()
    torch.testing.assert_close(rec.stats[0, 0, 0], y0.abs().mean())
    torch.testing.assert_close(rec.stats[0, 1, 0], y1.abs().mean())
    torch.testing.assert_close(rec.stats[0, 1, 1], (y1 - y0).abs().mean())
    assert not lin[0]._forward_hooks  # hooks removed on exit


def _data(level_fn, change_fn, sizes=(64, 128, 256)):
    n = np.asarray(sizes, float)[:, None, None, None]
    t = np.arange(3)[None, None, None, :]
    level = level_fn(n, t) * np.ones((len(sizes), 2, 1, 3))
    change = change_fn(n, t) * np.ones((len(sizes), 2, 1, 3))
    change[..., 0] = 0.0
    return one_module(level, change, sizes, family="sgd")


def test_slopes_are_exact_on_power_laws():
    d = _data(lambda n, t: 3.0 * n**0.0, lambda n, t: 0.1 * n ** (-0.5) * (t + 1))
    slopes, _skipped = fit_slopes(d)
    by = {s.stat: s for s in slopes}
    assert by["init"].slope == pytest.approx(0.0, abs=1e-12)
    assert by["change"].steps == [1, 2]
    assert by["change"].step_slopes == pytest.approx([-0.5, -0.5], abs=1e-12)
    assert by["change"].slope == pytest.approx(-0.5, abs=1e-12)
    rep = report(d)  # -0.5 change: NTK-SGD's signature, fails μP
    assert not rep.passed and rep.signature == "ntk"
    assert report(d, expect="ntk").passed


def test_identically_zero_stats_are_skipped_and_said():
    d = _data(lambda n, t: np.where(t == 0, 0.0, 1.0), lambda n, t: 1.0 + 0 * n)
    rep = report(d)
    assert {"module": "h", "step": 0, "stat": "level"}.items() <= rep.skipped[0].items()
    assert rep.passed and "Skipped 1" in rep.verdict()


def test_diverged_run_fails():
    d = _data(lambda n, t: 1.0 + 0 * n, lambda n, t: np.where(n > 100, np.nan, 1.0))
    rep = report(d)
    assert not rep.passed and "not finite" in rep.verdict()


@pytest.mark.parametrize(
    ("sizes", "steps", "seeds"),
    [([64], 3, 1), ([64, -128], 3, 1), ([64, 64], 3, 1), ([64, 128], 0, 1), ([64, 128], 2, 0)],
)
def test_bad_input_is_a_user_error(sizes, steps, seeds):
    with pytest.raises(UserError):
        validate(sizes, steps, seeds)


def test_points_for_unknown_module_need_names():
    with pytest.raises(UserError, match="points"):
        resolve_points(torch.nn.Linear(2, 2))
    with pytest.raises(UserError, match="not a submodule"):
        resolve_points(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["nope"])


@pytest.mark.parametrize(
    "args",
    [
        ["widths=[64]"],
        ["widths=[64,-128]"],
        ["steps=0"],
        ["seeds=0"],
        ["format=xml"],
        ["expect=foo"],
        ["threads=0"],
        ["threads=1.5"],
    ],
)
def test_cli_bad_input_exits_2(args, tmp_path):
    assert cli(["coord-check", "model=mlp", f"out={tmp_path}", *args]) == 2


def test_cli_runs_on_one_thread_unless_told(tmp_path, monkeypatch):
    """``threads: 1`` (conf/coord_check.yaml) is this command's own process setting: the
    check's matmuls are tiny and two threads' OpenMP barriers stall on a busy machine."""
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    calls: list[int] = []
    common = ["coord-check", "model=mlp", "widths=[32,64]", "steps=1", "seeds=1", "plot=false"]
    cli([*common, f"out={tmp_path / 'a'}", "format=json"])
    assert calls == [1]
    cli([*common, f"out={tmp_path / 'b'}", "format=json", "threads=null"])
    assert calls == [1]


@pytest.mark.slow
def test_cli_json_pass_and_fail(tmp_path, capsys):
    common = [
        "coord-check",
        "model=mlp",
        "widths=[64,128,256,512]",
        "seeds=3",
        "steps=2",
        "batch_size=32",
        "format=json",
    ]
    assert cli([*common, "param=mup", f"out={tmp_path / 'a'}"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] is True and d["failures"] == []
    assert {"module", "steps", "stat", "slope", "interval"} <= set(d["slopes"][0])
    assert (tmp_path / "a" / "coord.png").stat().st_size > 1000
    assert json.loads((tmp_path / "a" / "report.json").read_text())["passed"] is True
    assert cli([*common, "param=sp", "expect=mup", f"out={tmp_path / 'b'}"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] is False and any(f["module"] == "out" for f in d["failures"])


def test_cli_table(tmp_path, capsys):
    rc = cli(
        [
            "coord-check",
            "model=mlp",
            "widths=[64,128]",
            "seeds=1",
            "steps=1",
            "batch_size=16",
            "extend=0",
            f"out={tmp_path}",
            "plot=false",
        ]
    )
    text = capsys.readouterr().out
    # one seed, two widths, no extension: the data cannot decide (exit 3), and the table
    # still prints
    assert rc == 3 and "coordinate check" in text and "blocks.0" in text
    assert "INCONCLUSIVE" in text and "seeds=" in text


@pytest.mark.slow
@pytest.mark.coord_check
def test_pytest_fixture_and_marker(coord_check):
    from muscale.coord.run import config_factory, synthetic_batch
    from muscale.models.configs import MLPConfig
    from muscale.optim.config import OptimConfig
    from muscale.param.config import ParamConfig

    mcfg = MLPConfig(width=64, depth=1)
    rep = coord_check(
        config_factory(mcfg, ParamConfig(scheme="mup"), family="sgd"),
        [64, 128, 256, 512],
        batch=synthetic_batch(mcfg, batch_size=32),
        optimizer=OptimConfig(name="sgd", lr=0.1),
        seeds=3,
    )
    assert rep.passed
    from muscale.testing import CoordCheckFailed, assert_coord_check

    with pytest.raises(CoordCheckFailed, match=r"FAILED.*inp \(embed\) change"):
        assert_coord_check(
            config_factory(mcfg, ParamConfig(scheme="sp"), family="sgd"),
            [64, 128, 256, 512],
            batch=synthetic_batch(mcfg, batch_size=32),
            optimizer=OptimConfig(name="sgd", lr=0.1),
            seeds=1,
            expect="mup",
        )


def test_conf_and_recipe_yaml_load():
    from pathlib import Path

    import yaml

    root = Path(__file__).parents[1]
    wf = yaml.safe_load((root / "recipes" / "github-actions-coord-check.yml").read_text())
    assert "jobs" in wf
    from muscale.cli.common import compose

    cfg = compose("coord_check", [])
    assert cfg.model.family == "gpt" and cfg.param.scheme == "mup" and cfg.optim.name == "adam"
