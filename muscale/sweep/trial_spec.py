"""A trial: one (scheme, width, seed, LR, other hyperparameters) point, with a stable key.

The key is a hash of the sweep name and the trial's coordinates, so the sweeper (which
plans trials) and the trial job (which sees only its resolved config) compute the same key,
and a re-run sweep recognises finished trials. ``depth`` enters the key only when a sweep
varies it, so keys of width sweeps are unchanged.

The run directory is named by :attr:`Trial.run_id`: the key, except for successive-halving
rungs (``trainer.stop_at`` among the hyperparameters), which share one directory per
configuration so that a promoted trial resumes from the previous rung's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from muscale.sweep.config import STOP_AT


def _canon(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Trial:
    sweep: str
    scheme: str
    width: int
    seed: int
    lr: float
    hparams: dict[str, Any] = field(default_factory=dict)  # config key -> value
    depth: int | None = None  # set only by depth sweeps

    def _hash(self, hparams: dict[str, Any], extra: dict[str, Any]) -> str:
        coords = {
            "sweep": self.sweep,
            "scheme": self.scheme,
            "width": int(self.width),
            "seed": int(self.seed),
            "lr": _canon(float(self.lr)),
            "hp": {k: _canon(v) for k, v in sorted(hparams.items())},
            **extra,
        }
        if self.depth is not None:
            coords["depth"] = int(self.depth)
        payload = json.dumps(coords, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def key(self) -> str:
        return self._hash(self.hparams, {})

    @property
    def run_id(self) -> str:
        """The run directory's name: shared by a configuration's halving rungs."""
        if STOP_AT not in self.hparams:
            return self.key
        rest = {k: v for k, v in self.hparams.items() if k != STOP_AT}
        return self._hash(rest, {"rungs": True})

    @property
    def point(self) -> tuple:
        """The configuration without the seed (and rung): trials averaged over seeds."""
        return (
            self.scheme,
            self.width,
            self.depth,
            _canon(float(self.lr)),
            tuple(sorted((k, repr(_canon(v))) for k, v in self.hparams.items() if k != STOP_AT)),
        )

    @property
    def group(self) -> tuple:
        """Trials that differ only in LR and seed (one LR curve)."""
        return (
            self.scheme,
            self.width,
            tuple(sorted((k, repr(v)) for k, v in self.hparams.items())),
        )

    def overrides(self) -> list[str]:
        """Hydra overrides that make a job run this trial."""
        out = [
            f"param={self.scheme}",
            f"model.width={self.width}",
            f"trainer.seed={self.seed}",
            f"optim.lr={float(self.lr)!r}",
            f"sweep_trial={self.key}",
            f"sweep_run={self.run_id}",
        ]
        if self.depth is not None:
            out.append(f"model.depth={self.depth}")
        out += [
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.hparams.items()
        ]
        return out
