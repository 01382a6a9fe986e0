"""Run a sweep's trials in local worker processes, with one quiet progress display.

The Hydra sweeper (``hydra_plugins/muscale_sweeper``) runs trials through any launcher and
logs a line per job; the pipeline runs many small trials on one machine and wants instead
one line of progress (done/running/total, ETA, best loss so far per width) and the cost of
every trial. This module drives the same planner (:func:`muscale.sweep.strategy.planner`)
and the same trial job (:func:`muscale.sweep.job.run_trial`, which writes the durable
store row) in a spawn-based process pool, one torch thread per worker.

Cost of a trial: CPU-seconds of its worker process (``time.process_time``: with one thread
per worker this is the compute the trial used) and training FLOPs, ``flops_per_token x
tokens`` (:func:`muscale.train.mfu.flops_per_token`: 6N plus attention, Kaplan et al. 2020,
§2.1) for the tokens this invocation trained (a resumed ASHA rung counts only its own steps).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muscale.sweep.driver import loss_of
from muscale.sweep.job import run_trial
from muscale.sweep.trial_spec import Trial


@dataclass(kw_only=True)
class TrialCost:
    """What one trial cost and achieved (``loss`` is inf when it diverged or failed)."""

    key: str
    width: int
    loss: float
    cpu_s: float
    flops: float
    reused: bool = False


@dataclass(kw_only=True)
class SweepOutcome:
    """Every trial's loss (the planner's input) and cost, by trial key."""

    losses: dict[str, tuple[Trial, float]] = field(default_factory=dict)
    costs: dict[str, TrialCost] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return sum(c.cpu_s for c in self.costs.values())

    @property
    def flops(self) -> float:
        return sum(c.flops for c in self.costs.values())


def _tokens_so_far(run_dir: Path) -> int:
    f = run_dir / "result.json"
    if f.exists():
        try:
            return int(json.loads(f.read_text()).get("tokens") or 0)
        except (ValueError, OSError):
            return 0
    return 0


def trial_flops(cfg: Any, tokens: int) -> float:
    """Training FLOPs of ``tokens`` tokens of the model in ``cfg`` (a composed train config)."""
    from muscale.build import build_model
    from muscale.config import to_dict
    from muscale.train.mfu import flops_per_token

    d = to_dict(cfg)
    model_cfg = dict(d["model"])
    if model_cfg.get("family") == "gpt":
        model_cfg["seq_len"] = int(d["data"]["seq_len"])
    with_meta = build_model(model_cfg, d["param"], device="meta")[0]
    return flops_per_token(with_meta, _Obj(model_cfg)) * tokens


class _Obj:
    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def _run_one(overrides: list[str], run_dir: str) -> dict[str, Any]:
    """Worker: compose the trial's sweep config and run it (store row written by run_trial)."""
    import torch

    from muscale.hydra_app import compose

    torch.set_num_threads(1)
    from muscale.train.stop import Stopped

    _start_task()
    try:
        cfg = compose("sweep", overrides)
        rd = Path(run_dir)
        before = _tokens_so_far(rd)
        t0 = time.process_time()
        out = run_trial(cfg, rd)
        cpu = time.process_time() - t0
    except Stopped:
        _WORKER["sigterm"] = True
        raise
    finally:
        _WORKER["busy"] = False
    if out.get("leased") or out.get("stopped"):
        return out
    tokens = max(_tokens_so_far(rd) - before, 0)
    try:
        flops = trial_flops(cfg, tokens)
    except Exception:  # a family without a FLOP count: cost in CPU-seconds only
        flops = math.nan
    cost = {"cpu_s": cpu, "flops": flops}
    _save_cost(rd, str(cfg.sweep_trial), cost)  # read back when the trial is reused
    return {**out, **cost}


#: per run directory, ``trial key -> {cpu_s, flops}`` (halving rungs share a directory)
COSTS_FILE = "costs.json"


def _save_cost(run_dir: Path, key: str, cost: dict[str, float]) -> None:
    f = run_dir / COSTS_FILE
    try:
        saved = json.loads(f.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[key] = cost
    f.write_text(json.dumps(saved))


class Display:
    """One progress line: trials done/running/total, ETA and best loss so far per width.

    ``mode``: ``rich`` (a live bar on a terminal), ``plain`` (a line per finished round on
    stderr), ``off``.
    """

    def __init__(self, label: str, jobs: int, mode: str = "auto") -> None:
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "off"
        self.mode, self.label, self.jobs = mode, label, jobs
        self.best: dict[int, float] = {}
        self.done = self.total = self.running = 0
        self.t0 = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        if mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(label, total=1, info="")

    def update(self, *, done: int, running: int, total: int, best: dict[int, float]) -> None:
        self.done, self.running, self.total, self.best = done, running, total, best
        if self.mode == "rich":
            self._progress.update(self._task, completed=done, total=max(total, 1), info=self.text())

    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        per = (time.perf_counter() - self.t0) / self.done
        return per * (self.total - self.done)

    def text(self) -> str:
        eta = self.eta_s()
        best = " ".join(f"w{w}:{v:.4g}" for w, v in sorted(self.best.items()))
        return (
            f"{self.done}/{self.total} done, {self.running} running, "
            f"ETA {'?' if eta is None else f'{eta:.0f}s'}; best {best or '-'}"
        )

    def close(self) -> None:
        if self.mode == "rich":
            self._progress.stop()
        elif self.mode == "plain":
            print(f"{self.label}: {self.text()}", file=sys.stderr, flush=True)


#: a worker's state: ``busy`` while it runs a trial (a SIGTERM then stops the trial; idle,
#: it is only noted), ``sigterm`` once it was signalled (later queued tasks stop at once)
_WORKER = {"busy": False, "sigterm": False}


def _worker_sigterm(signum: int, frame: Any) -> None:
    """A worker's SIGTERM outside training (the trainer installs its own, which checkpoints):
    a busy worker stops its trial (``run_trial`` marks the row failed, so it is re-runnable);
    an idle one ignores it and is shut down by the parent, so the pool stays usable."""
    from muscale.train.stop import Stopped

    _WORKER["sigterm"] = True
    if _WORKER["busy"]:
        raise Stopped("trial stopped by SIGTERM before training")


def _start_task() -> None:
    """Enter a task in a worker; a worker signalled earlier starts nothing new."""
    from muscale.train.stop import Stopped

    if _WORKER["sigterm"]:
        raise Stopped("worker was stopped by SIGTERM")
    _WORKER["busy"] = True


def _worker_init() -> None:
    import signal

    signal.signal(signal.SIGTERM, _worker_sigterm)


def make_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for trials (spawned: no forked torch state); reuse one per pipeline,
    since each new worker pays torch's import time."""
    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init
    )


class _Stopping:
    """Collects the outcome of a SIGTERM: ``state["signal"]`` is set by
    :func:`muscale.train.stop.forwarding_sigterm` in the parent, which has already forwarded
    the signal to the workers; the parent then waits for every running trial to checkpoint
    and stop, and raises :class:`~muscale.train.stop.Stopped` (exit status 143)."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state if state is not None else {}

    @property
    def asked(self) -> bool:
        return bool(self.state.get("signal"))

    def finish(self, what: str) -> None:
        from muscale.train.stop import Stopped

        if self.asked:
            raise Stopped(f"{what} stopped by SIGTERM; re-run the same command to resume")


def run_sweep(
    sweep_cfg: Any,
    fixed: list[str],
    run_root: Path,
    *,
    pool: ProcessPoolExecutor,
    jobs: int = 2,
    display: Display | None = None,
    planner_factory: Callable[[Any], Any] | None = None,
    max_rounds: int = 100,
    stop: dict[str, Any] | None = None,
    poll_s: float | None = None,
) -> SweepOutcome:
    """Run the sweep ``sweep_cfg`` (a :class:`SweepConfig`) to completion.

    ``fixed``: overrides of ``conf/sweep.yaml`` applied to every trial (they must include the
    ``sweep.*`` keys that make the trial job see the same sweep). Finished trials in the store
    are reused, so a killed pipeline re-run continues where it stopped. A trial whose row
    holds a live lease of another process (a second pipeline on the same store, an array
    job) is waited for, never run twice: its row is polled every ``poll_s`` seconds (default
    ``lease_s / 10``, at most 2 s) until it is done (its loss is used) or its lease lapses
    (then it is run here, resuming from its checkpoint).

    ``stop``: the state dict of :func:`muscale.train.stop.forwarding_sigterm`; after a
    SIGTERM no new trial starts, the running ones checkpoint and stop (their rows are marked
    failed: re-runnable), and :class:`~muscale.train.stop.Stopped` is raised.
    """
    from muscale.hydra_app import compose
    from muscale.sweep.job import training_config
    from muscale.sweep.settings import check_same_settings
    from muscale.sweep.store import Store
    from muscale.sweep.strategy import planner
    from muscale.train.stop import Stopped

    plan = (planner_factory or planner)(sweep_cfg)
    store = Store(sweep_cfg.store)
    check_same_settings(
        store,
        sweep_cfg.name,
        varies_depth=sweep_cfg.depths is not None,
        compose_trial=lambda t: training_config(compose("sweep", [*fixed, *t.overrides()])),
    )
    lease_s = float(sweep_cfg.lease_s)
    poll = poll_s if poll_s is not None else min(2.0, lease_s / 10)
    stopping = _Stopping(stop)
    result = SweepOutcome()
    pending: dict[Future, Trial] = {}
    waiting: dict[str, Trial] = {}  # leased by another live owner

    def refresh() -> None:
        if display is None:
            return
        best: dict[int, float] = {}
        for t, loss in result.losses.values():
            if math.isfinite(loss):
                best[t.width] = min(best.get(t.width, math.inf), loss)
        display.update(
            done=len(result.losses),
            running=min(len(pending), jobs),
            total=len(result.losses) + len(pending) + len(waiting),
            best=best,
        )

    def take_done(t: Trial) -> None:
        rec = store.get(t.key)
        assert rec is not None
        loss = loss_of(rec.loss, rec.diverged)
        result.losses[t.key] = (t, loss)
        result.costs[t.key] = TrialCost(
            key=t.key,
            width=t.width,
            loss=loss,
            reused=True,
            **_saved_cost(run_root / t.run_id, t.key, rec.wall_time),
        )

    def dispatch(trials: list[Trial]) -> None:
        """Done rows are read, live leases waited for, the rest submitted."""
        states = store.lease_states([t.key for t in trials], lease_s)
        for t in trials:
            if states[t.key] != "leased":
                waiting.pop(t.key, None)
            if states[t.key] == "done":
                take_done(t)
            elif states[t.key] == "leased":
                waiting[t.key] = t
            elif not stopping.asked:
                run_dir = str(run_root / t.run_id)  # halving rungs resume in one directory
                pending[pool.submit(_run_one, [*fixed, *t.overrides()], run_dir)] = t

    for _ in range(max_rounds):
        trials = [t for t in plan.next_round(result.losses) if t.key not in result.losses]
        if not trials or stopping.asked:
            break
        dispatch(trials)
        refresh()
        while pending or (waiting and not stopping.asked):
            if waiting and not pending:
                time.sleep(poll)
            finished, _ = wait(
                list(pending), timeout=poll if waiting else None, return_when=FIRST_COMPLETED
            )
            if stopping.asked:  # queued trials never start
                for fut in pending:
                    fut.cancel()
            for fut in finished:
                t = pending.pop(fut)
                try:
                    r = fut.result()
                except Stopped:  # the worker checkpointed and marked the row re-runnable
                    continue
                except Exception as exc:  # a failed trial counts as a failed point
                    if not stopping.asked:
                        print(f"trial {t.key} failed: {exc}", file=sys.stderr)
                        result.losses[t.key] = (t, math.inf)
                        result.costs[t.key] = TrialCost(
                            key=t.key, width=t.width, loss=math.inf, cpu_s=0.0, flops=0.0
                        )
                    continue
                if r.get("leased"):  # another owner took it between our look and its claim
                    waiting[t.key] = t
                    continue
                if r.get("stopped"):
                    continue
                loss = loss_of(r.get("loss"), r.get("diverged", False))
                result.losses[t.key] = (t, loss)
                result.costs[t.key] = TrialCost(
                    key=t.key, width=t.width, loss=loss, cpu_s=r["cpu_s"], flops=r["flops"]
                )
            if waiting and not stopping.asked:
                dispatch(list(waiting.values()))
            refresh()
    stopping.finish(f"sweep {sweep_cfg.name}")
    return result


def _saved_cost(run_dir: Path, key: str, wall_time: float | None) -> dict[str, float]:
    """A reused trial's cost as its worker saved it (else its wall time, FLOPs unknown)."""
    try:
        d = json.loads((run_dir / COSTS_FILE).read_text())[key]
        return {"cpu_s": float(d["cpu_s"]), "flops": float(d["flops"])}
    except (OSError, ValueError, KeyError):
        return {"cpu_s": float(wall_time or 0.0), "flops": math.nan}


def _train_one(cfg: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Worker: train one composed config (no store row): the pipeline's target runs."""
    import torch
    from omegaconf import OmegaConf

    from muscale.train.loop import run

    torch.set_num_threads(1)
    t0 = time.process_time()
    from muscale.train.stop import Stopped

    _start_task()
    try:
        res = run(OmegaConf.create(cfg), Path(run_dir))
    finally:
        _WORKER["busy"] = False
    if res.stopped_by == "signal":
        _WORKER["sigterm"] = True
        raise Stopped(f"run {run_dir} stopped by SIGTERM at step {res.steps}")
    loss = res.best_eval_loss if res.best_eval_loss is not None else res.final_eval_loss
    return {"loss": loss_of(loss, res.diverged), "cpu_s": time.process_time() - t0}


def run_configs(
    runs: list[tuple[str, dict[str, Any], str]],
    *,
    pool: ProcessPoolExecutor,
    jobs: int = 2,
    label: str = "runs",
    progress: str = "auto",
    stop: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train ``(name, config, run_dir)`` runs in the pool; return each name's loss.

    ``stop``: as in :func:`run_sweep` (a SIGTERM stops every run at a checkpoint: re-run to
    resume them)."""
    from muscale.train.stop import Stopped

    stopping = _Stopping(stop)
    display = Display(label, jobs, progress)
    out: dict[str, float] = {}
    try:
        futs = {pool.submit(_train_one, c, d): n for n, c, d in runs}
        pending = set(futs)
        display.update(done=0, running=min(len(pending), jobs), total=len(runs), best={})
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            if stopping.asked:
                for f in pending:
                    f.cancel()
            for f in finished:
                if f.cancelled():
                    continue
                try:
                    out[futs[f]] = f.result()["loss"]
                except Stopped:
                    continue
            display.update(done=len(out), running=min(len(pending), jobs), total=len(runs), best={})
    finally:
        display.close()
    stopping.finish(label)
    return out
