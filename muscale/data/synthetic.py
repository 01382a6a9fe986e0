r"""A synthetic language with learnable structure and a known loss floor.

Each sample is an independent document of ``seq_len + 1`` tokens over a vocabulary of
``V`` tokens. The first token is drawn from a Zipf-like unigram; every later token from a
mixture of three rules, whose tables are drawn once from ``source_seed``:

* **bigram** (weight :math:`w_b`): a sparse successor distribution of the previous token,
  ``branching`` successors with Dirichlet(``alpha``) weights;
* **trigram** (weight :math:`w_t`, from the third token on): a sparse successor
  distribution of the previous *two* tokens, hashed into ``n_contexts`` buckets;
* **copy** (weight :math:`w_c`, when the previous token occurred before in the document):
  the token that followed its most recent earlier occurrence (an induction-head rule,
  Olsson et al. 2022, "In-context learning and induction heads").

A rule that does not apply gives its weight to the bigram rule, so the next-token law

.. math::  p(x_t \mid x_{<t}) = w_b' P_1[x_{t-1}] + w_t' P_2[h(x_{t-2}, x_{t-1})]
           + w_c' \delta_{\mathrm{copy}(x_{<t})}

is an explicit function of the visible prefix. Its entropy averaged over positions,
:math:`\mathbb{E}\,H(p(\cdot \mid x_{<t}))`, is therefore the *exact* Bayes-optimal
cross-entropy of a model that sees the whole document, and no model can beat it in
expectation: ``describe()["entropy_floor"]`` estimates it on the held-out documents.

Why width helps: the bigram table is a random sparse :math:`V \times V` matrix, so its
log-probabilities have rank near :math:`V`, while a transformer's logits
:math:`h W_{\mathrm{out}}^\top` have rank at most its width (the softmax bottleneck, Yang et
al. 2018, "Breaking the softmax bottleneck"); the hashed trigram table needs capacity to
memorise. A narrow model is capped above the floor; wider models get closer.

Determinism: document ``g`` is generated from its own ``numpy`` stream seeded by
``(seed, salt, g)``; all operations are element-wise across documents, so a document is
bit-identical whatever batch, rank or micro-batch it is generated in. The data are
unlimited (no epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from muscale.data.batches import SALT_EVAL, SALT_TABLES, SALT_TRAIN, LMSource
from muscale.data.config import SyntheticDataConfig


@dataclass(frozen=True)
class Language:
    """The rule tables of one synthetic language (see the module docstring)."""

    vocab_size: int
    start_cdf: np.ndarray  # (V,) cumulative unigram of the first token
    succ1: np.ndarray  # (V, k) bigram successors of each token
    prob1: np.ndarray  # (V, k) their probabilities
    succ2: np.ndarray  # (C, k) trigram successors of each hashed context
    prob2: np.ndarray  # (C, k)
    cdf1: np.ndarray  # (V, k) cumulative prob1 (last column inf)
    cdf2: np.ndarray  # (C, k)
    n_contexts: int
    hash_salt: int
    weights: tuple[float, float, float]  # (bigram, trigram, copy)

    def context(self, prev2: np.ndarray, prev1: np.ndarray) -> np.ndarray:
        """Hash bucket of the context ``(x_{t-2}, x_{t-1})``: a 32-bit integer mixer."""
        mask = np.int64(0xFFFFFFFF)
        h = (prev2.astype(np.int64) * 65537 + prev1 + self.hash_salt) & mask
        h = ((h ^ (h >> 16)) * 0x45D9F3B) & mask
        h = ((h ^ (h >> 16)) * 0x45D9F3B) & mask
        return (h ^ (h >> 16)) % self.n_contexts


def make_language(cfg: SyntheticDataConfig) -> Language:
    """Draw the rule tables from ``cfg.source_seed``."""
    rng = np.random.default_rng([cfg.source_seed, SALT_TABLES])
    V, k, C = cfg.vocab_size, cfg.branching, cfg.n_contexts
    zipf = 1.0 / np.arange(1, V + 1)
    start = zipf[rng.permutation(V)]
    succ1, prob1 = _distinct_rows(rng, V, k, V), _dirichlet(rng, V, k, cfg.alpha)
    succ2, prob2 = _distinct_rows(rng, C, k, V), _dirichlet(rng, C, k, cfg.alpha)
    return Language(
        vocab_size=V,
        start_cdf=_cdf(start / start.sum()),
        succ1=succ1,
        prob1=prob1,
        succ2=succ2,
        prob2=prob2,
        cdf1=_cdf(prob1),
        cdf2=_cdf(prob2),
        n_contexts=C,
        hash_salt=int(rng.integers(2**31)),
        weights=(cfg.bigram_weight, cfg.trigram_weight, cfg.copy_weight),
    )


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p, axis=-1)
    c[..., -1] = np.inf  # rounding never runs off the end
    return c


def _dirichlet(rng: np.random.Generator, n: int, k: int, alpha: float) -> np.ndarray:
    g = rng.gamma(alpha, size=(n, k)) + 1e-12
    return g / g.sum(axis=1, keepdims=True)


def _distinct_rows(rng: np.random.Generator, n: int, k: int, V: int) -> np.ndarray:
    """``(n, k)`` tokens, distinct within each row, uniformly drawn."""
    if n * V <= 1 << 24:
        return np.argsort(rng.random((n, V)), axis=1)[:, :k].astype(np.int64)
    out = rng.integers(V, size=(n, k))
    while True:  # k << V here: few rows collide, resample those
        s = np.sort(out, axis=1)
        bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not bad.any():
            return out.astype(np.int64)
        out[bad] = rng.integers(V, size=(int(bad.sum()), k))


def _pick(cdf_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling, one uniform per row."""
    return (cdf_rows < u[:, None]).sum(axis=1)


def _rule_weights(lang: Language, t: int, has_copy: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-document weights of (bigram, trigram, copy) at position ``t``."""
    _, wt, wc = lang.weights
    w_tri = np.full(has_copy.shape, wt if t >= 2 else 0.0)
    w_copy = np.where(has_copy, wc, 0.0)
    return 1.0 - w_tri - w_copy, w_tri, w_copy


def generate(lang: Language, index: np.ndarray, length: int, *, seed: int, salt: int) -> np.ndarray:
    """Documents ``index`` (global indices) of ``length`` tokens: ``(len(index), length)``."""
    n, V = len(index), lang.vocab_size
    u = np.empty((n, length, 2))
    for r, g in enumerate(index.tolist()):
        u[r] = np.random.default_rng([seed, salt, g]).random((length, 2))
    cdf1, cdf2 = lang.cdf1, lang.cdf2
    rows = np.arange(n)
    x = np.empty((n, length), dtype=np.int64)
    x[:, 0] = np.searchsorted(lang.start_cdf, u[:, 0, 1], side="right")
    follow = np.full((n, V), -1, dtype=np.int64)  # token after the last occurrence of v
    for t in range(1, length):
        a = x[:, t - 1]
        copy = follow[rows, a]
        w_bi, w_tri, _ = _rule_weights(lang, t, copy >= 0)
        u0, u1 = u[:, t, 0], u[:, t, 1]
        nxt = lang.succ1[a, _pick(cdf1[a], u1)]
        if t >= 2:
            c = lang.context(x[:, t - 2], a)
            tri = lang.succ2[c, _pick(cdf2[c], u1)]
            nxt = np.where((u0 >= w_bi) & (u0 < w_bi + w_tri), tri, nxt)
        nxt = np.where(u0 >= w_bi + w_tri, copy, nxt)
        x[:, t] = nxt
        follow[rows, a] = nxt
    return x


def conditional_stats(lang: Language, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact entropy of ``p(x_t | x_<t)`` and ``log p`` of the realised token, ``t >= 1``.

    Both are ``(n, length - 1)``, aligned with the next-token targets ``x[:, 1:]``.
    """
    n, length = x.shape
    V, rows = lang.vocab_size, np.arange(n)
    ent, logp = np.empty((n, length - 1)), np.empty((n, length - 1))
    follow = np.full((n, V), -1, dtype=np.int64)
    for t in range(1, length):
        a = x[:, t - 1]
        copy = follow[rows, a]
        w_bi, w_tri, w_copy = _rule_weights(lang, t, copy >= 0)
        p = np.zeros((n, V))
        p[rows[:, None], lang.succ1[a]] += w_bi[:, None] * lang.prob1[a]  # distinct per row
        if t >= 2:
            c = lang.context(x[:, t - 2], a)
            p[rows[:, None], lang.succ2[c]] += w_tri[:, None] * lang.prob2[c]
        has = copy >= 0
        p[rows[has], copy[has]] += w_copy[has]
        with np.errstate(divide="ignore", invalid="ignore"):
            ent[:, t - 1] = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        logp[:, t - 1] = np.log(p[rows, x[:, t]])
        follow[rows, a] = x[:, t]
    return ent, logp


class SyntheticRows:
    """Row source: document ``g`` of a salted stream, generated on demand."""

    def __init__(self, lang: Language, seq_len: int, *, seed: int, salt: int) -> None:
        self.lang, self.seq_len, self.seed, self.salt = lang, seq_len, seed, salt

    def rows(self, index: np.ndarray) -> np.ndarray:
        return generate(self.lang, index, self.seq_len + 1, seed=self.seed, salt=self.salt)


class SyntheticSource(LMSource):
    """The synthetic language as a :class:`~muscale.data.batches.DataSource`."""

    def __init__(self, cfg: SyntheticDataConfig, *, rank: int, world_size: int) -> None:
        self.cfg = cfg
        self.lang = make_language(cfg)
        super().__init__(
            name=cfg.name,
            vocab_size=cfg.vocab_size,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            eval_batches=cfg.eval_batches,
            rank=rank,
            world_size=world_size,
            train=SyntheticRows(self.lang, cfg.seq_len, seed=cfg.seed, salt=SALT_TRAIN),
            held_out=SyntheticRows(self.lang, cfg.seq_len, seed=cfg.seed, salt=SALT_EVAL),
            info={},
        )
        self._stats: dict[str, Any] | None = None

    def floor_stats(self) -> dict[str, Any]:
        """Loss floors on the held-out set (all ``eval_batches`` batches), in nats/token."""
        if self._stats is None:
            n = self.eval_batches * self.batch_size
            x = self.held_out.rows(np.arange(n, dtype=np.int64))
            ent, logp = conditional_stats(self.lang, x)
            y = x[:, 1:].ravel()
            V = self.lang.vocab_size
            unigram = np.bincount(y, minlength=V) / y.size
            nz = unigram[unigram > 0]
            self._stats = {
                "entropy_floor": float(ent.mean()),
                "bayes_eval_loss": float(-logp.mean()),
                "unigram_entropy": float(-(nz * np.log(nz)).sum()),
                "uniform_loss": float(np.log(V)),
            }
        return self._stats

    def describe(self) -> dict[str, Any]:
        cfg = self.cfg
        rules = {
            "source_seed": cfg.source_seed,
            "branching": cfg.branching,
            "alpha": cfg.alpha,
            "n_contexts": cfg.n_contexts,
            "weights": {
                "bigram": cfg.bigram_weight,
                "trigram": cfg.trigram_weight,
                "copy": cfg.copy_weight,
            },
        }
        return {
            **super().describe(),
            "rules": rules,
            "corpus_hash": _table_hash(self.lang),
            **self.floor_stats(),
        }


def _table_hash(lang: Language) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in (lang.start_cdf, lang.succ1, lang.prob1, lang.succ2, lang.prob2):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((lang.n_contexts, lang.hash_salt, lang.weights)).encode())
    return h.hexdigest()[:16]
