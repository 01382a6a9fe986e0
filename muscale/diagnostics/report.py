"""Markdown report with tables and PNG plots for ``muscale diagnose``.

``write_report(out_dir, results)`` takes the dict that :func:`muscale.diagnostics.suite.run`
builds (sections ``spectra``, ``hessian``, ``ntk``, ``jacobian``; each optional) and writes
``report.md`` plus one PNG per plot into ``out_dir``. Plots: the ESD of each matrix with the
fitted Marchenko–Pastur density and the outlier threshold; the Hessian's SLQ density with
the Lanczos top eigenvalues; the NTK eigen-decay on log-log axes; the JJᵀ variance vs depth
with the free-probability prediction.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from muscale.diagnostics.laws import mp_pdf


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, list | tuple):
        return (
            "x".join(map(str, v))
            if all(isinstance(i, int) for i in v)
            else ", ".join(_fmt(i) for i in v)
        )
    return str(v)


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A Markdown table of ``cols`` from a list of dict rows."""
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join(
        "| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |\n" for r in rows
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_esd(
    eigs: np.ndarray, gamma: float, sigma2: float, threshold: float, title: str, path: Path
) -> None:
    """Histogram of an ESD with the fitted MP density and the outlier threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    top = max(float(np.max(eigs)), threshold if math.isfinite(threshold) else 0.0)
    ax.hist(
        eigs,
        bins=min(120, max(20, len(eigs) // 8)),
        density=True,
        alpha=0.6,
        range=(0, top * 1.05),
        label="ESD",
    )
    if sigma2 > 0:
        grid = np.linspace(1e-9, top * 1.05, 600)
        ax.plot(
            grid,
            mp_pdf(grid, gamma, sigma2),
            "r-",
            lw=1.5,
            label=f"MP γ={gamma:.3g}, σ²={sigma2:.3g}",
        )
        ax.axvline(threshold, color="k", ls="--", lw=1, label="edge + TW margin")
    ax.set_xlabel("λ = s²/n")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_xy(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log: bool = False,
    marks: list[float] | None = None,
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, (x, y) in series.items():
        style = "--" if label.startswith("theory") else "-o"
        ax.plot(x, y, style, ms=3, label=label)
    for m in marks or []:
        ax.axvline(m, color="r", lw=0.6, alpha=0.6)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


SPECTRA_COLS = [
    "name",
    "shape",
    "mp_sigma2",
    "mp_lambda_plus",
    "mp_ks",
    "num_spikes",
    "alpha",
    "alpha_se",
    "spectral_norm",
    "stable_rank",
    "log_spectral_norm",
]


#: theory entries reported as their JSON (figures: tools/make_diag_figures.py)
THEORY_SECTIONS = {
    "free_jacobian": "Jacobian spectra: free-probability prediction vs sampled networks",
    "attention_ntk": "Attention NNGP/NTK: convergence to the infinite-width kernel",
    "spectral_bias": "Spectral bias: kernel eigenvalues by spherical-harmonic degree",
}


def write_report(out_dir: str | Path, results: dict[str, Any], *, max_esd_plots: int = 24) -> Path:
    """Write ``report.md`` and the PNG plots; return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# muscale diagnose report\n"]
    if "source" in results:
        md.append(f"Source: `{results['source']}`\n")
    if "spectra" in results:
        layers = results["spectra"]
        md.append("## Weight spectra\n")
        md.append(
            "λ = s²/n with n the larger side; MP fit by quantile matching; spikes are "
            "eigenvalues above the MP edge plus 4 Tracy–Widom scales; α is the "
            "Clauset–Shalizi–Newman tail exponent.\n\n"
        )
        md.append(table([lay.to_dict() for lay in layers], SPECTRA_COLS))
        for i, lay in enumerate(layers[:max_esd_plots]):
            if lay.mp_sigma2 <= 0:
                continue
            name = f"esd_{i:03d}.png"
            plot_esd(
                lay.eigenvalues,
                lay.p / lay.n,
                lay.mp_sigma2,
                lay.mp_lambda_plus if lay.num_spikes == 0 else min(lay.spikes) * 0.999,
                lay.name,
                out / name,
            )
            md.append(f"\n![{lay.name}]({name})\n")
    if "hessian" in results:
        h = results["hessian"]
        md.append("\n## Hessian\n")
        md.append(
            f"Parameters: {h['dim']}; Hessian-vector products: {h['matvecs']}; batch: "
            f"{h.get('batch', '')}.\n\n"
        )
        md.append(
            table(
                [
                    {"k": i + 1, "eigenvalue": v, "residual": r}
                    for i, (v, r) in enumerate(
                        zip(h["top_eigenvalues"], h["top_residuals"], strict=True)
                    )
                ],
                ["k", "eigenvalue", "residual"],
            )
        )
        md.append(f"\nTrace (Hutchinson): {h['trace']:.6g} ± {h['trace_stderr']:.2g}\n")
        if "density" in h:
            grid, dens = np.asarray(h["density"]["grid"]), np.asarray(h["density"]["values"])
            plot_xy(
                {"SLQ density": (grid, dens)},
                out / "hessian_density.png",
                xlabel="eigenvalue",
                ylabel="density",
                title="Hessian spectral density (SLQ); red: Lanczos top-k",
                marks=list(h["top_eigenvalues"]),
            )
            md.append("\n![Hessian density](hessian_density.png)\n")
    if "ntk" in results:
        k = results["ntk"]
        md.append("\n## Empirical NTK\n")
        md.append(f"{k['n']} inputs; output trace: {k['trace']}; {k.get('note', '')}\n\n")
        md.append(f"Eigen-decay slope (log λ_i vs log i): {k['decay_slope']:.3g}\n")
        lam = np.asarray(k["eigenvalues"])
        idx = np.arange(1, len(lam) + 1)
        good = lam > 0
        plot_xy(
            {"NTK eigenvalues / λ₁": (idx[good], lam[good])},
            out / "ntk_decay.png",
            xlabel="index i",
            ylabel="λ_i / λ_1",
            title="NTK eigen-decay",
            log=True,
        )
        md.append("\n![NTK eigen-decay](ntk_decay.png)\n")
    if "jacobian" in results:
        rows = results["jacobian"]
        md.append("\n## Input–output Jacobian (dynamical isometry)\n")
        md.append(
            "Critical MLPs (χ = 1); variance of the eigenvalues of JJᵀ vs depth and "
            "the free-probability prediction L(μ₂/μ₁² − 1 − s₁) (Pennington et al. "
            "2017).\n\n"
        )
        md.append(
            table(
                rows,
                [
                    "activation",
                    "init",
                    "depth",
                    "width",
                    "sigma_w",
                    "sigma_b",
                    "q_star",
                    "mean",
                    "variance",
                    "theory_variance",
                    "max_singular",
                ],
            )
        )
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in dict.fromkeys((r["activation"], r["init"]) for r in rows):
            sel = [r for r in rows if (r["activation"], r["init"]) == key]
            series[f"{key[0]}/{key[1]}"] = (
                np.array([r["depth"] for r in sel]),
                np.array([r["variance"] for r in sel]),
            )
        plot_xy(
            series,
            out / "jacobian_variance.png",
            xlabel="depth L",
            ylabel="var of eig(JJᵀ)",
            title="Jacobian spectrum spread vs depth",
        )
        md.append("\n![Jacobian variance](jacobian_variance.png)\n")
    for key, title in THEORY_SECTIONS.items():
        if key in results:
            md.append(f"\n## {title}\n\n```json\n{json.dumps(results[key], indent=1)}\n```\n")
    path = out / "report.md"
    path.write_text("".join(md))
    return path
