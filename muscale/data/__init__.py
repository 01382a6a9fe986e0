"""Data for the trainer: the embedded datasets, HF ``datasets`` corpora, batches by step.

``build_data(cfg, rank=, world_size=)`` returns a :class:`DataSource` whose batches are a
pure function of ``(seed, step, rank, world_size, micro)`` (see
:mod:`muscale.data.batches`): resuming needs no data state, ranks partition each step's
global batch, and micro-batches partition each rank's share.

=========== ======================================================== ===================
``name``    what                                                     module
=========== ======================================================== ===================
synthetic   generated language with a known loss floor (default)     :mod:`.synthetic`
pytext      the Python stdlib's ``.py`` files, byte-level            :mod:`.pytext`
hf          local text/JSONL/parquet/CSV or a hub dataset, tokenized :mod:`.hf`
teacher     Gaussian inputs labelled by a random teacher MLP         :mod:`.teacher`
=========== ======================================================== ===================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from muscale.data.batches import DataSource
from muscale.data.config import (
    DATA_CONFIGS,
    DataConfig,
    HFDataConfig,
    PyTextDataConfig,
    SyntheticDataConfig,
    TeacherDataConfig,
    data_config,
    data_schemas,
)


def _synthetic(cfg: Any, rank: int, world_size: int, cache_dir: Path | None) -> DataSource:
    from muscale.data.synthetic import SyntheticSource

    return SyntheticSource(cfg, rank=rank, world_size=world_size)


def _pytext(cfg: Any, rank: int, world_size: int, cache_dir: Path | None) -> DataSource:
    from muscale.data.pytext import PyTextSource

    return PyTextSource(cfg, rank=rank, world_size=world_size)


def _hf(cfg: Any, rank: int, world_size: int, cache_dir: Path | None) -> DataSource:
    from muscale.data.hf import HFSource

    return HFSource(cfg, rank=rank, world_size=world_size, cache_dir=cache_dir)


def _teacher(cfg: Any, rank: int, world_size: int, cache_dir: Path | None) -> DataSource:
    from muscale.data.teacher import TeacherSource

    return TeacherSource(cfg, rank=rank, world_size=world_size)


#: ``data.name`` -> builder (the same keys as :data:`muscale.data.config.DATA_CONFIGS`)
BUILDERS = {"synthetic": _synthetic, "pytext": _pytext, "hf": _hf, "teacher": _teacher}


def build_data(
    cfg: Any, *, rank: int = 0, world_size: int = 1, cache_dir: str | Path | None = None
) -> DataSource:
    """The data source of ``cfg`` (a data config dataclass, dict or DictConfig) for ``rank``.

    ``cache_dir`` (``hf`` only) overrides ``data.cache_dir`` for the token cache. Raises
    :class:`~muscale.errors.UserError` for an unknown dataset name, a missing or empty
    path, an unknown tokenizer path or a ``seq_len`` larger than the data.
    """
    dcfg = data_config(cfg)
    return BUILDERS[dcfg.name](
        dcfg, rank, world_size, Path(cache_dir) if cache_dir is not None else None
    )


__all__ = [
    "BUILDERS",
    "DATA_CONFIGS",
    "DataConfig",
    "DataSource",
    "HFDataConfig",
    "PyTextDataConfig",
    "SyntheticDataConfig",
    "TeacherDataConfig",
    "build_data",
    "data_config",
    "data_schemas",
]
