"""Figures of docs/diagnostics.md for free probability, Jacobian spectra, attention kernels
and spectral bias (seeded; small PNGs into docs/figures/).

    python tools/make_diag_figures.py [--only free,jacobian,attention,bias] [--seeds 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def _save(fig, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=80)
    plt.close(fig)
    print("wrote", OUT / name)


def fig_free() -> None:
    from muscale.diagnostics.free import free_additive, free_multiplicative
    from muscale.diagnostics.laws import wigner_matrix
    from muscale.diagnostics.stieltjes import MarchenkoPastur, Semicircle

    n = 1000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2 * n, n))
    ev = np.linalg.eigvalsh(wigner_matrix(n, seed=1) + x.T @ x / (2 * n))
    r = free_additive([Semicircle(), MarchenkoPastur(gamma=0.5)], np.linspace(-3, 6, 800), eps=1e-4)
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.standard_normal((2 * n, n)) / np.sqrt(2 * n)
    pe = np.real(np.linalg.eigvals((a.T @ a) @ (b.T @ b)))
    m = free_multiplicative(
        [MarchenkoPastur(gamma=1.0), MarchenkoPastur(gamma=0.5)], np.linspace(0.01, 12, 800)
    )
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].hist(ev, bins=80, density=True, alpha=0.4, label="GOE + Wishart, n=1000")
    ax[0].plot(r.x, r.pdf, "k", lw=1.2, label="semicircle ⊞ MP(1/2)")
    ax[0].legend(fontsize=7)
    ax[1].hist(pe, bins=120, range=(0, 12), density=True, alpha=0.4, label="eig W₁W₂, n=1000")
    ax[1].plot(m.x, m.pdf, "k", lw=1.2, label="MP(1) ⊠ MP(1/2)")
    ax[1].set_ylim(0, 1.2)
    ax[1].legend(fontsize=7)
    _save(fig, "free_convolution.png")


def fig_jacobian(nets: int = 6) -> dict:
    from muscale.diagnostics.free_jacobian import (
        jacobian_ks,
        predict_jacobian_spectrum,
        sampled_singular_values,
    )

    cases = [
        ("linear", "gaussian", 8, 1.0),
        ("tanh", "gaussian", 16, 1 / 64),
        ("tanh", "orthogonal", 32, 1 / 64),
    ]
    fig, ax = plt.subplots(1, 3, figsize=(10, 3))
    ks = {}
    for a, (act, init, depth, q) in zip(ax, cases, strict=False):
        pred = predict_jacobian_spectrum(act, init, depth, q_star=q)
        s = sampled_singular_values(act, init, depth, width=256, nets=nets, q_star=q)
        ks[f"{act}/{init}/L={depth}"] = jacobian_ks(pred, s)
        u = np.log10(np.maximum(s, 1e-300))
        lo = max(np.quantile(u, 0.01), -12.0)
        a.hist(
            np.clip(u, lo, None),
            bins=60,
            range=(lo, u.max() + 0.05),
            density=True,
            alpha=0.4,
            label=f"{nets} nets, N=256",
        )
        grid = np.linspace(lo, u.max() + 0.05, 400)
        lam = 10.0 ** (2 * grid)
        # density of u = log10 s: 2 ln10 · λ p_λ(λ)
        a.plot(
            grid,
            2 * np.log(10) * lam * np.interp(lam, pred.lam, pred.pdf, left=0, right=0),
            "k",
            lw=1.2,
            label="free ⊠ prediction",
        )
        a.set_xlabel("log10 singular value of J")
        a.set_title(f"{act}, {init}, L={depth}: KS={ks[f'{act}/{init}/L={depth}']:.3f}", fontsize=8)
        a.legend(fontsize=7)
    _save(fig, "jacobian_spectra.png")
    return ks


def fig_attention(seeds: int) -> dict:
    from muscale.diagnostics.ntk_attention import attention_convergence

    widths = (64, 128, 256, 512, 1024, 2048)
    d = attention_convergence(widths, seeds=seeds, seq_len=3)
    s = attention_convergence(widths[:4], seeds=seeds, seq_len=3, scaling="1/sqrt(d)")
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.loglog(d.widths, d.nngp_error, "o-", label=f"NNGP, 1/d (slope {d.nngp_slope:.2f})")
    ax.loglog(d.widths, d.ntk_error, "s-", label=f"NTK, 1/d (slope {d.ntk_slope:.2f})")
    ax.loglog(
        s.widths, s.nngp_error, "^--", label=f"NNGP, 1/√d, one head (slope {s.nngp_slope:.2f})"
    )
    w = np.array(widths, dtype=float)
    ax.loglog(w, d.nngp_error[0] * (w / w[0]) ** -0.5, "k:", lw=0.8, label="width^−½")
    ax.set_xlabel("width (head dim)")
    ax.set_ylabel("relative error vs infinite width")
    ax.legend(fontsize=6)
    _save(fig, "attention_kernel_convergence.png")
    return {"1/d": d.__dict__, "1/sqrt(d)": s.__dict__}


def fig_bias() -> dict:
    from muscale.diagnostics.spectral_bias import (
        decay_exponent,
        degree_learning_speed,
        gaussian_profile,
        relu_ntk_profile,
        sphere_eigenvalues,
    )

    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    k = np.arange(1, 61)
    out = {}
    for d in (3, 5):
        mu = sphere_eigenvalues(lambda t: relu_ntk_profile(t, 2), d, 60)
        out[f"relu_exponent_d{d}"] = decay_exponent(mu, np.arange(30, 61, 2))
        ax[0].loglog(
            k,
            mu[1:] / mu[0],
            label=f"ReLU NTK (2 layers), S^{d - 1}: k^−{out[f'relu_exponent_d{d}']:.2f}",
        )
        g = sphere_eigenvalues(lambda t: gaussian_profile(t, 0.5), d, 60)
        ok = g[1:] / g[0] > 1e-14  # below: quadrature rounding
        ax[0].loglog(k[ok], g[1:][ok] / g[0], "--", label=f"Gaussian σ²=½, S^{d - 1}")
    ax[0].set_xlabel("degree k")
    ax[0].set_ylabel("μ_k / μ_0")
    ax[0].set_ylim(1e-16, 2)
    ax[0].legend(fontsize=6)
    r = degree_learning_speed((1, 2, 4, 6), n=1500, width=2048, lr=3.0, budget=400)
    for deg, c, st, pr in zip(r.degrees, r.curves, r.steps, r.predicted, strict=False):
        ax[1].semilogy(np.abs(c), label=f"k={deg}: 1/e at {st} (kernel: {pr:.0f})")
    ax[1].axhline(np.exp(-1), color="k", lw=0.5)
    ax[1].set_xlabel("GD step")
    ax[1].set_ylabel("degree-k residual")
    ax[1].legend(fontsize=6)
    _save(fig, "spectral_bias.png")
    out["learning"] = {"degrees": r.degrees, "mu": r.mu, "steps": r.steps, "predicted": r.predicted}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="free,jacobian,attention,bias")
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    only = set(args.only.split(","))
    res: dict = {}
    if "free" in only:
        fig_free()
    if "jacobian" in only:
        res["jacobian_ks"] = fig_jacobian()
    if "bias" in only:
        res["bias"] = fig_bias()
    if "attention" in only:
        res["attention"] = fig_attention(args.seeds)
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
