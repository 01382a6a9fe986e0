"""Tokenizers for the ``hf`` dataset: a ``transformers`` tokenizer from a local path, or bytes.

Nothing is ever downloaded: ``AutoTokenizer.from_pretrained(path, local_files_only=True)``
accepts a directory written by ``save_pretrained`` (or a name already in the local HF
cache). Documents are encoded without the tokenizer's own special tokens; the pipeline puts
the EOS token after each document itself. The fingerprint (a hash of the tokenizer's full
serialisation) goes into the token-cache key, so a changed tokenizer re-tokenizes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from muscale.errors import UserError

BYTE_EOS = 0  # NUL: the document separator of the byte-level fallback


@dataclass(frozen=True)
class Tokenizer:
    """What the pipeline needs from a tokenizer."""

    name: str
    vocab_size: int
    eos_id: int | None
    fingerprint: str
    encode_batch: Callable[[list[str]], list[list[int]]]


def byte_tokenizer() -> Tokenizer:
    """UTF-8 bytes, vocabulary 256; NUL bytes inside a text are dropped (NUL is EOS)."""

    def encode(texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8").replace(b"\0", b"")) for t in texts]

    return Tokenizer("bytes", 256, BYTE_EOS, "bytes-utf8-v1", encode)


def load_tokenizer(path: str | None) -> Tokenizer:
    """The byte tokenizer for ``None``, else a ``transformers`` tokenizer from ``path``."""
    if path is None:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    local = Path(path).expanduser()
    try:
        tok = AutoTokenizer.from_pretrained(
            str(local) if local.is_dir() else path, local_files_only=True
        )
    except Exception as exc:  # transformers raises OSError/ValueError/... for a bad path
        where = "a directory without a usable tokenizer" if local.is_dir() else "not a directory"
        raise UserError(
            f"data.tokenizer={path!r}: unknown tokenizer path ({where}); give a local "
            f"directory written by save_pretrained ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]})"
        ) from None
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id

    def encode(texts: list[str]) -> list[list[int]]:
        return tok(texts, add_special_tokens=False)["input_ids"]

    return Tokenizer(str(path), len(tok), eos, _fingerprint(tok), encode)


def _fingerprint(tok: object) -> str:
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary
        vocab = tok.get_vocab()  # type: ignore[attr-defined]
        h.update(json.dumps(sorted(vocab.items())).encode())
    special = getattr(tok, "special_tokens_map", {})
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
