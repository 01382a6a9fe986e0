r"""Teacher-student data for the MLP family: a fixed random MLP labels Gaussian inputs.

The teacher is ``in_dim -> teacher_width (x teacher_depth blocks) -> out_dim`` with
weights :math:`W_{ij} \sim \mathcal N(0, 1/\mathrm{fan\_in})` drawn from ``teacher_seed``
(the classic student-teacher setting, e.g. Saad & Solla 1995; Goldt et al. 2019). Inputs
:math:`x \sim \mathcal N(0, I_{\mathrm{in\_dim}})`.

* ``regression``: :math:`y = (f(x) - \mu) / \sigma + \varepsilon`, with :math:`\mu, \sigma`
  the per-output mean and std of the teacher on a fixed calibration set (unit-variance
  targets whatever the teacher), :math:`\varepsilon \sim \mathcal N(0, \mathrm{noise\_std}^2)`.
  The mean-squared-error floor is ``noise_std**2``.
* ``classification``: :math:`y = \arg\max_k [(f(x) - \mu)/\sigma + \varepsilon]_k`; centring
  balances the classes. With ``noise_std = 0`` the labels are a deterministic function of
  :math:`x` (Bayes error 0).

Batch ``step`` is drawn whole from a stream seeded by ``(seed, step)`` and the teacher is
applied to the whole global batch, then this rank's (micro-)slice is returned: slices are
bit-identical to the single-process batch (no batch-size-dependent matmul kernels).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from muscale.data.batches import (
    SALT_EVAL,
    SALT_TABLES,
    SALT_TRAIN,
    check_layout,
    eval_indices,
    train_indices,
)
from muscale.data.config import TeacherDataConfig

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda h: np.maximum(h, 0.0),
    "gelu": lambda h: 0.5 * h * (1.0 + np.tanh(0.7978845608028654 * (h + 0.044715 * h**3))),
}
CALIBRATION = 4096


class TeacherSource:
    """Gaussian inputs and teacher targets as a :class:`~muscale.data.batches.DataSource`."""

    vocab_size: int | None = None
    in_dim: int | None
    out_dim: int | None
    kind: str

    def __init__(self, cfg: TeacherDataConfig, *, rank: int, world_size: int) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.kind = cfg.task
        self.in_dim, self.out_dim = cfg.in_dim, cfg.out_dim
        self.batch_size, self.eval_batches = cfg.batch_size, cfg.eval_batches
        self.local_batch_size = check_layout(cfg.batch_size, rank, world_size)
        rng = np.random.default_rng([cfg.teacher_seed, SALT_TABLES])
        dims = [cfg.in_dim] + [cfg.teacher_width] * (cfg.teacher_depth + 1) + [cfg.out_dim]
        self.weights = [
            rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
            for fan_in, fan_out in itertools.pairwise(dims)
        ]
        f = self.teacher(rng.standard_normal((CALIBRATION, cfg.in_dim)))
        self.mu, self.sigma = f.mean(axis=0), f.std(axis=0) + 1e-12

    def teacher(self, x: np.ndarray) -> np.ndarray:
        """The raw teacher output ``f(x)``, float64: ``(n, in_dim) -> (n, out_dim)``."""
        act = ACTIVATIONS[self.cfg.activation]
        h = x
        for w in self.weights[:-1]:
            h = act(h @ w.T)
        return h @ self.weights[-1].T

    def _batch(self, salt: int, i: int, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, salt, i])
        x = rng.standard_normal((cfg.batch_size, cfg.in_dim))
        noise = cfg.noise_std * rng.standard_normal((cfg.batch_size, cfg.out_dim))
        z = (self.teacher(x) - self.mu) / self.sigma + noise
        xs = torch.from_numpy(x[lo:hi].astype(np.float32))
        if cfg.task == "classification":
            return xs, torch.from_numpy(z[lo:hi].argmax(axis=1).astype(np.int64))
        return xs, torch.from_numpy(z[lo:hi].astype(np.float32))

    def train_batch(
        self, step: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's ``(x, y)`` of step ``step``: x ``(B_local, in_dim)`` float32; y float32
        ``(B_local, out_dim)`` (regression) or int64 ``(B_local,)`` class labels."""
        idx = train_indices(step, self.batch_size, self.rank, self.local_batch_size, micro, n_micro)
        lo = int(idx[0] - step * self.batch_size)
        return self._batch(SALT_TRAIN, step, lo, lo + len(idx))

    def eval_batch(
        self, i: int, micro: int = 0, n_micro: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out batch ``i`` (global batch size, identical on every rank)."""
        idx = eval_indices(i, self.batch_size, micro, n_micro)
        lo = int(idx[0] - i * self.batch_size)
        return self._batch(SALT_EVAL, i, lo, lo + len(idx))

    def describe(self) -> dict[str, Any]:
        cfg = self.cfg
        h = hashlib.sha256()
        for w in self.weights:
            h.update(w.tobytes())
        d: dict[str, Any] = {
            "name": cfg.name,
            "kind": self.kind,
            "in_dim": cfg.in_dim,
            "out_dim": cfg.out_dim,
            "batch_size": cfg.batch_size,
            "eval_batches": cfg.eval_batches,
            "teacher": {
                "width": cfg.teacher_width,
                "depth": cfg.teacher_depth,
                "activation": cfg.activation,
                "seed": cfg.teacher_seed,
            },
            "noise_std": cfg.noise_std,
            "corpus_hash": h.hexdigest()[:16],
        }
        if cfg.task == "regression":
            d["mse_floor"] = cfg.noise_std**2
        else:
            labels = torch.cat([self.eval_batch(i)[1] for i in range(cfg.eval_batches)])
            freq = np.bincount(labels.numpy(), minlength=cfg.out_dim) / len(labels)
            d["class_frequencies"] = [round(float(f), 4) for f in freq]
        return d
