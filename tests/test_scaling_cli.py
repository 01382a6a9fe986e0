"""``muscale scaling fit|plan``: JSON outputs, plots, the fit -> plan hand-off, every YAML
composed, and bad input ending in one line on stderr with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from muscale.cli.main import main
from muscale.resources import data_file
from muscale.scaling.laws import ChinchillaLaw

ROOT = Path(__file__).parents[1]
#: the Epoch AI points, shipped inside the package (muscale/scaling/data/README.md)
CHINCHILLA = data_file("chinchilla_epoch_svg_extracted.csv")
TRUTH = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.37)


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["scaling", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture()
def isoflop_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for c in np.logspace(18, 21, 4):
        n_opt = TRUTH.G * (c / 6) ** TRUTH.a
        for n in n_opt * np.logspace(-0.7, 0.7, 7):
            d = c / (6 * n)
            for lr_mult in (0.5, 1.0, 2.0):  # a small LR sweep per run: best at lr_opt(C)
                lr = 0.3 * c**-0.125 * lr_mult
                loss = TRUTH.loss(n, d) * np.exp(rng.normal(0, 0.002)) + 0.02 * np.log(lr_mult) ** 2
                rows.append({"params": n, "flops": c, "val_loss": loss, "lr": lr})
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_every_scaling_yaml_composes():
    from muscale.cli.scaling import compose

    for name in ("fit", "plan"):
        cfg = compose(name, [])
        assert "format" in cfg


def test_fit_json_on_chinchilla(capsys, tmp_path):
    rc, out, err = run(
        capsys,
        "fit",
        f"data={CHINCHILLA}",
        "columns.N=Model Size",
        "columns.C=Training FLOP",
        "drop_top=5",
        "bootstrap=100",
        "approaches=[3]",
        f"out={tmp_path}",
        "format=json",
    )
    assert rc == 0, err
    d = json.loads(out)  # stdout is only JSON
    for k in ("E", "A", "B", "alpha", "beta", "intervals"):
        assert k in d
    assert d["alpha"] == pytest.approx(0.3478, abs=0.003)
    assert d["dropped"] == 5
    assert 15 < d["tokens_per_param"]["1e+21"] < 25
    for png in ("isoflop.png", "frontier.png", "residuals.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "fit.json").read_text())["E"] == d["E"]


def test_fit_table_then_plan_from_fit(capsys, tmp_path, isoflop_csv):
    out_dir = tmp_path / "fit"
    rc, out, err = run(
        capsys,
        "fit",
        f"data={isoflop_csv}",
        "columns.N=params",
        "columns.C=flops",
        "columns.loss=val_loss",
        "bootstrap=50",
        f"out={out_dir}",
    )
    assert rc == 0, err
    assert "approach 3" in out and "approach 2" in out and "lr_opt" in out
    report = json.loads((out_dir / "fit.json").read_text())
    assert report["approach2"]["a"] == pytest.approx(TRUTH.a, abs=0.03)
    assert report["hparams"]["lr"]["exponent"] == pytest.approx(-0.125, abs=0.02)
    assert (out_dir / "hparams.png").is_file()

    rc, out, err = run(
        capsys,
        "plan",
        "compute=1e21",
        "inference_tokens=1e12",
        f"fit={out_dir / 'fit.json'}",
        "format=json",
    )
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["source"].startswith("fit ")
    ch, aw = plan["chinchilla"], plan["inference_aware"]
    assert aw["N"] < ch["N"] and aw["D"] > ch["D"] and aw["total_flops"] < ch["total_flops"]
    lo, hi = ch["intervals"]["N"]
    assert lo < ch["N"] < hi
    assert ch["lr"] == pytest.approx(0.3 * 1e21**-0.125, rel=0.2)


def test_plan_defaults_to_published_law(capsys):
    rc, out, err = run(capsys, "plan", "compute=1e21", "format=json")
    assert rc == 0, err
    d = json.loads(out)
    assert "Besiroglu" in d["source"]
    assert 15 < d["chinchilla"]["tokens_per_param"] < 25
    rc, out, _ = run(capsys, "plan", "compute=1e21")
    assert rc == 0 and "published law epoch" in out.replace("\n", " ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fit", "data={missing}"], "no such file"),
        (["fit", "data={csv}", "columns.N=nope"], "lacks column N"),
        (["fit", "data={bad}"], "positive finite"),
        (["fit", "data={tiny}"], "at least 8 runs"),
        (
            [
                "fit",
                "data={csv}",
                "columns.N=params",
                "columns.C=flops",
                "columns.loss=val_loss",
                "approaches=[1]",
            ],
            "approach 1",
        ),
        (["fit", "data={one_level}", "approaches=[2]"], "compute levels"),
        (["fit", "data={csv}", "format=yaml"], "format"),
        (["plan"], "exactly one of compute"),
        (["plan", "compute=-5"], "compute"),
        (["plan", "compute=1e21", "law=kaplan"], "law"),
        (["plan", "compute=1e21", "fit={missing}"], "no such file"),
        (["plan", "compute=1e21", "nosuchkey=1"], "nosuchkey"),
        (["frobnicate"], "fit or plan"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, isoflop_csv, args, needle):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e8, -1.0], "D": [1e9, 1e9], "loss": [3.0, 3.1]}).to_csv(bad, index=False)
    tiny = tmp_path / "tiny.csv"
    pd.DataFrame({"N": [1e8, 2e8, 4e8], "D": [1e9, 2e9, 4e9], "loss": [3.0, 2.9, 2.8]}).to_csv(
        tiny, index=False
    )
    one = tmp_path / "one.csv"
    n = np.logspace(8, 9, 12)
    pd.DataFrame({"N": n, "C": 1e19, "loss": TRUTH.loss(n, 1e19 / (6 * n))}).to_csv(
        one, index=False
    )
    fmt = {
        "missing": tmp_path / "nope.csv",
        "csv": isoflop_csv,
        "bad": bad,
        "tiny": tiny,
        "one_level": one,
    }
    rc, out, err = run(capsys, *[a.format(**fmt) for a in args])
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("muscale scaling: error:"), err
    assert needle in err
    assert out == ""


@pytest.mark.slow  # end to end: muscale in subprocesses
def test_real_command_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "muscale",
            "scaling",
            "plan",
            "compute=1e22",
            "inference_tokens=1e13",
            "format=json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    d = json.loads(ok.stdout)
    assert d["inference_aware"]["N"] < d["chinchilla"]["N"]
    bad = subprocess.run(
        [sys.executable, "-m", "muscale", "scaling", "fit", "data=missing.parquet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_fit_training_curves_adds_approach_1(capsys, tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {"run": f"r{i}", "N": n, "D": d, "loss": TRUTH.loss(n, d) * np.exp(rng.normal(0, 1e-3))}
        for i, n in enumerate(np.logspace(7.5, 10.5, 14))
        for d in np.logspace(8, 12, 16)
    ]
    path = tmp_path / "curves.parquet"
    pd.DataFrame(rows).to_parquet(path)
    rc, out, err = run(
        capsys, "fit", f"data={path}", "bootstrap=20", f"out={tmp_path}", "format=json"
    )
    assert rc == 0, err
    d = json.loads(out)
    assert d["approach1"]["a"] == pytest.approx(TRUTH.a, abs=0.03)
    assert d["alpha"] == pytest.approx(TRUTH.alpha, abs=0.01)
    assert any("checkpoints" in n for n in d["notes"])
