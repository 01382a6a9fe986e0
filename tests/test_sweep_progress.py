"""`muscale sweep` shows one progress display, not Hydra's per-trial lines; the detail is in
the logs. The display's numbers are checked against the store (an independent record)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from muscale.cli.sweep_progress import SweepProgress, display_mode
from muscale.sweep.store import Store, new_owner
from muscale.sweep.trial_spec import Trial

TOY = [
    "model=mlp",
    "data=teacher",
    "trainer.max_steps=5",
    "sweep.widths=[16,32]",
    "sweep.lrs=[0.01,0.1]",
    "sweep.seeds=[0]",
]


def _sweep(
    tmp: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ), "OMP_NUM_THREADS": "1", "MUSCALE_JOBS": "2"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "muscale",
            "sweep",
            *TOY,
            f"sweep.store={tmp / 's.db'}",
            f"hydra.sweep.dir={tmp / 'runs'}",
            *extra,
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _best_per_width(store: Path) -> dict[int, float]:
    best: dict[int, float] = {}
    for r in Store(str(store)).records("default"):
        if r.loss is not None and not r.diverged:
            best[r.width] = min(best.get(r.width, math.inf), r.loss)
    return best


def _check_console_and_logs(
    proc: subprocess.CompletedProcess[str], tmp: Path, *, foreign: str = "\0"
) -> None:
    """``foreign``: a line that a tool the sweep calls prints itself (ignored)."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the console: no Hydra line, no trial's step line, no warning; one progress line
    assert proc.stdout == "", proc.stdout[-2000:]
    assert "warning" not in proc.stderr.lower(), proc.stderr
    assert "#0 :" not in proc.stderr and "Launching" not in proc.stderr
    assert "step 5/5" not in proc.stderr
    lines = [s for s in proc.stderr.splitlines() if s != foreign]
    # a line at most every PLAIN_EVERY_S while trials finish (a slow machine), then the last
    assert all(re.fullmatch(r"sweep default: \d/4 done, \d running, ETA .*", s) for s in lines)
    best = _best_per_width(tmp / "s.db")
    assert set(best) == {16, 32}
    shown = " ".join(f"w{w}:{v:.4g}" for w, v in sorted(best.items()))
    assert lines[-1] == f"sweep default: 4/4 done, 0 running, ETA 0s; best {shown}", lines
    # the logs: every launched job in the multirun log, every trial's steps in its own
    runs = tmp / "runs"
    multirun = (runs / "multirun.log").read_text()
    assert all(f"#{i} : " in multirun for i in range(4)), multirun
    logs = sorted(runs.glob("*/*.log"))
    assert len(logs) == 4
    assert all("step 5/5 | eval_loss" in p.read_text() for p in logs)


@pytest.mark.parametrize(
    "launcher", ["basic", pytest.param("muscale_joblib", marks=pytest.mark.slow)]
)
def test_sweep_shows_one_display_and_logs_the_detail(tmp_path, launcher):
    proc = _sweep(tmp_path, f"hydra/launcher={launcher}", "sweep.progress=plain")
    _check_console_and_logs(proc, tmp_path)


@pytest.mark.slurm
@pytest.mark.slow  # a real one-node SLURM (tools/slurm_local.sh)
def test_slurm_sweep_shows_one_display(tmp_path, slurm_cluster):
    proc = _sweep(
        tmp_path,
        "hydra/launcher=slurm",
        "hydra.launcher.mem_gb=1",
        "sweep.progress=plain",
        # the one-node test cluster keeps no accounting, so `sacct` fails and submitit warns
        # at every status poll (SUBMITIT_LOG_LEVEL is submitit's own switch; a real
        # cluster's sacct answers)
        env=slurm_cluster.env(SUBMITIT_LOG_LEVEL="ERROR"),
    )
    # ... and sacct itself says why on stderr, once per poll
    _check_console_and_logs(proc, tmp_path, foreign="Slurm accounting storage is disabled")


def test_progress_off_prints_nothing_and_a_rerun_reuses(tmp_path):
    first = _sweep(tmp_path, "sweep.progress=off")
    assert first.returncode == 0 and first.stdout == "" and first.stderr == "", first.stderr
    again = _sweep(tmp_path, "sweep.progress=plain")
    assert again.returncode == 0, again.stderr
    best = _best_per_width(tmp_path / "s.db")
    shown = " ".join(f"w{w}:{v:.4g}" for w, v in sorted(best.items()))
    # nothing left to run (every trial reused from the store); the best is the store's
    assert again.stderr == f"sweep default: 0/0 done, 0 running, ETA ?; best {shown}\n"


def test_bad_progress_value_is_one_line(tmp_path):
    proc = _sweep(tmp_path, "sweep.progress=loud")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "sweep.progress" in proc.stderr and "plain" in proc.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "runs").exists()


def test_auto_is_rich_on_a_terminal_else_plain():
    assert display_mode("auto", tty=True) == "rich"
    assert display_mode("auto", tty=False) == "plain"
    assert display_mode("off", tty=True) == "off"


def _trial(width: int, lr: float) -> Trial:
    return Trial(sweep="s", scheme="mup", width=width, depth=None, seed=0, lr=lr, hparams={})


def _claim(store: Store, t: Trial, owner: str) -> None:
    got = store.claim(
        t.key,
        owner=owner,
        sweep=t.sweep,
        scheme=t.scheme,
        width=t.width,
        depth=2,
        seed=t.seed,
        lr=t.lr,
        hparams={},
        config={},
        run_dir="x",
    )
    assert got == "claimed"


def _finish(store: Store, t: Trial, loss: float, *, diverged: bool = False) -> None:
    store.finish(
        t.key,
        final_loss=loss,
        final_eval_loss=loss,
        best_eval_loss=loss,
        diverged=diverged,
        wall_time=1.0,
    )


def test_counts_follow_the_store_between_batches(tmp_path):
    """What a poll reads: leased trials are running, finished ones done with their loss;
    reused trials count for the best loss but not in done/total."""
    store = Store(str(tmp_path / "s.db"))
    reused, a, b, c = _trial(16, 1e-3), _trial(16, 1e-2), _trial(32, 1e-2), _trial(32, 1e-1)
    progress = SweepProgress(
        name="s", store=store, lease_s=60, mode="plain", done={reused.key: 0.5}, poll_s=3600
    )
    with progress:
        plan = progress.planner(_Fixed([reused, a, b, c]))
        assert plan.next_round({}) == [reused, a, b, c]
        d = progress.display
        assert (d.done, d.running, d.total, d.best) == (0, 0, 3, {16: 0.5})
        owner = new_owner()
        for t in (a, b, c):
            _claim(store, t, owner)
        _finish(store, a, 0.25)
        _finish(store, b, 9.0, diverged=True)
        progress.poll()
        assert (d.done, d.running, d.total, d.best) == (2, 1, 3, {16: 0.25})
        progress.finished({a.key: 0.25, b.key: math.inf, c.key: 0.75})  # the batch returns
        assert (d.done, d.running, d.total, d.best) == (3, 0, 3, {16: 0.25, 32: 0.75})


class _Fixed:
    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials

    def next_round(self, losses: dict) -> list[Trial]:
        return [t for t in self.trials if t.key not in losses]


def test_plain_lines_are_throttled(tmp_path, capsys):
    store = Store(str(tmp_path / "s.db"))
    trials = [_trial(16, 10.0**-k) for k in range(1, 4)]
    with SweepProgress(
        name="s", store=store, lease_s=60, mode="plain", done={}, poll_s=3600, plain_every_s=0
    ) as progress:
        progress.planned(trials)
        for i, t in enumerate(trials):
            progress.finished({t.key: 1.0 + i})
    out = capsys.readouterr().err.splitlines()
    # one line per finished trial (throttle 0), then close's last line
    assert [re.sub(r"ETA [^;]+", "ETA _", s) for s in out] == [
        "sweep s: 1/3 done, 0 running, ETA _; best w16:1",
        "sweep s: 2/3 done, 0 running, ETA _; best w16:1",
        "sweep s: 3/3 done, 0 running, ETA _; best w16:1",
        "sweep s: 3/3 done, 0 running, ETA _; best w16:1",
    ]


def test_a_trials_live_bar_is_refused_under_the_sweeps():
    from muscale.cli.sweep import check_displays
    from muscale.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer\.progress"):
        check_displays("rich", "rich")
    check_displays("rich", "plain")  # the sweep's default for trials
    check_displays("plain", "rich")  # the sweep prints lines; the trial may draw its bar
    check_displays("off", "auto")


def test_rich_mode_draws_the_same_numbers(tmp_path, capsys):
    store = Store(str(tmp_path / "s.db"))
    trials = [_trial(16, 0.1), _trial(32, 0.1)]
    with SweepProgress(name="s", store=store, lease_s=60, mode="rich", done={}) as progress:
        progress.planned(trials)
        progress.finished({trials[0].key: 0.5, trials[1].key: 0.25})
    err = capsys.readouterr().err
    assert "2/2 done, 0 running" in err and "best w16:0.5 w32:0.25" in err


def test_a_rerun_with_other_settings_is_refused_not_mixed(tmp_path):
    """The store's trials were trained for 5 steps: a re-run asking for 7 must not reuse
    them as 7-step results (keys hash coordinates, not shared settings); a re-run that
    changes only how trials run (threads, progress) reuses them."""
    assert _sweep(tmp_path, "sweep.progress=off").returncode == 0
    before = {r.key: r.loss for r in Store(str(tmp_path / "s.db")).records("default")}
    proc = _sweep(tmp_path, "sweep.progress=off", "trainer.max_steps=7")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "trainer.max_steps is 5 there and 7 here" in proc.stderr
    after = {r.key: r.loss for r in Store(str(tmp_path / "s.db")).records("default")}
    assert after == before  # nothing written
    same = _sweep(tmp_path, "sweep.progress=off", "trainer.threads=1")
    assert same.returncode == 0 and same.stderr == "", same.stderr
