"""Memory the coordinate check keeps from one step, and one seed, to the next.

Why: at the default GPT check's tiny batch (2 x 16 tokens) a large tensor allocated fresh is
fresh memory from the OS, and the first write to each 4 KiB page is a page fault in which
the kernel zero-fills it, ~10x the cost of a ``zero_()`` of memory already mapped. glibc
hands freed memory at the top of its heap back to the OS once more than ~32 MB are free
there, so a check that frees its gradients every step (``zero_grad(set_to_none=True)``) and
its model and Adam state every seed faults the same memory in again and again: ~1.4 GB,
0.45–0.65 s of system time in a 2.5 s default check (width 1024: 100 MB of weights and of
gradients and 200 MB of Adam moments per seed).

Keeping only some of it helps nothing (measured): what is freed is given back whichever
buffers are kept, and the faults move to the others. Kept all together, they stay mapped:
the seeds at one size have the same shapes, so the check re-draws the same model in place
for the next seed where its factory can (:meth:`muscale.coord.run.ConfigFactory.reinit`),
keeps the gradients between steps (:class:`KeptGrads`) and lends Adam's moment buffers to
the next seed's optimizer (:class:`BufferPool`): 2.5x fewer page faults, 0.2–0.25 s less CPU
time (docs/coord_check.md, "Speed"). Zero is zero and ``0 + g`` equals ``g``: the steps and
the statistics are the same numbers (``tests/test_coord_buffers.py``; at most a zero's sign
differs, ``-0.0 + 0.0`` being ``+0.0``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def _key(t: Tensor) -> tuple[Any, ...]:
    return (tuple(t.shape), t.dtype, t.device)


@dataclass
class BufferPool:
    """Dense buffers kept for reuse, by shape, dtype and device."""

    free: dict[tuple[Any, ...], list[Tensor]] = field(default_factory=dict)

    def take(self, like: Tensor) -> Tensor | None:
        """A kept buffer shaped like contiguous ``like``, zeroed; None when there is none."""
        bufs = self.free.get(_key(like)) if like.is_contiguous() else None
        return bufs.pop().zero_() if bufs else None

    def zeros_like(self, p: Tensor) -> Tensor:
        """``torch.zeros_like(p)``, from a kept buffer when there is one."""
        buf = self.take(p)
        return buf if buf is not None else torch.zeros_like(p, memory_format=torch.preserve_format)

    def give(self, tensors: Iterable[Tensor]) -> None:
        """Keep ``tensors`` (the dense, contiguous ones) for later :meth:`take` calls; the
        caller must hold no other reference that it still reads."""
        for t in tensors:
            if t.layout == torch.strided and t.is_contiguous():
                self.free.setdefault(_key(t), []).append(t)

    def __len__(self) -> int:
        return sum(map(len, self.free.values()))


class KeptGrads:
    """Gradients kept between steps and zeroed in place, with ``set_to_none=True``'s values.

    Before a backward every parameter's gradient is zeroed in place; autograd then
    accumulates into it (``grad += new``, equal to ``new`` since ``0 + x = x``) instead of
    allocating a new one. A parameter whose buffer the backward did not write (its version
    counter unchanged: no gradient this step, e.g. a branch not taken) gets ``grad = None``
    back, as ``zero_grad(set_to_none=True)`` would leave it, so the optimizer skips it as
    before. Sparse gradients are set to None, as before.
    """

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self._armed: list[tuple[Tensor, Tensor, int]] = []

    def before_backward(self) -> None:
        self._armed = []
        for p in self.params:
            g = p.grad
            if g is None:
                continue  # autograd allocates it; it is kept from the next step on
            if g.layout != torch.strided:
                p.grad = None
                continue
            g.zero_()
            self._armed.append((p, g, g._version))

    def after_backward(self) -> None:
        for p, g, version in self._armed:
            if p.grad is g and g._version == version:  # nothing accumulated this step
                p.grad = None
        self._armed = []
