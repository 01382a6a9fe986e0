"""The point of μP (TP5 Fig. 1): the optimal learning rate holds across width under μP and
drifts down under SP. A real seeded sweep on embedded synthetic data (a teacher MLP's
regression task), three widths over 16x, through `muscale sweep` and `muscale fit`.

Measured when this test was written (seed 0, widths 32/128/512): μP optima 2^-6.29, 2^-5.92,
2^-5.95 (slope +0.08 octave per width doubling; best loss 0.220, 0.133, 0.123); SP optima
2^-6.28, 2^-6.94, 2^-8.43 (slope -0.50). With seeds 0 and 1: μP 2^-6.19, 2^-5.87, 2^-6.17
(slope +0.04, verdict inconclusive: interval -1.31..+1.40), SP 2^-6.17, 2^-7.05, 2^-8.37
(slope -0.57). About 4 minutes on 2 idle cores.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_mup_optimum_is_flat_and_sp_drifts(tmp_path):
    lrs = "[" + ",".join(str(2.0**x) for x in range(-10, -4)) + "]"
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "muscale",
            "sweep",
            "sweep.name=property",
            f"sweep.store={tmp_path / 's.db'}",
            f"hydra.sweep.dir={tmp_path / 'runs'}",
            "sweep.widths=[32,128,512]",
            "sweep.schemes=[sp,mup]",
            f"sweep.lrs={lrs}",
            "sweep.seeds=[0,1]",
            "model=mlp",
            "data=teacher",
            "model.depth=3",
            "data.batch_size=64",
            "trainer.max_steps=150",
            "trainer.eval_every=0",
            "data.eval_batches=4",
            "trainer.progress=off",
            "trainer.threads=1",
            # zero-init readout (opt-in since issue 10): with the readout drawn the μP optimum on
            # this teacher MLP tilts to +0.16 octave/doubling (150 steps), just outside slope_tol
            "param.zero_readout=true",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    fit = subprocess.run(
        [
            sys.executable,
            "-m",
            "muscale",
            "fit",
            f"store={tmp_path / 's.db'}",
            "format=json",
            f"out={tmp_path / 'fit'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fit.returncode == 0, fit.stderr
    report = json.loads(fit.stdout)
    mup = report["by_scheme"]["mup"]["trend"]["lr"]
    sp = report["by_scheme"]["sp"]["trend"]["lr"]
    # two seeds give an interval; three widths leave one residual degree of freedom, and the
    # optima scatter across widths more than the seeds explain, so the slope's interval is
    # wide (measured: μP -1.31..+1.40, SP -1.47..+0.33): the verdict may honestly be
    # "inconclusive", but never the wrong definite answer
    assert report["by_scheme"]["mup"]["verdict"] != "drifts", report["by_scheme"]["mup"]
    assert report["by_scheme"]["sp"]["verdict"] != "holds", report["by_scheme"]["sp"]
    assert abs(mup["slope"]) <= report["slope_tol"]
    # clearly negative: >= 1.6 octaves of drift over 16x, beyond μP's band by > 0.25/doubling
    # (three widths leave one residual degree of freedom, so the slope's t-interval is wide)
    assert sp["slope"] < -0.4 and sp["slope"] < mup["slope"] - 0.25, sp
    assert not report["by_scheme"]["sp"]["transfer_holds"]
    # and under μP wider is better at the optimum
    best = {w["width"]: w["best_loss"] for w in report["per_width"] if w["scheme"] == "mup"}
    assert best[32] > best[128] > best[512]
