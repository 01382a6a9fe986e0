"""Buffers the coordinate check hands from one seed's model to the next at the same size.

Why: at the default GPT check's tiny batch (2 x 16 tokens) the work is dominated by passes
over the weights, and a large tensor allocated fresh is fresh memory from the OS: the first
write to each 4 KiB page is a page fault in which the kernel zero-fills it, ~10x the cost of
a ``zero_()`` of memory already mapped (glibc returns freed blocks at the top of its heap to
the OS once more than ~32 MB are free there). Adam's two moment buffers per parameter,
``zeros_like`` at each seed's first step, were 0.25–0.3 s of a 2.9 s check (200 MB per seed
at width 1024). The seeds at one size have the same shapes, so the check keeps them and
zeroes them instead. Zero is zero: the steps are bit-identical
(``tests/test_coord_functional_optim.py``).

Tried and not kept: gradients kept between steps and zeroed in place (autograd then
accumulates ``0 + g`` instead of allocating): 40 % fewer page faults, but the extra zeroing
and accumulation cost as much as the faults saved (2.42 s against 2.48 s, within noise).
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
