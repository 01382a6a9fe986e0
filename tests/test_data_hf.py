"""Local text/JSONL/parquet files through HF ``datasets``, a local ``transformers``
tokenizer, the memory-mapped token cache, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from muscale.data import build_data
from muscale.errors import ConfigError, UserError

pytest.importorskip("datasets")
pytest.importorskip("transformers")

DOCS = [f"the cat {i} sat on the mat {'and ran ' * (i % 5)}today" for i in range(120)]


def _cfg(tmp_path, files, **kw):
    return {
        "name": "hf",
        "data_files": [str(f) for f in files],
        "seq_len": 8,
        "batch_size": 4,
        "eval_fraction": 0.1,
        "cache_dir": str(tmp_path / "cache"),
        **kw,
    }


def _documents(src) -> list[bytes]:
    """Every document in the cached train + held-out streams (byte-level, NUL-separated)."""
    stream = np.concatenate([np.asarray(src.cache.train), np.asarray(src.cache.eval)])
    return [d for d in bytes(stream.astype(np.uint8).tolist()).split(b"\0") if d]


def _write(tmp_path, fmt):
    if fmt == "text":
        path = tmp_path / "docs.txt"
        path.write_text("\n".join(DOCS) + "\n\n")  # a blank line is no document
    elif fmt == "json":
        path = tmp_path / "docs.jsonl"
        path.write_text(
            "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS))
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "docs.parquet"
        pq.write_table(pa.table({"text": DOCS, "id": list(range(len(DOCS)))}), path)
    return path


@pytest.mark.parametrize("fmt", ["text", "json", "parquet"])
def test_local_files_load_through_datasets(tmp_path, fmt):
    src = build_data(_cfg(tmp_path, [_write(tmp_path, fmt)]))
    d = src.describe()
    assert d["vocab_size"] == 256 and d["tokenizer"] == "bytes" and d["eos_id"] == 0
    docs = _documents(src)
    assert sorted(docs) == sorted(t.encode() for t in DOCS)  # every document, once, intact
    assert d["documents"]["eval"] >= 1 and d["documents"]["train"] >= 1
    held = set(bytes(np.asarray(src.cache.eval).astype(np.uint8).tolist()).split(b"\0"))
    train = set(bytes(np.asarray(src.cache.train).astype(np.uint8).tolist()).split(b"\0"))
    assert not (held - {b""}) & train  # split by whole document: no overlap
    x, y = src.train_batch(0)
    assert x.shape == (4, 8) and torch.equal(x[:, 1:], y[:, :-1])


def _tiny_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"])
    tok.train_from_iterator(DOCS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]")
    fast.save_pretrained(path)
    return fast


def test_local_tokenizer_loads_through_transformers(tmp_path):
    fast = _tiny_tokenizer(tmp_path / "tok")
    files = [_write(tmp_path, "json")]
    src = build_data(_cfg(tmp_path, files, tokenizer=str(tmp_path / "tok")))
    d = src.describe()
    eos = fast.convert_tokens_to_ids("[EOS]")
    assert d["vocab_size"] == len(fast) and d["eos_id"] == eos
    stream = np.concatenate([np.asarray(src.cache.train), np.asarray(src.cache.eval)])
    assert stream.dtype == np.uint16
    assert (stream == eos).sum() == len(DOCS)  # one EOS per document
    words = set(fast.convert_ids_to_tokens(stream.tolist()))
    assert {"cat", "sat", "mat", "today", "[EOS]"} <= words and "[UNK]" not in words
    x, _ = src.train_batch(3)
    assert int(x.max()) < src.vocab_size


def test_cache_is_reused_and_invalidated_when_files_change(tmp_path, monkeypatch):
    import muscale.data.hf as hf

    path = _write(tmp_path, "text")
    first = build_data(_cfg(tmp_path, [path]))
    assert first.describe()["cache"]["hit"] is False

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("re-tokenized although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(hf, "_fill", no_tokenizing)
        m.setattr(hf, "_load", no_tokenizing)  # a hit does not even open the dataset
        again = build_data(_cfg(tmp_path, [path], seq_len=4, seed=3))  # packing only
        assert again.describe()["cache"] == {"path": first.describe()["cache"]["path"], "hit": True}
    path.write_text("\n".join(reversed(DOCS)) + "\nand one new line\n")
    changed = build_data(_cfg(tmp_path, [path]))
    d = changed.describe()
    assert d["cache"]["hit"] is False and d["cache"]["path"] != first.describe()["cache"]["path"]
    assert b"and one new line" in _documents(changed)
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len([p for p in entries if (p / "index.json").is_file()]) == 2
    assert not list((tmp_path / "cache").glob(".*.tmp-*"))  # no temp dir left behind


def test_cache_key_tracks_the_tokenizer_and_settings(tmp_path):
    path = _write(tmp_path, "text")
    base = build_data(_cfg(tmp_path, [path])).describe()["cache"]["path"]
    other = build_data(_cfg(tmp_path, [path], eval_fraction=0.2)).describe()["cache"]["path"]
    _tiny_tokenizer(tmp_path / "tok")
    tok = build_data(_cfg(tmp_path, [path], tokenizer=str(tmp_path / "tok"))).describe()
    assert len({base, other, tok["cache"]["path"]}) == 3


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    good = _write(tmp_path, "text")
    with pytest.raises(UserError, match="no such file or directory") as e:
        build_data(_cfg(tmp_path, [tmp_path / "missing.txt"]))
    assert "missing.txt" in _one_line(e)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="is empty") as e:
        build_data(_cfg(tmp_path, [tmp_path / "empty.txt"]))
    _one_line(e)
    (tmp_path / "blank.txt").write_text("\n \n\n")
    with pytest.raises(UserError, match="no non-empty 'text' text") as e:
        build_data(_cfg(tmp_path, [tmp_path / "blank.txt"]))
    with pytest.raises(UserError, match="matches no file"):
        build_data(_cfg(tmp_path, [tmp_path / "*.nothing"]))
    with pytest.raises(UserError, match="unknown tokenizer path") as e:
        build_data(_cfg(tmp_path, [good], tokenizer=str(tmp_path / "no_such_tokenizer")))
    assert "no_such_tokenizer" in _one_line(e)
    (tmp_path / "not_a_tokenizer").mkdir()
    with pytest.raises(UserError, match="unknown tokenizer path") as e:
        build_data(_cfg(tmp_path, [good], tokenizer=str(tmp_path / "not_a_tokenizer")))
    _one_line(e)
    with pytest.raises(UserError, match=r"data.seq_len=100000 is larger than the data") as e:
        build_data(_cfg(tmp_path, [good], seq_len=100_000))
    _one_line(e)
    with pytest.raises(UserError, match=r"text_field='body'.*columns are text, id"):
        build_data(_cfg(tmp_path, [_write(tmp_path, "json")], text_field="body"))
    (tmp_path / "one.txt").write_text("a single document\n")
    with pytest.raises(UserError, match="at least 2 are needed"):
        build_data(_cfg(tmp_path, [tmp_path / "one.txt"]))
    (tmp_path / "data.xyz").write_text("x\ny\n")
    with pytest.raises(UserError, match="cannot infer the format"):
        build_data(_cfg(tmp_path, [tmp_path / "data.xyz"]))
    with pytest.raises(UserError, match=r"data=hf needs data\.data_files"):
        build_data({"name": "hf"})


def test_other_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.name='wikitext'.*synthetic, pytext, hf, teacher"):
        build_data({"name": "wikitext"})
    with pytest.raises(ConfigError, match=r"data\.typo"):
        build_data({"name": "synthetic", "typo": 1})
    with pytest.raises(UserError, match="no such directory"):
        build_data({"name": "pytext", "root": str(tmp_path / "nowhere")})
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(UserError, match=r"no non-empty \.py file"):
        build_data({"name": "pytext", "root": str(tmp_path / "empty_root")})
    (tmp_path / "small").mkdir()
    for i in range(3):
        (tmp_path / "small" / f"m{i}.py").write_text(f"x = {i}\n")
    with pytest.raises(UserError, match="seq_len=128 is larger than the data"):
        build_data({"name": "pytext", "root": str(tmp_path / "small")})


def _build_in_process(cfg: dict) -> bool:
    return bool(build_data(cfg).describe()["cache"]["hit"])


@pytest.mark.slow  # two spawned interpreters importing torch + datasets
def test_concurrent_ranks_tokenize_once(tmp_path):
    """Two processes (two DDP ranks) building the same cache at once: one tokenizes under
    the lock, the other waits and reads it; both see the same complete entry."""
    import multiprocessing as mp

    cfg = _cfg(tmp_path, [_write(tmp_path, "text")])
    with mp.get_context("spawn").Pool(2) as pool:
        hits = pool.map(_build_in_process, [cfg, cfg])
    assert sorted(hits) == [False, True]
    entries = [p for p in (tmp_path / "cache").iterdir() if (p / "index.json").is_file()]
    assert len(entries) == 1
