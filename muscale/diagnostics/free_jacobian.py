r"""The whole singular-value spectrum of a deep network's input–output Jacobian at init,
predicted by free multiplicative convolution (Pennington, Schoenholz & Ganguli 2017,
"Resurrecting the sigmoid…", §2.3–2.5; 2018, "The emergence of spectral universality in
deep networks").

For ``J = D^L W^L ⋯ D^1 W^1`` (notation of :mod:`.jacobian`) with the ``W^l`` and ``D^l``
asymptotically free, the eigenvalue law of ``JJᵀ`` is the free product

.. math:: \mu_{JJ^T} = \big(\mu_{W^TW} \boxtimes \mu_{D^2}\big)^{\boxtimes L},

where ``μ_{WᵀW}`` is Marchenko–Pastur(γ = 1, σ² = σ_w²) for Gaussian weights and the point
mass ``δ_{σ_w²}`` for scaled orthogonal ones, and ``μ_{D²}`` is the law of
``φ'(h)²``, ``h ~ N(0, q*)`` (mean-field pre-activations at the fixed point): ``δ₁`` for
linear, Bernoulli(½) on ``{0, 1}`` for ReLU, and for tanh an 80-point Gauss–Hermite rule
(nodes of weight < 1e-14 dropped).
Pennington et al. reach the density by solving the S-transform equation
``S_{JJᵀ} = (S_W S_{D²})^L`` for each point; here the same law comes from the subordination
fixed point of :func:`muscale.diagnostics.free.free_multiplicative_cauchy` (two species,
multiplicity ``L`` each), which costs the same at every depth.

Singular values ``s = √λ``; all CDFs below are in ``λ`` and are compared with samples on
``s²``. A product of ``L`` Gaussian matrices has most of its mass near 0 (``CDF ~ λ^{1/(L+1)}``),
so the grid is logarithmic, the inversion offset relative (``λ(1 + iε)``), and a float64
Jacobian cannot resolve ``λ < ~1e-26 λ_max``: :func:`jacobian_ks` censors both sides below a
floor.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from muscale.diagnostics.free import _top_edge, free_multiplicative
from muscale.diagnostics.jacobian import ACTS, INITS, critical_point
from muscale.diagnostics.spectra import ks_distance
from muscale.diagnostics.stieltjes import Atoms, MarchenkoPastur, Measure, point_mass
from muscale.errors import check_choice

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(80)
_GH_W = _GH_W / _GH_W.sum()
_KEEP = _GH_W > 1e-14  # nodes far in the tails carry no mass but slow the solver down


def derivative_law(activation: str, q_star: float) -> Atoms:
    """Law of ``φ'(h)²``, ``h ~ N(0, q*)``, as atoms (exact for linear and ReLU)."""
    check_choice("activation", activation, ACTS)
    if activation == "linear":
        return point_mass(1.0)
    if activation == "relu":
        return Atoms(x=np.array([0.0, 1.0]), w=np.array([0.5, 0.5]))
    d2 = ACTS[activation][1](math.sqrt(q_star) * _GH_X[_KEEP]) ** 2
    order = np.argsort(d2)
    return Atoms(x=d2[order], w=_GH_W[_KEEP][order] / _GH_W[_KEEP].sum())


def layer_laws(activation: str, init: str, q_star: float = 1.0) -> list[Measure]:
    """``[μ_{WᵀW}, μ_{D²}]`` of one critical layer (point masses at 1 dropped)."""
    check_choice("init", init, INITS)
    sw, _ = critical_point(activation, q_star)
    w: Measure = (
        MarchenkoPastur(gamma=1.0, sigma2=sw**2) if init == "gaussian" else point_mass(sw**2)
    )
    laws = [w, derivative_law(activation, q_star)]
    return [m for m in laws if not (isinstance(m, Atoms) and len(m.x) == 1 and m.x[0] == 1.0)]


@dataclass(kw_only=True)
class JacobianPrediction:
    """Predicted law of the eigenvalues ``λ = s²`` of ``JJᵀ``: density ``pdf`` and CDF
    ``cdf`` on the log grid ``lam``, or a point mass at ``atom`` (every layer a scaled
    isometry, e.g. orthogonal linear: all singular values exactly ``√atom``)."""

    activation: str
    init: str
    depth: int
    q_star: float
    lam: np.ndarray
    pdf: np.ndarray
    cdf: np.ndarray
    atom: float | None
    seconds: float

    def cdf_at(self, lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=np.float64)
        if self.atom is not None:
            return (lam >= self.atom * (1 - 1e-9)).astype(np.float64)
        left = np.where(lam > 0, np.log(np.maximum(lam, 1e-300)), -np.inf)
        return np.interp(left, np.log(self.lam), self.cdf, left=self.cdf[0], right=1.0)

    def singular_pdf(self, s: np.ndarray) -> np.ndarray:
        """Density of the singular values ``s``: ``2 s p_λ(s²)``."""
        s = np.asarray(s, dtype=np.float64)
        return 2 * s * np.interp(s**2, self.lam, self.pdf, left=0.0, right=0.0)


def predict_jacobian_spectrum(
    activation: str,
    init: str,
    depth: int,
    *,
    q_star: float = 1.0,
    points: int = 1024,
    decades: float | None = None,
    rel_eps: float = 1e-4,
) -> JacobianPrediction:
    """Free-probability prediction of the ``JJᵀ`` spectrum of a critical MLP (module
    docstring): ``points`` log-spaced ``λ`` over the top 6 decades below twice the estimated
    top edge (where the bulk is) plus ``points/4`` over ``decades`` (the thin low tail of
    Gaussian products). The law is continuous, so a small relative offset is exact to
    ``O(rel_eps)`` pointwise, whatever the grid step. ``decades`` default: 40 for Gaussian
    weights (Fuss–Catalan-like mass near 0), 8 for orthogonal ones."""
    if decades is None:
        decades = 40.0 if init == "gaussian" else 8.0
    t0 = time.perf_counter()
    laws = layer_laws(activation, init, q_star)
    if not laws or all(isinstance(m, Atoms) and len(m.x) == 1 for m in laws):
        atom = float(np.prod([m.x[0] for m in laws])) ** depth if laws else 1.0  # type: ignore[attr-defined]
        lam = np.array([atom])
        return JacobianPrediction(
            activation=activation,
            init=init,
            depth=depth,
            q_star=q_star,
            lam=lam,
            pdf=np.zeros(1),
            cdf=np.ones(1),
            atom=atom,
            seconds=time.perf_counter() - t0,
        )
    species = [(m, depth) for m in laws]
    hi = 2.0 * _top_edge(species)  # the edge estimate is within ~10%: 2x covers it
    lam = np.unique(
        np.concatenate(
            [
                np.geomspace(hi * 10.0 ** (-decades), hi, points // 4),
                np.geomspace(hi * 1e-6, hi, points),
            ]
        )
    )
    res = free_multiplicative(species, lam, rel_eps=rel_eps)
    return JacobianPrediction(
        activation=activation,
        init=init,
        depth=depth,
        q_star=q_star,
        lam=res.x,
        pdf=res.pdf,
        cdf=res.cdf,
        atom=None,
        seconds=time.perf_counter() - t0,
    )


def jacobian_ks(
    pred: JacobianPrediction, singular_values: np.ndarray, *, floor: float = 1e-12
) -> float:
    """KS distance between the empirical law of ``s²`` and the prediction, both censored at
    ``floor · max(s²)`` (float64 products cannot resolve smaller eigenvalues: values below
    the floor count as "≤ floor" on both sides)."""
    lam = np.sort(np.asarray(singular_values, dtype=np.float64) ** 2)
    if pred.atom is not None:
        return float(np.max(np.abs(lam - pred.atom)) > 1e-8 * pred.atom)
    cut = floor * lam.max()
    lam_c = np.maximum(lam, cut)
    cdf = pred.cdf_at(lam_c)
    # the censored model has an atom F(cut) at the cut: its CDF just below the cut is 0
    return ks_distance(lam_c, cdf, np.where(lam_c <= cut, 0.0, cdf))


def sampled_singular_values(
    activation: str,
    init: str,
    depth: int,
    *,
    width: int = 512,
    nets: int = 20,
    q_star: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Singular values of ``J`` pooled over ``nets`` independently initialised critical MLPs
    (:func:`muscale.diagnostics.jacobian.jacobian_spectrum`)."""
    from muscale.diagnostics.jacobian import jacobian_spectrum

    return np.concatenate(
        [
            jacobian_spectrum(
                activation, init, depth, width=width, q_star=q_star, seed=seed + k
            ).singular_values
            for k in range(nets)
        ]
    )


def free_jacobian_entry(cfg: dict | None = None) -> dict:
    """``muscale diagnose`` entry: predicted vs sampled Jacobian spectra. Keys (defaults):
    ``activations`` ([linear, tanh]), ``inits`` ([gaussian, orthogonal]), ``depths`` ([8, 32]),
    ``width`` (256), ``nets`` (5), ``seed`` (0). Returns ``{"rows": [...]}`` with the KS
    distance, the prediction time and the sampling time of each case."""
    cfg = dict(cfg or {})
    rows = []
    for act in cfg.get("activations", ["linear", "tanh"]):
        for init in cfg.get("inits", list(INITS)):
            for depth in cfg.get("depths", [8, 32]):
                q = 1.0 / 64 if act == "tanh" else 1.0
                pred = predict_jacobian_spectrum(act, init, int(depth), q_star=q)
                t0 = time.perf_counter()
                s = sampled_singular_values(
                    act,
                    init,
                    int(depth),
                    width=int(cfg.get("width", 256)),
                    nets=int(cfg.get("nets", 5)),
                    q_star=q,
                    seed=int(cfg.get("seed", 0)),
                )
                rows.append(
                    {
                        "activation": act,
                        "init": init,
                        "depth": int(depth),
                        "ks": jacobian_ks(pred, s),
                        "predict_s": pred.seconds,
                        "sample_s": time.perf_counter() - t0,
                    }
                )
    return {"rows": rows}
