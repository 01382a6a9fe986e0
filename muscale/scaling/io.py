"""Tables of runs -> the canonical frame every fit takes: columns ``N``, ``D``, ``C``,
``loss`` (and ``run``, ``lr``, ``batch_size`` when present).

A file's own column names are mapped with ``columns`` (e.g. the Chinchilla file's
``Model Size``, ``Training FLOP``, ``loss``); of ``D`` and ``C`` one is enough, the other
comes from the FLOPs model (``C = D · f(N)``). A sweep-store adapter only needs to build
the same frame and call :func:`canonical`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from muscale.errors import UserError
from muscale.scaling.laws import SIX_ND, FlopsModel

#: canonical name -> default column name in a file
DEFAULT_COLUMNS: dict[str, str] = {
    "N": "N",
    "D": "D",
    "C": "C",
    "loss": "loss",
    "run": "run",
    "lr": "lr",
    "batch_size": "batch_size",
}
READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or parquet file of runs."""
    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise UserError(f"data={p}: unknown file type {p.suffix!r}; use .csv or .parquet")
    if not p.is_file():
        raise UserError(f"data={p}: no such file")
    try:
        return reader(p)
    except (ValueError, OSError) as exc:
        raise UserError(f"data={p}: cannot read it ({' '.join(str(exc).split())})") from None


def from_store(store: str, sweep: str | None = None) -> pd.DataFrame:
    """Finished, non-diverged trials of a ``muscale sweep`` store as a table of runs.

    ``N``: the model's parameter count (built on the meta device from the trial's stored
    config, embeddings included, as Hoffmann et al. 2022 count them); ``D``: training tokens
    ``max_steps x batch_size x seq_len`` (samples for an MLP); ``loss``: the trial's best
    held-out loss; plus ``run`` (the trial key), ``lr`` and ``batch_size`` for the
    hyperparameter laws.
    """
    from muscale.build import build_model
    from muscale.sweep.store import Store

    db = Store(store, create=False)
    records = [r for r in db.records(sweep) if not r.diverged and r.loss is not None]
    if not records:
        raise UserError(
            f"store={store}: no finished, non-diverged trials"
            + (f" in sweep {sweep}" if sweep else "")
        )
    rows = []
    sizes: dict[str, int] = {}
    for r in records:
        cfg = r.config
        ident = repr((cfg["model"], cfg["param"].get("scheme")))
        if ident not in sizes:
            model, _ = build_model(cfg["model"], cfg["param"], device="meta")
            sizes[ident] = sum(p.numel() for p in model.parameters())
        data = cfg.get("data", {})
        per_step = int(data.get("batch_size", 1)) * (
            int(data.get("seq_len", 1)) if cfg["model"].get("family") == "gpt" else 1
        )
        steps = int(cfg.get("trainer", {}).get("max_steps", 0))
        rows.append(
            {
                "N": sizes[ident],
                "D": steps * per_step,
                "loss": r.loss,
                "run": r.key,
                "lr": r.lr,
                "batch_size": int(data.get("batch_size", 1)),
            }
        )
    return pd.DataFrame(rows)


def canonical(
    raw: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    flops: FlopsModel = SIX_ND,
) -> pd.DataFrame:
    """Rename, check and complete a table of runs.

    Raises :class:`UserError` naming the column when one is missing, not numeric, or holds
    a non-positive or non-finite value.
    """
    names = {**DEFAULT_COLUMNS, **dict(columns or {})}
    unknown = set(names) - set(DEFAULT_COLUMNS)
    if unknown:
        raise UserError(
            f"columns.{sorted(unknown)[0]} is not a known column; map " + ", ".join(DEFAULT_COLUMNS)
        )
    have = {k: v for k, v in names.items() if v in raw.columns}
    missing = [f"{k} (columns.{k}={names[k]!r})" for k in ("N", "loss") if k not in have]
    if "D" not in have and "C" not in have:
        missing.append(f"D or C (columns.D={names['D']!r} / columns.C={names['C']!r})")
    if missing:
        wanted = ", ".join(missing)
        raise UserError(
            f"data lacks column {wanted}; it has {', '.join(map(str, raw.columns))}: map yours "
            "with columns.<name>=<file column>"
        )
    df = pd.DataFrame({k: raw[v] for k, v in have.items()})
    for k in ("N", "D", "C", "loss", "lr", "batch_size"):
        if k in df:
            df[k] = _positive(df[k], k, have[k])
    if "D" not in df:
        df["D"] = df["C"] / flops(df["N"].to_numpy())
    if "C" not in df:
        df["C"] = flops(df["N"].to_numpy()) * df["D"]
    return df.reset_index(drop=True)


def _positive(col: pd.Series, name: str, source: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce")
    bad = ~(np.isfinite(values.to_numpy(dtype=np.float64)) & (values.to_numpy() > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"column {source!r} ({name}) must hold positive finite numbers; {int(bad.sum())} "
            f"row(s) do not, first row {first}: {col.iloc[first]!r}"
        )
    return values.astype(np.float64)
