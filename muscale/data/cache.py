"""The token cache: a corpus tokenized once into memory-mapped files, and the held-out split.

Layout of one entry, ``<cache_dir>/<key>/``:

* ``train.bin``, ``eval.bin``: the concatenated token streams (documents in source order,
  each followed by the separator/EOS token when there is one), raw ``uint16`` when the
  vocabulary fits, else ``uint32``; opened with ``np.memmap``, so the corpus is never
  loaded into memory;
* ``index.json``: sizes, dtype, vocabulary size, EOS id, SHA-256 of the token bytes and the
  settings that produced them.

``key`` is a SHA-256 of everything the tokens depend on (file contents, tokenizer, text
field, EOS, split and cap settings; *not* ``seq_len``, which only changes the packing).
An entry is written under a temporary name and renamed into place (atomic on POSIX), under
an exclusive file lock so that concurrent ranks tokenize once: the others wait and read it.
A stale entry (files changed) is simply never looked up again; delete old keys at will.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muscale.errors import UserError
from muscale.hashing import digest, file_sha256  # noqa: F401  (file_sha256: for data.hf)

CACHE_VERSION = 1
CHUNK = 1 << 24  # tokens per copy chunk when writing the split


def default_cache_dir() -> Path:
    """``$MUSCALE_DATA_CACHE``, else ``~/.cache/muscale/data``."""
    env = os.environ.get("MUSCALE_DATA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "muscale" / "data"


def split_documents(
    lengths: Sequence[int], keys: Sequence[Any], eval_fraction: float
) -> np.ndarray:
    """Which documents are held out (a boolean mask), by whole document.

    Documents are visited in the order of their ``keys`` (a hash: a fixed pseudo-random
    order independent of the source order) and held out while they fit in
    ``eval_fraction`` of the tokens (a greedy fill, so one big document cannot swallow the
    split); if none fits, the shortest document is held out. At least one document is kept
    for training.
    """
    n = len(lengths)
    if n < 2:
        raise UserError(
            f"the dataset has {n} document(s): at least 2 are needed to hold one out for "
            "evaluation (for one big text file, load it line by line)"
        )
    order = sorted(range(n), key=lambda i: keys[i])
    target = eval_fraction * float(sum(lengths))
    held = np.zeros(n, dtype=bool)
    got = 0
    for i in order:
        if got + lengths[i] <= target:
            held[i] = True
            got += lengths[i]
    if not held.any():
        held[min(order, key=lambda i: lengths[i])] = True
    return held


@dataclass
class TokenCache:
    """An opened cache entry: memory-mapped token streams plus the index."""

    path: Path
    index: dict[str, Any]
    train: np.ndarray
    eval: np.ndarray


def _open_stream(path: Path, dtype: str, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


def open_cache(path: Path) -> TokenCache:
    index = json.loads((path / "index.json").read_text())
    dtype = index["dtype"]
    return TokenCache(
        path=path,
        index=index,
        train=_open_stream(path / "train.bin", dtype, index["tokens"]["train"]),
        eval=_open_stream(path / "eval.bin", dtype, index["tokens"]["eval"]),
    )


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


class TokenWriter:
    """Appends documents to a raw token file, remembering their lengths."""

    def __init__(self, path: Path, dtype: str) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.lengths: list[int] = []
        self.n_tokens = 0
        self._f = open(path, "wb")  # noqa: SIM115 (closed by close())

    def add(self, tokens: np.ndarray) -> None:
        if len(tokens) == 0:
            return
        self._f.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self.lengths.append(len(tokens))
        self.n_tokens += len(tokens)

    def close(self) -> None:
        self._f.close()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders just race to rename
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_or_build(
    cache_dir: Path,
    key: str,
    *,
    dtype: str,
    fill: Callable[[TokenWriter], dict[str, Any]],
    eval_fraction: float,
) -> tuple[TokenCache, bool]:
    """Open the entry ``key``, building it with ``fill`` first if absent; return it and
    whether it was a cache hit.

    ``fill(writer)`` adds the documents and returns extra index fields; the documents are
    then split (:func:`split_documents`, keyed by a hash of the document number) into the
    train and held-out streams.
    """
    final = cache_dir / key
    if (final / "index.json").is_file():
        return open_cache(final), True
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{key}.lock"):
        if (final / "index.json").is_file():  # another process built it meanwhile
            return open_cache(final), True
        tmp = cache_dir / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            writer = TokenWriter(tmp / "all.bin", dtype)
            try:
                extra = fill(writer)
            finally:
                writer.close()
            index = _write_split(tmp, writer, eval_fraction)
            index.update(extra, key=key, version=CACHE_VERSION)
            (tmp / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
            shutil.rmtree(final, ignore_errors=True)  # a leftover without index.json
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(final), False


def _write_split(tmp: Path, writer: TokenWriter, eval_fraction: float) -> dict[str, Any]:
    lengths = np.asarray(writer.lengths, dtype=np.int64)
    keys = [
        hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8).digest()
        for i in range(len(lengths))
    ]
    held = split_documents(lengths.tolist(), keys, eval_fraction)
    dtype = writer.dtype
    all_tokens = _open_stream(tmp / "all.bin", dtype.name, writer.n_tokens)
    token_held = np.repeat(held, lengths)
    sha = hashlib.sha256()
    sizes = {}
    for part, mask_value in (("train", False), ("eval", True)):
        n = 0
        with open(tmp / f"{part}.bin", "wb") as f:
            for lo in range(0, writer.n_tokens, CHUNK):
                chunk = all_tokens[lo : lo + CHUNK][token_held[lo : lo + CHUNK] == mask_value]
                data = np.ascontiguousarray(chunk).tobytes()
                f.write(data)
                sha.update(data)
                n += len(chunk)
        sizes[part] = n
    del all_tokens
    (tmp / "all.bin").unlink()
    return {
        "dtype": dtype.name,
        "tokens": sizes,
        "documents": {"train": int((~held).sum()), "eval": int(held.sum())},
        "tokens_sha256": sha.hexdigest(),
        "eval_fraction": eval_fraction,
    }
