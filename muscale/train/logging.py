"""Metrics: JSON lines in ``<run dir>/metrics.jsonl`` always, Weights & Biases optionally.

Only rank 0 writes. Every line has ``step`` (optimizer steps done); train lines add
``loss``, ``lr`` (the base-width LR times the schedule), ``tokens`` (seen so far, all
ranks), ``tokens_per_s``, ``grad_norm`` (and ``mfu`` on CUDA); eval lines ``eval_loss``.
Non-finite numbers are written as ``null`` (strict JSON); a diverged run's last line says
``"diverged": true`` and why.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from muscale.train.config import LoggerConfig


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All lines of a metrics file."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines after ``step`` (a resumed run repeats them), atomically."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (wandb's config view is flat and searchable)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    out[prefix[:-1]] = d
    return out


def wandb_settings(cfg: LoggerConfig, config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Keyword arguments of ``wandb.init`` (a pure function, tested without wandb).

    Mode: ``logger.mode``, else ``$WANDB_MODE`` (left to wandb), else offline when no
    ``WANDB_API_KEY`` is set. Group: ``logger.group``, else the sweep name, else
    ``<family>-<scheme>``; job type: ``width=<w>``, so a sweep's runs group by width.
    """
    model = config.get("model", {})
    sweep = config.get("sweep") or {}
    group = cfg.group or sweep.get("name") or f"{model.get('family')}-{config['param']['scheme']}"
    kwargs: dict[str, Any] = {
        "project": cfg.project,
        "entity": cfg.entity,
        "name": cfg.name or run_dir.name,
        "group": group,
        "job_type": cfg.job_type or f"width={model.get('width')}",
        "tags": list(cfg.tags),
        "config": flatten({k: v for k, v in config.items() if k != "logger"}),
        "dir": str(run_dir),
        "resume": "allow",
    }
    if cfg.mode is not None:
        kwargs["mode"] = cfg.mode
    elif "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY"):
        kwargs["mode"] = "offline"
    return kwargs


class MetricsLogger:
    """Appends metric dicts to ``metrics.jsonl`` (and wandb) on rank 0; no-op elsewhere."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        cfg: LoggerConfig,
        config: dict[str, Any],
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._file = None
        self._wandb: Any = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run in a used dir: its old lines are not ours
        self._file = open(self.path, "a")  # noqa: SIM115 (held open for the run)
        if cfg.wandb:
            import wandb  # optional dependency: pip install muscale[wandb]

            kwargs = wandb_settings(cfg, config, run_dir)
            id_file = run_dir / "wandb_id"
            if id_file.exists():
                kwargs["id"] = id_file.read_text().strip()
            self._wandb = wandb.init(**kwargs)
            id_file.write_text(self._wandb.id)

    def log(self, metrics: dict[str, Any]) -> None:
        if not self.enabled or self._file is None:
            return
        row = {k: _clean(v) for k, v in metrics.items()}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            for k, v in values.items():
                self._wandb.summary[k] = _clean(v)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
