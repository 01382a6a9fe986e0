"""Real text present on every machine: the Python standard library's own source, as bytes.

The ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` (``site-packages``,
``dist-packages`` and ``__pycache__`` excluded) are put in a fixed pseudo-random order (by
the SHA-256 of their relative path) and taken whole while they fit in ``max_bytes``; the
held-out split is made of whole files (:func:`muscale.data.cache.split_documents`). Files
are joined with a NUL byte (``0``, absent from Python source) as the document separator;
the vocabulary is the 256 byte values.

The content depends on the Python version (and distribution patches), so ``describe()``
records the version and a SHA-256 of the corpus: compare runs only when the hashes agree.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from muscale.data.batches import LMSource, PackedRows
from muscale.data.cache import split_documents
from muscale.data.config import PyTextDataConfig
from muscale.errors import UserError

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
SEPARATOR = 0


def stdlib_files(root: Path) -> list[Path]:
    """The ``.py`` files under ``root`` in the corpus order (SHA-256 of the relative path)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]  # prune the walk
        files += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    return sorted(files, key=lambda p: _path_key(p.relative_to(root)))


def _path_key(rel: Path) -> bytes:
    return hashlib.sha256(rel.as_posix().encode()).digest()


def read_corpus(root: Path, max_bytes: int) -> tuple[list[str], list[bytes]]:
    """Relative paths and contents of whole files, in corpus order, up to ``max_bytes``."""
    if not root.is_dir():
        raise UserError(f"data.root={str(root)!r}: no such directory")
    names, texts, total = [], [], 0
    for p in stdlib_files(root):
        if total + p.stat().st_size + 1 > max_bytes:
            continue  # greedy fill: a smaller file further on may still fit
        data = p.read_bytes().replace(b"\0", b"")
        if not data:
            continue
        names.append(p.relative_to(root).as_posix())
        texts.append(data)
        total += len(data) + 1
    if not texts:
        raise UserError(
            f"data.root={str(root)!r}: no non-empty .py file of at most "
            f"data.max_bytes={max_bytes} bytes found there"
        )
    return names, texts


def _join(texts: list[bytes]) -> np.ndarray:
    out = bytearray()
    for t in texts:
        out += t
        out.append(SEPARATOR)
    return np.frombuffer(bytes(out), dtype=np.uint8)


class PyTextSource(LMSource):
    """The byte-level stdlib corpus as a :class:`~muscale.data.batches.DataSource`."""

    def __init__(self, cfg: PyTextDataConfig, *, rank: int, world_size: int) -> None:
        root = Path(cfg.root) if cfg.root else Path(sysconfig.get_paths()["stdlib"])
        names, texts = read_corpus(root, cfg.max_bytes)
        keys = [_path_key(Path(n)) for n in names]
        held = split_documents([len(t) + 1 for t in texts], keys, cfg.eval_fraction)
        train = _join([t for t, h in zip(texts, held, strict=True) if not h])
        held_out = _join([t for t, h in zip(texts, held, strict=True) if h])
        corpus = hashlib.sha256()
        for n, t in zip(names, texts, strict=True):
            corpus.update(n.encode() + b"\0" + hashlib.sha256(t).digest())
        info = {
            "root": str(root),
            "python": sys.version.split()[0],
            "files": {"train": int(len(held) - sum(held)), "eval": int(sum(held))},
            "tokens": {"train": len(train), "eval": len(held_out)},
            "corpus_hash": corpus.hexdigest()[:16],
            "separator": SEPARATOR,
        }
        super().__init__(
            name=cfg.name,
            vocab_size=256,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            eval_batches=cfg.eval_batches,
            rank=rank,
            world_size=world_size,
            train=PackedRows(train, cfg.seq_len, seed=cfg.seed, shuffle=cfg.shuffle, what="train"),
            held_out=PackedRows(held_out, cfg.seq_len, seed=cfg.seed, shuffle=False, what="eval"),
            info=info,
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["sequences"] = {"train": self.train.n, "eval": self.held_out.n}  # type: ignore[attr-defined]
        return d
