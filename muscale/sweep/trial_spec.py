"""A trial: one (scheme, width, seed, LR, other hyperparameters) point, with a stable key.

The key is a hash of the sweep name and the trial's coordinates, so the sweeper (which
plans trials) and the trial job (which sees only its resolved config) compute the same key,
and a re-run sweep recognises finished trials.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


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

    @property
    def key(self) -> str:
        payload = json.dumps(
            {
                "sweep": self.sweep,
                "scheme": self.scheme,
                "width": int(self.width),
                "seed": int(self.seed),
                "lr": _canon(float(self.lr)),
                "hp": {k: _canon(v) for k, v in sorted(self.hparams.items())},
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

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
        ]
        out += [
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.hparams.items()
        ]
        return out
