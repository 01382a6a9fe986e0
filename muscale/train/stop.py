"""Stopping early on SIGTERM, honestly: a distinct exit status, and no orphaned workers.

Schedulers send SIGTERM before pre-empting a job (SLURM: ``--signal``, or at the time
limit). A run that stops early is checkpointed and *not* complete, so it must not exit 0:
it exits :data:`EXIT_STOPPED` (143 = 128 + SIGTERM, the status a shell reports for a
process killed by SIGTERM), which requeue scripts can test for. A sweep's parent forwards
the signal to its worker processes (joblib/loky) and waits for them to checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: exit status of a run or sweep stopped early by SIGTERM (checkpointed; resume to finish)
EXIT_STOPPED = 143


class Stopped(SystemExit):
    """Raised to unwind a process stopped by SIGTERM with status :data:`EXIT_STOPPED`."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_STOPPED)
        self.message = message


def descendants(pid: int | None = None) -> list[int]:
    """Pids of all live descendants of ``pid`` (default: this process), from ``/proc``."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextlib.contextmanager
def forwarding_sigterm(state: dict[str, Any]) -> Iterator[None]:
    """While inside: SIGTERM is forwarded to every descendant process (they checkpoint and
    stop) and recorded in ``state["signal"]``; with no worker processes (trials run in this
    process) it raises :class:`Stopped` at once. Outside the main thread: no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        state["signal"] = True
        workers = descendants()
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        if not workers:
            raise Stopped("stopped by SIGTERM")

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
