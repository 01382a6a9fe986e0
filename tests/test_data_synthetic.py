"""The synthetic language: its sampler follows its stated law, and the entropy floor it
reports is a real floor (no estimator fitted on its data beats it)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from muscale.data import build_data
from muscale.data.config import SyntheticDataConfig
from muscale.data.synthetic import conditional_stats, generate, make_language


def test_bigram_rule_frequencies_match_its_table():
    """With only the bigram rule, empirical transition frequencies converge to ``prob1``."""
    cfg = SyntheticDataConfig(
        vocab_size=16, branching=4, bigram_weight=1.0, trigram_weight=0.0, copy_weight=0.0
    )
    lang = make_language(cfg)
    x = generate(lang, np.arange(400), 257, seed=1, salt=9)
    counts = np.zeros((16, 16))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    table = np.zeros((16, 16))
    np.put_along_axis(table, lang.succ1, lang.prob1, axis=1)
    freq = counts / counts.sum(axis=1, keepdims=True)
    n = counts.sum(axis=1, keepdims=True)
    se = np.sqrt(table * (1 - table) / n) + 1e-9
    assert (counts[table == 0] == 0).all()  # never a token outside the successor set
    busy = n[:, 0] >= 1000
    assert busy.sum() >= 8 and np.abs(freq - table)[busy].max() < 0.02
    assert (np.abs(freq - table) / se).max() < 5.0  # within 5 standard errors everywhere


def test_sampler_and_stated_law_agree():
    """E[-log p(x_t | x_<t)] = E[H(p)] exactly when x_t is drawn from p: a mismatch between
    ``generate`` and ``conditional_stats`` (the law the floor is computed from) fails this."""
    cfg = SyntheticDataConfig(seq_len=64)
    lang = make_language(cfg)
    x = generate(lang, np.arange(600), 65, seed=0, salt=1)
    ent, logp = conditional_stats(lang, x)
    assert np.isfinite(logp).all()  # every realised token has positive probability
    diff = (-logp - ent).mean(axis=1)  # per-document means are independent
    se = diff.std() / np.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se
    # the copy rule is live: a repeated token is often followed by its earlier follower
    prev, nxt = x[:, :-1], x[:, 1:]
    hits = total = 0
    for p, q in zip(prev[:50], nxt[:50], strict=True):
        last: dict[int, int] = {}
        for a, b in zip(p.tolist(), q.tolist(), strict=True):
            if a in last:
                total += 1
                hits += last[a] == b
            last[a] = b
    assert hits / total > cfg.copy_weight


def _ngram_loss(train: np.ndarray, test: np.ndarray, V: int, order: int) -> float:
    """Held-out cross-entropy of an add-0.01 smoothed count model of order 1 or 2."""
    ctx_tr = train[:, 1:-1] * V + train[:, :-2] if order == 2 else train[:, 1:-1]
    ctx_te = test[:, 1:-1] * V + test[:, :-2] if order == 2 else test[:, 1:-1]
    n_ctx = V * V if order == 2 else V
    counts = np.zeros((n_ctx, V))
    np.add.at(counts, (ctx_tr.ravel(), train[:, 2:].ravel()), 1)
    probs = (counts + 0.01) / (counts.sum(axis=1, keepdims=True) + 0.01 * V)
    return float(-np.log(probs[ctx_te.ravel(), test[:, 2:].ravel()]).mean())


def test_entropy_floor_is_a_floor():
    cfg = SyntheticDataConfig(seq_len=64, batch_size=32, eval_batches=4)
    src = build_data(cfg)
    d = src.describe()
    floor = d["entropy_floor"]
    assert 0.5 < floor < d["unigram_entropy"] - 1.0 < d["uniform_loss"]  # learnable structure
    lang = src.lang
    train = generate(lang, np.arange(3000), 65, seed=5, salt=2)
    x_eval = np.concatenate([src.eval_batch(i)[0].numpy() for i in range(4)])
    y_last = np.concatenate([src.eval_batch(i)[1].numpy()[:, -1:] for i in range(4)])
    test = np.concatenate([x_eval, y_last], axis=1)  # the held-out documents, whole
    ent, logp = conditional_stats(lang, test)
    assert abs(ent.mean() - floor) < 1e-9  # describe() reports the held-out floor
    assert abs(-logp.mean() - d["bayes_eval_loss"]) < 1e-9
    # fitted count models, evaluated on the floor's positions t >= 2, stay above it
    floor_t2 = float(ent[:, 1:].mean())
    bigram, trigram = (_ngram_loss(train, test, cfg.vocab_size, k) for k in (1, 2))
    assert floor_t2 < bigram and floor_t2 < trigram
    assert bigram < d["unigram_entropy"]  # ... yet they do learn something real


def test_source_seed_fixes_the_language_and_seed_the_documents():
    a = build_data({"name": "synthetic", "seq_len": 8, "batch_size": 4})
    b = build_data({"name": "synthetic", "seq_len": 8, "batch_size": 4, "seed": 1})
    c = build_data({"name": "synthetic", "seq_len": 8, "batch_size": 4, "source_seed": 1})
    assert a.describe()["corpus_hash"] == b.describe()["corpus_hash"]
    assert a.describe()["corpus_hash"] != c.describe()["corpus_hash"]
    assert not np.array_equal(a.train_batch(0)[0], b.train_batch(0)[0])


def test_generation_is_fast():
    src = build_data({"name": "synthetic"})  # defaults: 32 x 128 tokens per step
    t0 = time.perf_counter()
    for step in range(20):
        src.train_batch(step)
    per_step = (time.perf_counter() - t0) / 20
    assert per_step < 0.05, per_step
    t0 = time.perf_counter()
    src.describe()
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("copy_weight", 0.5, "sum to 1"),
        ("branching", 300, "branching"),
        ("vocab_size", 1, "vocab_size"),
        ("bigram_weight", -0.1, "bigram_weight"),
    ],
)
def test_bad_synthetic_config(field, value, match):
    from muscale.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        SyntheticDataConfig(**{field: value})
