"""Benchmark: muscale.diagnostics vs WeightWatcher (weight spectra) and PyHessian (top-k
Hessian eigenvalues), side by side in one run, CPU.

1. Spectra of every matrix of a ~100M-parameter GPT (muscale build_model, SP init, so
   the true entry variance of each matrix is its init std²). muscale: batched svdvals +
   quantile MP fit + CSN tail; WeightWatcher 0.7.7 ``analyze(mp_fit=True)`` (its SVDs, KDE
   MP fit and the ``powerlaw`` package). Accuracy: fitted MP σ vs the true init σ (ours in
   σ units; WW's ``sigma_mp`` is for its own normalised W, reported as |sigma_mp − 1|).
2. Top-20 Hessian eigenvalues of a small MLP (float64, ~6k parameters) against the exact
   Hessian's eigenvalues (largest algebraic for Lanczos "LA"; largest magnitude — what
   power iteration converges to — for Lanczos "LM" and both power iterations): muscale
   Lanczos (full reorthogonalisation), PyHessian 0.1
   ``hessian.eigenvalues(top_n=20)`` (power iteration + deflation, tol 1e-3) and our
   re-implementation of the same algorithm on our HVP.

3. Free probability (issue 14): free additive convolution of two 10⁴-atom empirical
   measures on a 512-point grid; the depth-64 Jacobian spectrum predicted by free
   multiplicative convolution vs the Monte Carlo it replaces (20 sampled networks of width
   512), with the KS distance between the two.

    python tools/bench_diagnostics.py [--small]    # --small: a 10M GPT (quick check)
    python tools/bench_diagnostics.py --free-only [--nets 20]

Needs ``pip install --no-deps weightwatcher powerlaw pyhessian`` plus scikit-learn,
matplotlib-inline, tqdm (none pulls a CUDA torch); missing ones are reported as skipped.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from muscale.diagnostics import hvp_operator, power_iteration_deflation, top_eigenvalues
from muscale.diagnostics.spectra import weight_spectra


def gpt(small: bool):
    from muscale.build import build_model
    from muscale.models.configs import GPTConfig

    cfg = GPTConfig(
        width=384 if small else 768,
        depth=4 if small else 12,
        n_heads=6 if small else 12,
        vocab_size=8192,
        seq_len=256,
    )
    return build_model(cfg, {"scheme": "sp", "base_width": cfg.width})


def bench_spectra(small: bool, ww_mp_fit: bool = True) -> list[tuple]:
    model, plan = gpt(small)
    n_par = sum(p.numel() for p in model.parameters())
    std = {pp.name: pp.init_std for pp in plan.params}
    torch.set_num_threads(torch.get_num_threads())
    t = time.perf_counter()
    rows = weight_spectra(model)
    t_ours = time.perf_counter() - t
    err_ours = np.median(
        [abs(math.sqrt(r.mp_sigma2) / std[r.name] - 1) for r in rows if std.get(r.name)]
    )
    spikes_ours = sum(r.num_spikes for r in rows)
    out = [
        (
            f"spectra, GPT {n_par / 1e6:.0f}M params, {len(rows)} matrices",
            "muscale",
            t_ours,
            f"median |σ̂/σ−1| = {err_ours:.2e}; false spikes = {spikes_ours}",
        )
    ]
    try:
        import weightwatcher as ww
    except ImportError as exc:
        out.append(("", "WeightWatcher", math.nan, f"skipped: {exc}"))
        return out
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        df = ww.WeightWatcher(model=model).analyze(mp_fit=ww_mp_fit)
        t_ww = time.perf_counter() - t
    err_ww = (
        float(np.median(np.abs(df["sigma_mp"].to_numpy() - 1)))
        if ww_mp_fit and "sigma_mp" in df
        else math.nan
    )
    out.append(
        (
            "",
            "WeightWatcher 0.7.7" + (" mp_fit" if ww_mp_fit else " (α only)"),
            t_ww,
            f"median |sigma_mp−1| = {err_ww:.2e}; false spikes = "
            f"{int(df['num_spikes'].sum()) if 'num_spikes' in df else 'n/a'}; "
            f"ratio WW/ours = {t_ww / t_ours:.1f}x",
        )
    )
    return out


def _exact_hessian(model: nn.Module, loss_fn, batch) -> np.ndarray:
    """The dense Hessian by ``torch.func.hessian`` of the loss of the flat parameters."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def flat_loss(theta: torch.Tensor) -> torch.Tensor:
        ps, i = {}, 0
        for n in names:
            ps[n] = theta[i : i + params[n].numel()].view_as(params[n])
            i += params[n].numel()
        return loss_fn(lambda x: torch.func.functional_call(model, ps, (x,)), batch)

    theta = torch.cat([params[n].reshape(-1) for n in names])
    return torch.func.hessian(flat_loss)(theta).numpy()


def bench_hessian(k: int = 20) -> list[tuple]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 48),
        nn.Tanh(),
        nn.Linear(48, 48),
        nn.Tanh(),
        nn.Linear(48, 48),
        nn.Tanh(),
        nn.Linear(48, 4),
    ).double()
    x = torch.randn(512, 16, dtype=torch.float64)
    y = torch.randint(0, 4, (512,))
    crit = nn.CrossEntropyLoss()

    def loss(m, b):
        return crit(m(b[0]), b[1])

    mv, dim = hvp_operator(model, loss, (x, y))
    h = _exact_hessian(model, loss, (x, y))
    ev = np.linalg.eigvalsh(0.5 * (h + h.T))
    exact_la = np.sort(ev)[::-1][:k]  # largest algebraic
    exact_lm = ev[np.argsort(-np.abs(ev))][:k]  # largest magnitude: what power iteration finds

    def err(vals, ref):
        a, b = np.sort(np.asarray(vals))[::-1], np.sort(ref)[::-1]
        return float(np.max(np.abs(a - b) / np.abs(b)))

    label = f"top-{k} Hessian eigenvalues, MLP {dim} params"
    rows = []
    t = time.perf_counter()
    r = top_eigenvalues(mv, dim, k, tol=1e-6)
    t_la = time.perf_counter() - t
    rows.append(
        (
            label,
            "muscale Lanczos (LA)",
            t_la,
            f"max rel err {err(r.eigenvalues, exact_la):.1e} vs exact LA, {r.matvecs} HVPs",
        )
    )
    t = time.perf_counter()
    r = top_eigenvalues(mv, dim, k, tol=1e-6, which="LM")
    t_l = time.perf_counter() - t
    rows.append(
        (
            "",
            "muscale Lanczos (LM)",
            t_l,
            f"max rel err {err(r.eigenvalues, exact_lm):.1e} vs exact LM, {r.matvecs} HVPs",
        )
    )
    t = time.perf_counter()
    p = power_iteration_deflation(mv, dim, k)
    t_p = time.perf_counter() - t
    rows.append(
        (
            "",
            "power iter. + deflation (ours)",
            t_p,
            f"max rel err {err(p.eigenvalues, exact_lm):.1e} vs exact LM, "
            f"{p.matvecs} HVPs; ratio {t_p / t_l:.1f}x",
        )
    )
    try:
        from pyhessian import hessian
    except ImportError as exc:
        rows.append(("", "PyHessian", math.nan, f"skipped: {exc}"))
        return rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        vals, _ = hessian(model, crit, data=(x, y), cuda=False).eigenvalues(top_n=k)
        t_ph = time.perf_counter() - t
    rows.append(
        (
            "",
            "PyHessian 0.1",
            t_ph,
            f"max rel err {err(vals, exact_lm):.1e} vs exact LM; ratio {t_ph / t_l:.1f}x",
        )
    )
    return rows


def bench_free(nets: int = 20) -> list[tuple]:
    from muscale.diagnostics.free import free_additive
    from muscale.diagnostics.free_jacobian import (
        jacobian_ks,
        predict_jacobian_spectrum,
        sampled_singular_values,
    )
    from muscale.diagnostics.stieltjes import Atoms, Semicircle

    rng = np.random.default_rng(0)
    a = Atoms.from_samples(rng.standard_normal(10_000))
    b = Atoms.from_samples(rng.exponential(size=10_000))
    free_additive([Semicircle(), Semicircle()], points=64)  # warm-up (imports, BLAS)
    t, c = time.perf_counter(), time.process_time()
    r = free_additive([a, b], points=512)
    t_add, c_add = time.perf_counter() - t, time.process_time() - c
    rows = [
        (
            "free ⊞ of two 10⁴-atom samples, 512 pts",
            "muscale subordination",
            t_add,
            f"CPU {c_add:.2f} s; max fixed-point residual {r.residual:.1e}; "
            f"ε = {r.eps[0]:.3g} (from n)",
        )
    ]
    t, c = time.perf_counter(), time.process_time()
    pred = predict_jacobian_spectrum("linear", "gaussian", 64)
    t_pred, c_pred = time.perf_counter() - t, time.process_time() - c
    rows.append(
        (
            "Jacobian spectrum, linear Gaussian, L=64",
            "free ⊠ prediction",
            t_pred,
            f"CPU {c_pred:.2f} s; {len(pred.lam)} λ points",
        )
    )
    t, c = time.perf_counter(), time.process_time()
    s = sampled_singular_values("linear", "gaussian", 64, width=512, nets=nets)
    t_mc, c_mc = time.perf_counter() - t, time.process_time() - c
    rows.append(
        (
            "",
            f"Monte Carlo, {nets} nets of width 512",
            t_mc,
            f"CPU {c_mc:.1f} s; KS(MC, prediction) = {jacobian_ks(pred, s):.3f}; "
            f"ratio MC/prediction = {t_mc / t_pred:.0f}x",
        )
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--hessian-only", action="store_true")
    ap.add_argument(
        "--no-ww-mp-fit",
        action="store_true",
        help="run WeightWatcher without its (slow) KDE MP fit: alpha only",
    )
    ap.add_argument("--free-only", action="store_true")
    ap.add_argument("--nets", type=int, default=20)
    args = ap.parse_args()
    if args.free_only:
        rows = bench_free(args.nets)
    else:
        rows = (
            ([] if args.hessian_only else bench_spectra(args.small, not args.no_ww_mp_fit))
            + bench_hessian()
            + bench_free(args.nets)
        )
    print(f"{'task':<48} {'method':<32} {'wall s':>8}  accuracy / notes")
    for task, method, sec, note in rows:
        print(f"{task:<48} {method:<32} {sec:8.2f}  {note}")


if __name__ == "__main__":
    main()
