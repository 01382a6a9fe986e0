"""Progress: a rich bar when stderr is a terminal, plain log lines when it is not
(batch jobs, CI, pipes), nothing on ranks other than 0."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("muscale.train")


def _fmt(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif v is not None:
            parts.append(f"{k} {v}")
    return " | ".join(parts)


class Progress:
    """``mode``: auto (rich on a TTY, else plain), rich, plain or off."""

    def __init__(self, mode: str, *, total: int, start: int, enabled: bool) -> None:
        if not enabled:
            mode = "off"
        elif mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode, self.total = mode, total
        self._bar: Any = None
        self._task: Any = None
        self._last = ""
        if mode == "rich":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=start, info="")

    def step(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=self._last)

    def metrics(self, metrics: dict[str, Any]) -> None:
        """A logged line: the bar's caption, or a plain line."""
        shown = {k: v for k, v in metrics.items() if k not in ("tokens", "time")}
        if self.mode == "rich":
            self._last = _fmt({k: v for k, v in shown.items() if k != "step"})
            self.step(int(metrics["step"]))
        elif self.mode == "plain":
            self.message(
                f"step {metrics['step']}/{self.total} | "
                + _fmt({k: v for k, v in shown.items() if k != "step"})
            )

    def message(self, text: str) -> None:
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.console.print(text)
        elif logging.getLogger().hasHandlers():  # under Hydra: console + the job's log file
            log.info(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
