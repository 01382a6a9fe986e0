"""Batches as a pure function of ``(seed, step, rank, world_size, micro)``.

Every sample of the run has a *global index* ``g = step * batch_size + j`` with
``0 <= j < batch_size``. A rank owns the contiguous block
``j in [rank * B_local, (rank + 1) * B_local)`` (``B_local = batch_size // world_size``), and
micro-batch ``m`` of ``n_micro`` the ``m``-th contiguous piece of that block. Sources map a
global index to one sample without looking at any other, so:

* a resumed run gets bit-identical batches by asking for the step it continues at (no
  iterator state to save);
* the union over ranks of one step is the single-process batch of that step;
* concatenating the micro-batches of a step gives the rank's full batch.

Packed token streams (:class:`PackedRows`) cut the stream into ``n`` non-overlapping
sequences of ``seq_len + 1`` tokens (consecutive sequences share one boundary token so
that every token is a target once) and visit them in a seeded permutation per epoch:
``g -> epoch = g // n, perm_epoch[g % n]``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from muscale.errors import UserError

# Salts keep the random streams of different uses apart (numpy SeedSequence entropy words).
SALT_TRAIN, SALT_EVAL, SALT_SHUFFLE, SALT_TABLES = 0x7A1, 0xE7A1, 0x5F1E, 0x7AB1E


@runtime_checkable
class DataSource(Protocol):
    """What the trainer uses. LM sources set ``vocab_size``; ``teacher`` sets
    ``in_dim``/``out_dim`` (the others are ``None``)."""

    kind: str  # "lm" | "regression" | "classification"
    vocab_size: int | None
    in_dim: int | None
    out_dim: int | None
    batch_size: int
    local_batch_size: int
    eval_batches: int

    def train_batch(
        self, step: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def eval_batch(
        self, i: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def describe(self) -> dict[str, Any]: ...


def check_layout(batch_size: int, rank: int, world_size: int) -> int:
    """Validate the rank layout; return ``B_local``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
    if batch_size % world_size:
        raise UserError(
            f"data.batch_size={batch_size} is not divisible by world_size={world_size}: "
            "choose a global batch size that is a multiple of the number of processes"
        )
    return batch_size // world_size


def micro_range(start: int, size: int, micro: int, n_micro: int) -> tuple[int, int]:
    """``[lo, hi)`` of micro-batch ``micro`` of ``n_micro`` within ``[start, start + size)``."""
    if n_micro < 1 or not 0 <= micro < n_micro:
        raise UserError(f"micro={micro}, n_micro={n_micro}: need 0 <= micro < n_micro")
    if size % n_micro:
        raise UserError(
            f"local batch {size} is not divisible into n_micro={n_micro} micro-batches: "
            "choose batch_size divisible by world_size * n_micro"
        )
    per = size // n_micro
    return start + micro * per, start + (micro + 1) * per


def train_indices(
    step: int, batch_size: int, rank: int, local: int, micro: int, n_micro: int
) -> np.ndarray:
    """Global sample indices of (step, rank, micro); see the module docstring."""
    if step < 0:
        raise UserError(f"step={step}: steps are >= 0")
    lo, hi = micro_range(rank * local, local, micro, n_micro)
    return np.arange(lo, hi, dtype=np.int64) + np.int64(step) * batch_size


def eval_indices(i: int, batch_size: int, micro: int, n_micro: int) -> np.ndarray:
    """Indices of held-out batch ``i`` (the whole global batch: the same on every rank)."""
    if i < 0:
        raise UserError(f"eval batch {i}: indices are >= 0")
    lo, hi = micro_range(0, batch_size, micro, n_micro)
    return np.arange(lo, hi, dtype=np.int64) + np.int64(i) * batch_size


class RowSource(Protocol):
    """Maps global sample indices to token rows of length ``seq_len + 1``."""

    def rows(self, index: np.ndarray) -> np.ndarray: ...


class PackedRows:
    """Fixed-length sequences packed from one token stream, in a seeded order per epoch."""

    def __init__(
        self, stream: np.ndarray, seq_len: int, *, seed: int, shuffle: bool, what: str
    ) -> None:
        n = (len(stream) - 1) // seq_len
        if n < 1:
            raise UserError(
                f"data.seq_len={seq_len} is larger than the data: the {what} split has "
                f"{len(stream)} tokens, fewer than seq_len + 1 = {seq_len + 1}; lower "
                "data.seq_len or give more data"
            )
        self.stream, self.seq_len, self.n = stream, seq_len, n
        self.seed, self.shuffle = seed, shuffle
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            rng = np.random.default_rng([self.seed, SALT_SHUFFLE, epoch])
            perm = rng.permutation(self.n)
            self._perms[epoch] = perm
            while len(self._perms) > 2:  # a step straddles at most two epochs
                self._perms.popitem(last=False)
        return perm

    def sequence_ids(self, index: np.ndarray) -> np.ndarray:
        epoch, pos = np.divmod(index, self.n)
        if not self.shuffle:
            return pos
        out = np.empty_like(pos)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self._perm(int(e))[pos[sel]]
        return out

    def rows(self, index: np.ndarray) -> np.ndarray:
        starts = self.sequence_ids(index) * self.seq_len
        span = np.arange(self.seq_len + 1)
        return np.asarray(self.stream[starts[:, None] + span[None, :]], dtype=np.int64)


def to_xy(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets from rows of ``seq_len + 1`` tokens: ``(B, T)`` each."""
    t = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


class LMSource:
    """A language-modelling :class:`DataSource` over a train and a held-out row source."""

    kind: str = "lm"
    in_dim: int | None = None
    out_dim: int | None = None
    vocab_size: int | None

    def __init__(
        self,
        *,
        name: str,
        vocab_size: int,
        seq_len: int,
        batch_size: int,
        eval_batches: int,
        rank: int,
        world_size: int,
        train: RowSource,
        held_out: RowSource,
        info: dict[str, Any],
    ) -> None:
        self.name, self.vocab_size, self.seq_len = name, vocab_size, seq_len
        self.batch_size, self.eval_batches = batch_size, eval_batches
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = check_layout(batch_size, rank, world_size)
        self.train, self.held_out, self.info = train, held_out, info

    def train_batch(
        self, step: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's ``(x, y)`` of optimizer step ``step`` (micro-batch ``micro``)."""
        idx = train_indices(step, self.batch_size, self.rank, self.local_batch_size, micro, n_micro)
        return to_xy(self.train.rows(idx))

    def eval_batch(
        self, i: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out batch ``i`` (global batch size, identical on every rank)."""
        return to_xy(self.held_out.rows(eval_indices(i, self.batch_size, micro, n_micro)))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "tokens_per_step": self.batch_size * self.seq_len,
            "eval_batches": self.eval_batches,
            **self.info,
        }
