"""Real datasets through HF ``datasets``, tokenized once into the memory-mapped token cache.

Sources: local ``text``/``json``/``parquet``/``csv`` files (``load_dataset(builder,
data_files=...)``; the builder is inferred from the file suffix when ``data.path`` is not
given), or any other ``load_dataset`` path (a hub name, where the machine can reach the hub
or has it cached, or a local dataset directory). Every non-empty ``text_field`` value is a
document; it is tokenized (:mod:`muscale.data.tokenizer`), followed by EOS, and written to
the cache (:mod:`muscale.data.cache`). Batches then come from fixed-length sequences packed
from the cached streams (:class:`~muscale.data.batches.PackedRows`).

The cache key of local files is computed from their bytes *before* ``datasets`` is touched,
so a cache hit costs one pass of hashing and no tokenization; for other sources it uses the
``datasets`` fingerprint of the loaded split.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np

from muscale.data.batches import LMSource, PackedRows
from muscale.data.cache import (
    TokenCache,
    TokenWriter,
    default_cache_dir,
    digest,
    file_sha256,
    load_or_build,
    token_dtype,
)
from muscale.data.config import HFDataConfig
from muscale.data.tokenizer import Tokenizer, load_tokenizer
from muscale.errors import UserError

#: file suffix -> ``datasets`` packaged builder
BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
ENCODE_BATCH = 1000  # documents per tokenizer call


def resolve_files(patterns: list[str]) -> list[Path]:
    """Expand files, directories (recursively, known suffixes) and globs; check each exists
    and is non-empty."""
    out: list[Path] = []
    for pat in patterns:
        p = Path(pat).expanduser()
        if any(c in pat for c in "*?["):
            hits = sorted(Path(h) for h in glob.glob(str(p), recursive=True) if Path(h).is_file())
            if not hits:
                raise UserError(f"data.data_files: the pattern {pat!r} matches no file")
            out += hits
        elif p.is_dir():
            hits = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in BUILDERS)
            if not hits:
                raise UserError(
                    f"data.data_files: the directory {pat!r} holds no "
                    f"{'/'.join(sorted(BUILDERS))} file"
                )
            out += hits
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"data.data_files: no such file or directory: {pat!r}")
    for f in out:
        if f.stat().st_size == 0:
            raise UserError(f"data.data_files: {str(f)!r} is empty")
    return [f.resolve() for f in out]


def builder_for(cfg: HFDataConfig, files: list[Path]) -> str:
    if cfg.path is not None:
        return cfg.path
    kinds = {BUILDERS.get(f.suffix) for f in files}
    if None in kinds or len(kinds) != 1:
        suffixes = sorted({f.suffix for f in files})
        raise UserError(
            f"data.data_files: cannot infer the format from the suffixes {suffixes}: give "
            f"data.path (one of {', '.join(sorted(set(BUILDERS.values())))})"
        )
    return kinds.pop()  # type: ignore[return-value]


def _load(cfg: HFDataConfig, builder: str, files: list[Path], cache_dir: Path) -> Any:
    import datasets

    kwargs: dict[str, Any] = {"split": cfg.split, "cache_dir": str(cache_dir / "hf_datasets")}
    if files:
        kwargs["data_files"] = [str(f) for f in files]
    try:
        return datasets.load_dataset(builder, cfg.config_name, **kwargs)
    except Exception as exc:  # datasets raises many types for unreadable input
        raise UserError(
            f"data.path={builder!r}: could not load the dataset ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]})"
        ) from None


def _fill(ds: Any, cfg: HFDataConfig, tok: Tokenizer, writer: TokenWriter) -> dict[str, Any]:
    """Tokenize every document of ``ds`` into ``writer`` (the cache-miss path)."""
    if cfg.text_field not in ds.column_names:
        raise UserError(
            f"data.text_field={cfg.text_field!r} is not a column of the dataset: columns "
            f"are {', '.join(ds.column_names)}"
        )
    eos = [tok.eos_id] if cfg.add_eos and tok.eos_id is not None else []
    cap = cfg.max_tokens
    for batch in ds.iter(batch_size=ENCODE_BATCH):
        texts = [t for t in batch[cfg.text_field] if isinstance(t, str) and t.strip()]
        for ids in tok.encode_batch(texts):
            doc = np.asarray(list(ids) + eos, dtype=np.int64)
            if cap is not None:
                doc = doc[: cap - writer.n_tokens]
            writer.add(doc)
            if cap is not None and writer.n_tokens >= cap:
                return {"truncated": True}
    if writer.n_tokens == 0:
        raise UserError(
            f"the dataset has no non-empty {cfg.text_field!r} text: nothing to train on"
        )
    return {"truncated": False}


def build_cache(
    cfg: HFDataConfig, cache_dir: Path | None = None
) -> tuple[TokenCache, Tokenizer, bool]:
    """Open (building on a miss) the token cache of ``cfg``; also return the tokenizer and
    whether it was a hit."""
    if cfg.path is None and not cfg.data_files:
        raise UserError(
            "data=hf needs data.data_files (local files, directories or globs) or data.path "
            "(a datasets builder or hub name)"
        )
    root = Path(cache_dir or cfg.cache_dir or default_cache_dir()).expanduser()
    files = resolve_files(list(cfg.data_files)) if cfg.data_files else []
    builder = builder_for(cfg, files)
    tok = load_tokenizer(cfg.tokenizer)
    settings = {
        "builder": builder,
        "config_name": cfg.config_name,
        "split": cfg.split,
        "text_field": cfg.text_field,
        "tokenizer": tok.fingerprint,
        "eos_id": tok.eos_id if cfg.add_eos else None,
        "eval_fraction": cfg.eval_fraction,
        "max_tokens": cfg.max_tokens,
    }
    ds = None
    source: list[list[Any]]
    if files:
        source = [[str(f), file_sha256(f)] for f in files]
    else:  # a hub name or dataset directory: the datasets fingerprint of the split
        ds = _load(cfg, builder, files, root)
        source = [["datasets", builder, getattr(ds, "_fingerprint", None)]]
    key = digest({"settings": settings, "source": source})[:32]

    def fill(writer: TokenWriter) -> dict[str, Any]:
        data = ds if ds is not None else _load(cfg, builder, files, root)
        extra = _fill(data, cfg, tok, writer)
        return {
            **extra,
            "settings": settings,
            "source": source,
            "vocab_size": tok.vocab_size,
            "eos_id": settings["eos_id"],
        }

    cache, hit = load_or_build(
        root, key, dtype=token_dtype(tok.vocab_size), fill=fill, eval_fraction=cfg.eval_fraction
    )
    return cache, tok, hit


class HFSource(LMSource):
    """A tokenized ``datasets`` corpus as a :class:`~muscale.data.batches.DataSource`."""

    def __init__(
        self, cfg: HFDataConfig, *, rank: int, world_size: int, cache_dir: Path | None = None
    ) -> None:
        cache, tok, hit = build_cache(cfg, cache_dir)
        self.cache = cache
        idx = cache.index
        info = {
            "tokenizer": tok.name,
            "eos_id": idx["eos_id"],
            "tokens": idx["tokens"],
            "documents": idx["documents"],
            "corpus_hash": idx["tokens_sha256"][:16],
            "source": idx["source"],
            "truncated": idx["truncated"],
            "cache": {"path": str(cache.path), "hit": hit},
        }
        super().__init__(
            name=cfg.name,
            vocab_size=int(idx["vocab_size"]),
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            eval_batches=cfg.eval_batches,
            rank=rank,
            world_size=world_size,
            train=PackedRows(
                cache.train, cfg.seq_len, seed=cfg.seed, shuffle=cfg.shuffle, what="train"
            ),
            held_out=PackedRows(cache.eval, cfg.seq_len, seed=cfg.seed, shuffle=False, what="eval"),
            info=info,
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["sequences"] = {"train": self.train.n, "eval": self.held_out.n}  # type: ignore[attr-defined]
        return d
