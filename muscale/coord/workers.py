"""Run independent jobs of a coordinate check in forked worker processes.

Why: each (size, seed) of a check is an independent training run: its model is built under
its own seed and trained on the fixed batch, so its numbers do not depend on which process
runs it, nor on what ran before (``tests/test_coord_workers.py``: bit-identical to one
process). At the default check's tiny batch (2 x 16 tokens) a single run is a chain of
small matmuls and element-wise passes that intra-op threads barely speed up, so on a
machine with two cores two processes with one thread each finish sooner than one process
with two threads (docs/coord_check.md, "Speed").

The workers are forked after everything is imported (Linux's ``fork``: no re-import, and
the factory need not be picklable); each runs with one intra-op thread, its results come
back pickled through a pipe, and the work is split by an estimate of each job's cost
(longest first, onto the least loaded worker: Graham's LPT rule, within 4/3 of the best
split).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from muscale.errors import UserError

T = TypeVar("T")
R = TypeVar("R")


def check_workers(workers: int) -> None:
    """``workers`` must be a positive integer, and > 1 needs ``fork`` (Linux)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers={workers!r}: must be an integer >= 1")
    if workers > 1 and "fork" not in mp.get_all_start_methods():
        raise UserError(
            f"workers={workers}: worker processes need the 'fork' start method (Linux); "
            "use workers=1 here"
        )
    if workers > 1 and torch.cuda.is_available() and torch.cuda.is_initialized():
        raise UserError(
            f"workers={workers}: CUDA is initialised in this process and cannot be forked; "
            "worker processes are for CPU checks, use workers=1 on a GPU"
        )


def split(costs: Sequence[float], workers: int) -> list[list[int]]:
    """Indices of ``costs`` per worker: longest job first onto the least loaded worker
    (ties: the lower worker); each worker's list in the order it will run them."""
    loads = [0.0] * workers
    groups: list[list[int]] = [[] for _ in range(workers)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        k = min(range(workers), key=lambda k: (loads[k], k))
        groups[k].append(i)
        loads[k] += costs[i]
    return [g for g in groups if g]


def _child(fn: Callable[[Any], Any], items: list[Any], conn: Any) -> None:
    torch.set_num_threads(1)
    try:
        msg = ("ok", [fn(item) for item in items])
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # any failure goes back to the parent
        try:
            data = pickle.dumps(("error", exc))
        except Exception:  # an exception that cannot be pickled: its text instead
            data = pickle.dumps(("error", RuntimeError(traceback.format_exc())))
    conn.send_bytes(data)
    conn.close()


def map_forked(
    fn: Callable[[T], R], items: Sequence[T], costs: Sequence[float], workers: int
) -> list[R]:
    """``[fn(item) for item in items]``, computed in ``workers`` forked processes (one
    intra-op thread each), the items split by ``costs``. An exception in a worker is raised
    here (a :class:`~muscale.errors.UserError` stays one); a worker that dies without an
    answer (killed, out of memory) is a ``RuntimeError`` with its exit code."""
    check_workers(workers)
    ctx = mp.get_context("fork")
    groups = split(costs, min(workers, len(items)))
    procs = []
    for group in groups:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(fn, [items[i] for i in group], send))
        proc.start()
        send.close()  # the child holds its own copy; EOF when it exits
        procs.append((group, proc, recv))
    out: list[Any] = [None] * len(items)
    error: BaseException | None = None
    for group, proc, recv in procs:
        try:
            status, value = pickle.loads(recv.recv_bytes())
        except EOFError:
            proc.join()
            status, value = (
                "error",
                RuntimeError(
                    f"a coord-check worker (pid {proc.pid}) exited with code {proc.exitcode} "
                    "before answering (out of memory?); run with workers=1 to see"
                ),
            )
        recv.close()
        proc.join()
        if status == "error":
            error = error or value
            continue
        for i, r in zip(group, value, strict=True):
            out[i] = r
    if error is not None:
        raise error
    return out
