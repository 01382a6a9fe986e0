"""Batches are a pure function of (seed, step, rank, world_size, micro) for every dataset:
deterministic, resumable by step, partitioned exactly over ranks and micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muscale.data import build_data
from muscale.data.batches import PackedRows
from muscale.errors import UserError


def _small_stdlib(tmp_path_factory):
    """A tiny stand-in for the stdlib directory (fast; the real one is tested below)."""
    root = tmp_path_factory.mktemp("stdlib")
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = root / ("pkg" if i % 3 else "") / f"mod{i}.py"
        sub.parent.mkdir(exist_ok=True)
        body = "".join(f"x{j} = {int(v)}\n" for j, v in enumerate(rng.integers(1000, size=200)))
        sub.write_text(f"# module {i}\n" + body)
    site = root / "site-packages"
    site.mkdir()
    (site / "not_stdlib.py").write_text("EXCLUDED = True\n" * 100)
    return root


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = _small_stdlib(tmp_path_factory)
    files = tmp_path_factory.mktemp("hf")
    lines = [f"document number {i} says {'la ' * (i % 7)}hello" for i in range(300)]
    (files / "corpus.txt").write_text("\n".join(lines) + "\n")
    cache = tmp_path_factory.mktemp("cache")
    return {
        "synthetic": ({"name": "synthetic", "seq_len": 16, "batch_size": 8}, None),
        "pytext": ({"name": "pytext", "root": str(root), "seq_len": 32, "batch_size": 8}, None),
        "hf": (
            {
                "name": "hf",
                "data_files": [str(files / "corpus.txt")],
                "seq_len": 16,
                "batch_size": 8,
                "eval_fraction": 0.1,
            },
            cache,
        ),
        "teacher": ({"name": "teacher", "batch_size": 8, "task": "regression"}, None),
        "teacher-cls": ({"name": "teacher", "batch_size": 8, "task": "classification"}, None),
    }


NAMES = ["synthetic", "pytext", "hf", "teacher", "teacher-cls"]


def _build(configs, name, **kw):
    cfg, cache = configs[name]
    return build_data(cfg, cache_dir=cache, **kw)


def _equal(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_resumable(configs, name):
    a, b = _build(configs, name), _build(configs, name)
    seen = [a.train_batch(s) for s in range(6)]  # a runs from step 0 ...
    assert _equal(b.train_batch(5), seen[5])  # ... b resumes at step 5: the same batch
    assert _equal(b.train_batch(2), seen[2])
    assert not torch.equal(seen[0][0], seen[1][0])  # steps differ
    assert _equal(a.eval_batch(1), b.eval_batch(1))
    assert not torch.equal(a.eval_batch(0)[0], seen[0][0])  # held-out is not the train batch


@pytest.mark.parametrize("name", NAMES)
def test_union_over_ranks_is_the_single_process_batch(configs, name):
    full = _build(configs, name)
    for world in (2, 4):
        ranks = [_build(configs, name, rank=r, world_size=world) for r in range(world)]
        assert ranks[0].local_batch_size == full.batch_size // world
        for step in (0, 3, 17):
            parts = [src.train_batch(step) for src in ranks]
            x = torch.cat([p[0] for p in parts])
            y = torch.cat([p[1] for p in parts])
            assert _equal((x, y), full.train_batch(step))
        assert _equal(ranks[1].eval_batch(2), full.eval_batch(2))  # eval: same on every rank


@pytest.mark.parametrize("name", NAMES)
def test_micro_batches_concatenate_to_the_step_batch(configs, name):
    for world, rank in ((1, 0), (2, 1)):
        src = _build(configs, name, rank=rank, world_size=world)
        for n_micro in (2, 4 // world):
            parts = [src.train_batch(7, micro=m, n_micro=n_micro) for m in range(n_micro)]
            joined = tuple(torch.cat([p[i] for p in parts]) for i in range(2))
            assert _equal(joined, src.train_batch(7))
        parts = [src.eval_batch(1, micro=m, n_micro=2) for m in range(2)]
        assert _equal(tuple(torch.cat([p[i] for p in parts]) for i in range(2)), src.eval_batch(1))


@pytest.mark.parametrize("name", ["synthetic", "pytext", "hf"])
def test_lm_batches_shapes_and_shift(configs, name):
    src = _build(configs, name, rank=1, world_size=2)
    x, y = src.train_batch(4)
    T = configs[name][0]["seq_len"]
    assert x.shape == y.shape == (4, T) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    assert int(x.min()) >= 0 and int(x.max()) < src.vocab_size
    assert src.kind == "lm" and src.describe()["corpus_hash"]


def test_teacher_shapes_and_targets(configs):
    reg = _build(configs, "teacher")
    x, y = reg.train_batch(0)
    assert x.shape == (8, 32) and y.shape == (8, 10) and y.dtype == torch.float32
    big = build_data({"name": "teacher", "batch_size": 2048})
    _, y = big.train_batch(0)
    assert torch.allclose(y.std(0), torch.ones(10), atol=0.1)  # standardised targets
    cls = build_data({"name": "teacher", "task": "classification", "batch_size": 4096})
    _, labels = cls.train_batch(0)
    assert labels.dtype == torch.int64 and labels.shape == (4096,)
    freq = torch.bincount(labels, minlength=10).double() / 4096
    assert freq.min() > 0.02  # centring keeps every class populated
    # the labels are the teacher's argmax: a deterministic function of x
    xs, ls = cls.train_batch(1)
    teacher = cls.teacher(xs.double().numpy())
    agree = (np.argmax((teacher - cls.mu) / cls.sigma, axis=1) == ls.numpy()).mean()
    assert agree > 0.999


def test_packed_rows_visit_each_sequence_once_per_epoch():
    stream = np.arange(1 + 10 * 4)  # 10 sequences of 4 (+1 shared boundary token)
    rows = PackedRows(stream, 4, seed=3, shuffle=True, what="train")
    assert rows.n == 10
    first = rows.rows(np.arange(10))
    assert sorted(first[:, 0].tolist()) == list(range(0, 40, 4))  # a permutation
    assert all((r[1:] - r[:-1] == 1).all() for r in first)  # contiguous slices of the stream
    second = rows.rows(np.arange(10, 20))
    assert sorted(second[:, 0].tolist()) == sorted(first[:, 0].tolist())
    assert not np.array_equal(second, first)  # a new order each epoch
    straddle = rows.rows(np.arange(7, 13))  # one batch across an epoch boundary
    assert np.array_equal(straddle, np.concatenate([first[7:], second[:3]]))
    plain = PackedRows(stream, 4, seed=3, shuffle=False, what="eval")
    assert plain.rows(np.array([0, 11]))[:, 0].tolist() == [0, 4]  # wraps in order


def test_layout_errors(configs):
    with pytest.raises(UserError, match="not divisible by world_size=3"):
        _build(configs, "synthetic", rank=0, world_size=3)
    src = _build(configs, "synthetic")
    with pytest.raises(UserError, match="n_micro=3"):
        src.train_batch(0, micro=0, n_micro=3)
    with pytest.raises(UserError, match="step=-1"):
        src.train_batch(-1)


def test_real_stdlib_corpus_is_read_and_hashed():
    src = build_data({"name": "pytext", "max_bytes": 300_000, "seq_len": 64, "batch_size": 4})
    d = src.describe()
    assert d["vocab_size"] == 256 and d["files"]["eval"] >= 1 and d["files"]["train"] >= 1
    assert 0 < d["tokens"]["train"] + d["tokens"]["eval"] <= 300_000
    assert len(d["corpus_hash"]) == 16 and d["python"]
    x, _ = src.train_batch(0)
    text = bytes(x.flatten().tolist()).decode("utf-8", errors="replace")
    assert any(w in text for w in ("def ", "import ", "return", "self", "=")), text[:200]
