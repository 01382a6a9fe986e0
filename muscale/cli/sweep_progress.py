"""``muscale sweep``'s one progress display: trials done/running/total, ETA, best loss per width.

The display is :class:`muscale.trial_pool.Display` (the pipeline's); this module feeds it.

Why it reads the store: a Hydra launcher returns only when its whole batch has finished
(the basic launcher runs the batch one trial after another in this process; joblib and
SLURM run it elsewhere), and a grid sweep is a single batch, so counting returned batches
would show 0/N for the whole sweep. Every trial, under any launcher, heartbeats its lease
while it trains and writes its result to the store the moment it ends
(:func:`muscale.sweep.job.run_trial`), so the store knows which trials are running and which
are done. A daemon thread reads it every :data:`POLL_S` seconds; each batch's returned
results are applied as well (they also cover a job that failed before reaching the store).

What the numbers mean: ``total`` is the trials this invocation runs or waits for, planned so
far (strategies that plan round by round, adaptive, asha, tpe and cmaes, add trials as
rounds are planned); trials reused from the store are not counted, so the ETA
(elapsed / done x remaining) is of this invocation's work. ``running`` is the planned trials
holding a live lease (a trial of this sweep run by another owner, which this sweep waits
for, counts; a SLURM job still queued does not). ``best`` is the lowest finite loss per
width among the planned trials, reused ones included.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from muscale.sweep.driver import loss_of
from muscale.sweep.trial_spec import Trial

#: seconds between two reads of the store
POLL_S = 1.0
#: plain mode: at most one line per this many seconds while trials finish, then a last line
PLAIN_EVERY_S = 30.0


def display_mode(mode: str, *, tty: bool | None = None) -> str:
    """``auto``: a live bar on a terminal, else plain lines (a log file, CI, a batch job)."""
    if mode != "auto":
        return mode
    return "rich" if (sys.stderr.isatty() if tty is None else tty) else "plain"


class SweepProgress:
    """State of one sweep invocation's display; use as a context manager around the rounds.

    ``store``: the sweep's :class:`muscale.sweep.store.Store`; ``done``: losses of trials
    already finished in the store (by key), reused when planned.
    """

    def __init__(
        self,
        *,
        name: str,
        store: Any,
        lease_s: float,
        mode: str,
        done: Mapping[str, float],
        poll_s: float = POLL_S,
        plain_every_s: float = PLAIN_EVERY_S,
    ) -> None:
        self.mode = display_mode(mode)
        self.name, self.store, self.lease_s = name, store, lease_s
        self.poll_s, self.plain_every_s = poll_s, plain_every_s
        self._done_before = dict(done)
        self._trials: dict[str, Trial] = {}  # planned, to run or wait for
        self._losses: dict[str, float] = {}  # of those, finished
        self._best: dict[int, float] = {}
        self._running = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.display: Any = None
        self._lines = (time.perf_counter(), 0)  # plain mode: when the last line was, its done

    # -- what the sweeper tells it --------------------------------------------------------
    def planned(self, trials: list[Trial]) -> None:
        """A round's trials, as the planner proposed them (reused ones included)."""
        with self._lock:
            for t in trials:
                if t.key in self._done_before:
                    self._note_best(t, self._done_before[t.key])
                else:
                    self._trials.setdefault(t.key, t)
        self._show()

    def finished(self, losses: Mapping[str, float]) -> None:
        """Losses of a returned batch, by key (inf: failed or diverged)."""
        with self._lock:
            for key, loss in losses.items():
                self._finish(key, loss)
            self._running = 0
        self._show()

    # -- reading the store ----------------------------------------------------------------
    def poll(self) -> None:
        """One read of the store: trials done since the last read, and those running."""
        with self._lock:
            pending = [k for k in self._trials if k not in self._losses]
        if not pending:
            return
        states = self.store.lease_states(pending, self.lease_s)
        new = {k for k, s in states.items() if s == "done"}
        records = {r.key: r for r in self.store.records(self.name)} if new else {}
        with self._lock:
            for key in new & records.keys():
                self._finish(key, loss_of(records[key].loss, records[key].diverged))
            self._running = sum(s == "leased" for s in states.values())
        self._show()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            # the display must never stop a sweep: a busy or briefly locked store is read
            # again at the next poll, and every batch's results arrive through finished()
            with contextlib.suppress(Exception):
                self.poll()

    # -- drawing --------------------------------------------------------------------------
    def _finish(self, key: str, loss: float) -> None:
        t = self._trials.get(key)
        if t is None or key in self._losses:
            return
        self._losses[key] = loss
        self._note_best(t, loss)

    def _note_best(self, t: Trial, loss: float) -> None:
        if math.isfinite(loss):
            self._best[t.width] = min(self._best.get(t.width, math.inf), loss)

    def _show(self) -> None:
        if self.display is None:
            return
        with self._lock:  # one drawer at a time: the sweeper's thread or the poller
            done, total = len(self._losses), len(self._trials)
            running = min(self._running, total - done)
            self.display.update(done=done, running=running, total=total, best=dict(self._best))
            when, shown = self._lines
            now = time.perf_counter()
            if self.mode == "plain" and done != shown and now - when >= self.plain_every_s:
                self._lines = (now, done)
                print(f"{self.display.label}: {self.display.text()}", file=sys.stderr, flush=True)

    def planner(self, plan: Any) -> DisplayedPlanner:
        """``plan``, telling this display each round's trials."""
        return DisplayedPlanner(plan=plan, progress=self)

    def __enter__(self) -> SweepProgress:
        if self.mode == "off":
            return self
        from muscale.trial_pool import Display

        # Display's ``jobs`` only labels the pool it was built for; the launcher decides here
        self.display = Display(f"sweep {self.name}", 1, self.mode)
        self._thread = threading.Thread(target=self._watch, name="sweep-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.display is not None:
            self.display.close()  # plain: the last line


class DisplayedPlanner:
    """A planner (:class:`muscale.sweep.strategy.Planner`) whose rounds the display sees."""

    def __init__(self, *, plan: Any, progress: SweepProgress) -> None:
        self.plan, self.progress = plan, progress

    def next_round(self, losses: Mapping[str, tuple[Trial, float]]) -> list[Trial]:
        trials = self.plan.next_round(losses)
        self.progress.planned(trials)
        return trials
