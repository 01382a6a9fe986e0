r"""NNGP and NTK of one softmax attention head at infinite width, and their empirical
counterparts from muscale's :class:`muscale.models.gpt.Attention`.

Network (NTK parametrisation, unit Gaussian weights, width ``n`` = head dimension, causal
mask as in muscale's GPT), for a sequence ``X`` of ``T`` tokens in ``R^{d₀}``::

    h = X A / √d₀                       (T, n)   frozen random read-in
    q, k, v = h W_Q/√n, h W_K/√n, h W_V/√n
    P = causal-softmax(q kᵀ · s)         (T, T)   s = 1/n ("1/d") or 1/√n ("1/√d")
    o = P v W_O / √n                     (T, n)
    f = o r / √n                         (T,)     one scalar output per token

With ``C₀ = X X'ᵀ/d₀`` (``h·h'/n → C₀``):

* **1/d scaling** (μP; Yang 2019, Tensor Programs I; Hron et al. 2020 §3 "d^{-1}"): the
  logits ``q kᵀ/n`` tend to ``E[q k] = 0`` — attention is *uniform* over the visible
  prefix, ``P → U`` (``U_ij = 1/i`` for ``j ≤ i``), deterministically, with ``O(n^{-1/2})``
  fluctuations. NNGP ``K = U C₀ U'ᵀ``. The NTK gets ``K`` from each of ``r``, ``W_O``,
  ``W_V`` and nothing from ``W_Q, W_K`` (their gradients carry an extra ``1/√n``), so
  ``Θ = 3 U C₀ U'ᵀ``. Empirical kernels converge at rate ``n^{-1/2}``.
* **1/√d scaling** (standard; Hron et al. 2020, Thm 3): the logits converge to a *Gaussian*
  field with ``Cov(S_ij, S'_kl) = C₀_ik C₀_jl`` — random at every width. The NNGP
  ``E_S[P C₀ P'ᵀ]`` is the infinite-*heads* limit (many independent heads averaged); one head
  does not converge to it (its kernel stays random), which :func:`attention_convergence`
  shows as an error that does not fall with width. :func:`attention_nngp` computes it by
  seeded Monte Carlo over the logits (``samples`` draws; error ``~ samples^{-1/2}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from muscale.errors import check_choice

SCALINGS = ("1/d", "1/sqrt(d)")


def _causal_uniform(t: int) -> torch.Tensor:
    m = torch.tril(torch.ones(t, t, dtype=torch.float64))
    return m / m.sum(1, keepdim=True)


def attention_nngp(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    scaling: str = "1/d",
    samples: int = 20_000,
    seed: int = 0,
) -> torch.Tensor:
    """Infinite-width NNGP ``K(X, X')`` (``(T, T')``) of the head (module docstring) for two
    token sequences ``x1`` ``(T, d₀)`` and ``x2``."""
    check_choice("scaling", scaling, SCALINGS)
    x1 = x1.double()
    x2 = x1 if x2 is None else x2.double()
    d0 = x1.shape[1]
    if scaling == "1/d":
        c = x1 @ x2.T / d0
        return _causal_uniform(len(x1)) @ c @ _causal_uniform(len(x2)).T
    xx = torch.cat([x1, x2])
    c = xx @ xx.T / d0  # joint (T+T') covariance of the q (and k) coordinates
    t1, t2 = len(x1), len(x2)
    ev, vec = torch.linalg.eigh(c)
    root = vec * ev.clamp_min(0).sqrt()
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(t1, t2, dtype=torch.float64)
    mask1 = torch.tril(torch.ones(t1, t1, dtype=torch.bool))
    mask2 = torch.tril(torch.ones(t2, t2, dtype=torch.bool))
    for chunk in range(0, samples, 2000):
        m = min(2000, samples - chunk)
        z = torch.randn(m, t1 + t2, t1 + t2, generator=g, dtype=torch.float64)
        s = root @ z @ root.T  # Cov(S_ij, S_kl) = C_ik C_jl
        p1 = torch.softmax(s[:, :t1, :t1].masked_fill(~mask1, -math.inf), -1)
        p2 = torch.softmax(s[:, t1:, t1:].masked_fill(~mask2, -math.inf), -1)
        total += (p1 @ c[:t1, t1:] @ p2.transpose(1, 2)).sum(0)
    return total / samples


def attention_ntk(
    x1: torch.Tensor, x2: torch.Tensor | None = None, *, scaling: str = "1/d"
) -> torch.Tensor:
    """Infinite-width NTK of the head under 1/d scaling: ``3 U C₀ U'ᵀ`` (module docstring).
    Under 1/√d the single-head NTK has no deterministic limit (module docstring)."""
    if scaling != "1/d":
        raise ValueError(
            "attention_ntk: scaling must be '1/d' (a single head under 1/sqrt(d) has a random "
            f"NTK at every width); got {scaling!r}"
        )
    return 3.0 * attention_nngp(x1, x2, scaling="1/d")


# --- the finite network, built on muscale's Attention ---------------------------------------


class AttentionHead(torch.nn.Module):
    """Read-in, one muscale :class:`~muscale.models.gpt.Attention` head (``n_heads = 1``,
    ``head_dim = width``, no positional encoding, causal), read-out — the network of the
    module docstring, in float64. The forward computes ``W (x/√fan_in)`` with unit
    weights by storing ``W/√fan_in`` in the muscale layers (same function); the NTK
    parametrisation's gradients are recovered by weighting each layer's term by its
    ``fan_in`` (:func:`empirical_attention_kernels`)."""

    def __init__(
        self, d0: int, width: int, *, scaling: str = "1/d", seq_len: int = 16, seed: int = 0
    ) -> None:
        super().__init__()
        check_choice("scaling", scaling, SCALINGS)
        from muscale.models.configs import GPTConfig
        from muscale.models.gpt import Attention

        cfg = GPTConfig(width=width, depth=1, n_heads=1, pos="none", seq_len=seq_len, bias=False)
        dims = {"d_model": width, "n_heads": 1, "head_dim": width, "kv_dim": width, "q_dim": width}
        scale = 1.0 / width if scaling == "1/d" else 1.0 / math.sqrt(width)
        self.attn = Attention(cfg, dims, scale).double()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for lin in (self.attn.q_proj, self.attn.k_proj, self.attn.v_proj, self.attn.o_proj):
                lin.weight.copy_(
                    torch.randn(width, width, generator=g, dtype=torch.float64) / math.sqrt(width)
                )
        self.readin = torch.randn(d0, width, generator=g, dtype=torch.float64) / math.sqrt(d0)
        self.readout = torch.nn.Parameter(torch.randn(width, generator=g, dtype=torch.float64))
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d0) -> (B, T, n)
        return self.attn(x.double() @ self.readin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d0) -> (B, T)
        return self.features(x) @ self.readout / math.sqrt(self.width)


def empirical_attention_kernels(
    model: AttentionHead, x1: torch.Tensor, x2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical ``(NNGP, NTK)`` between the token outputs of two sequences (each ``(T, T')``).

    NNGP: the read-out features' kernel ``o(X)·o(X')/n``. NTK in NTK parametrisation: for a
    linear layer ``y = x Wᵀ`` the gradient of an output ``f_a`` is ``Σ_t δ^a_t ⊗ x_t``, so its
    term is ``fan_in⁻¹ Σ_{t,t'} (δ^a_t·δ^b_{t'})(x_t·x_{t'})``; plus ``o·o'/n`` for the read-out.
    One backward pass per output token; memory ``O(T·n)``, never ``O(n²)`` per output."""
    xs = torch.stack([x1.double(), x2.double()])  # (2, T, d0)
    lins = [model.attn.q_proj, model.attn.k_proj, model.attn.v_proj, model.attn.o_proj]
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}

    def hook(mod, inp, out):
        inputs[id(mod)] = inp[0]
        outputs[id(mod)] = out

    handles = [m.register_forward_hook(hook) for m in lins]
    try:
        feats = model.features(xs)  # (2, T, n)
        f = feats @ model.readout / math.sqrt(model.width)  # (2, T)
    finally:
        for h in handles:
            h.remove()
    n, t = model.width, xs.shape[1]
    nngp = feats[0] @ feats[1].T / n
    outs = [outputs[id(m)] for m in lins]
    deltas = []  # per output (b, i): list over layers of δ (2, T, n)
    for b in range(2):
        for i in range(t):
            deltas.append(torch.autograd.grad(f[b, i], outs, retain_graph=True))
    ntk = torch.zeros(t, t, dtype=torch.float64)
    for i in range(t):
        da = deltas[i]
        for j in range(t):
            db = deltas[t + j]
            total = feats[0, i] @ feats[1, j] / n  # read-out term
            for layer, m in enumerate(lins):
                xin = inputs[id(m)]
                # δ^a lives on sequence 0, δ^b on sequence 1
                dd = da[layer][0] @ db[layer][1].T  # (T, T)
                xx = xin[0] @ xin[1].T
                total = total + (dd * xx).sum() / n  # unit weights w = √n W: a 1/fan_in
            ntk[i, j] = total
    return nngp.detach(), ntk.detach()


@dataclass(kw_only=True)
class AttentionConvergence:
    """Relative Frobenius errors of the empirical kernels vs the infinite-width ones, RMS
    over seeds, per width; fitted log-log slopes (``−½`` expected under 1/d)."""

    scaling: str
    widths: list[int]
    nngp_error: list[float]
    ntk_error: list[float]
    nngp_slope: float
    ntk_slope: float


def attention_convergence(
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
    *,
    scaling: str = "1/d",
    seq_len: int = 4,
    d0: int = 8,
    seeds: int = 6,
    seed: int = 0,
) -> AttentionConvergence:
    """Empirical vs infinite-width kernels of the head at each width (two fixed random
    sequences with token-wise correlation 0.8, so the kernel is O(1) and not a small
    difference; ``seeds`` networks per width)."""
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(seq_len, d0, generator=g, dtype=torch.float64)
    x2 = 0.8 * x1 + 0.6 * torch.randn(seq_len, d0, generator=g, dtype=torch.float64)
    k_inf = attention_nngp(x1, x2, scaling=scaling, seed=seed)
    t_inf = 3.0 * k_inf if scaling == "1/d" else None
    ek, et = [], []
    for w in widths:
        e1, e2 = [], []
        for s in range(seeds):
            model = AttentionHead(d0, w, scaling=scaling, seq_len=seq_len, seed=seed + 1000 * s + w)
            k, t = empirical_attention_kernels(model, x1, x2)
            e1.append(float((k - k_inf).norm() / k_inf.norm()))
            if t_inf is not None:
                e2.append(float((t - t_inf).norm() / t_inf.norm()))
        # root-mean-square over seeds: a steadier estimate of the typical error than the mean
        ek.append(float(np.sqrt(np.mean(np.square(e1)))))
        et.append(float(np.sqrt(np.mean(np.square(e2)))) if e2 else math.nan)
    lw = np.log(widths)
    slope = lambda e: float(np.polyfit(lw, np.log(e), 1)[0]) if np.all(np.isfinite(e)) else math.nan  # noqa: E731
    return AttentionConvergence(
        scaling=scaling,
        widths=list(widths),
        nngp_error=ek,
        ntk_error=et,
        nngp_slope=slope(ek),
        ntk_slope=slope(et),
    )


def attention_ntk_entry(cfg: dict | None = None) -> dict:
    """``muscale diagnose`` entry. Keys (defaults): ``widths`` ([64..2048]), ``scaling``
    ("1/d"), ``seeds`` (6), ``seq_len`` (4). Returns errors per width and slopes."""
    cfg = dict(cfg or {})
    r = attention_convergence(
        tuple(int(w) for w in cfg.get("widths", (64, 128, 256, 512, 1024, 2048))),
        scaling=str(cfg.get("scaling", "1/d")),
        seeds=int(cfg.get("seeds", 6)),
        seq_len=int(cfg.get("seq_len", 4)),
    )
    return {
        "scaling": r.scaling,
        "widths": r.widths,
        "nngp_error": r.nngp_error,
        "ntk_error": r.ntk_error,
        "nngp_slope": r.nngp_slope,
        "ntk_slope": r.ntk_slope,
    }
