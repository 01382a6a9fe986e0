r"""Lazy vs rich training: how much weights and the tangent kernel move, against width.

Trains the core's MLP (built by :func:`muscale.build.build_model`, optimised by
:func:`muscale.optim.optimizer.make_optimizer`, so every scheme uses its own rule table) on a
fixed teacher task, full batch, and measures after ``steps`` steps:

* ``rel_w_op``: mean over hidden matrices of ``‖W_T − W_0‖₂ / ‖W_0‖₂`` (operator norm). The
  spectral condition for feature learning (Yang, Simon & Bernstein 2023) is that this is
  Θ(1) in width; under the NTK parametrisation it shrinks like ``width^(−1/2)``
  (Lee et al. 2019: ‖ΔW‖ is O(1) in NTK units while ‖W₀‖₂ ~ √n);
* ``rel_w_fro``: the same in Frobenius norm, and ``rel_w_input`` for the input layer;
* ``rel_k``: ``‖K_T − K_0‖_F / ‖K_0‖_F`` of the learning-rate-weighted empirical NTK
  ``K = Σ_p η_p ∂_p f ∂_p fᵀ`` on held-out probe points — the kernel that drives gradient
  descent in function space, invariant under the abc-reparametrisation, so the folded
  (init-scale) NTK parametrisation of the rule table gives the kernel of Jacot et al.
  It also shrinks like ``width^(−1/2)`` under NTK (Lee et al. 2019, Thm 2.1) and stays
  Θ(1) under μP (Tensor Programs IV).

:func:`width_exponents` fits the log-log slope of each quantity against width per scheme.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from muscale.diagnostics.ntk import empirical_ntk


@dataclass(kw_only=True)
class LazyRow:
    scheme: str
    width: int
    seed: int
    rel_w_op: float
    rel_w_fro: float
    rel_w_input: float
    rel_k: float
    loss_0: float
    loss_T: float

    def to_dict(self) -> dict:
        return asdict(self)


def _task(in_dim: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=g)
    u = torch.randn(in_dim, generator=g) / math.sqrt(in_dim)
    return x, torch.sin(2.0 * x @ u)[:, None] + 0.5 * torch.tanh(x[:, :1])


def train_once(
    scheme: str,
    width: int,
    *,
    depth: int = 2,
    in_dim: int = 8,
    n_train: int = 32,
    n_probe: int = 16,
    steps: int = 20,
    lr: float = 0.05,
    optim: str = "sgd",
    base_width: int = 64,
    activation: str = "relu",
    seed: int = 0,
) -> LazyRow:
    """One run: build, record W₀ and K₀, train ``steps`` full-batch steps, measure."""
    from muscale.build import build_model
    from muscale.models.configs import MLPConfig
    from muscale.optim.config import OptimConfig
    from muscale.optim.optimizer import make_optimizer
    from muscale.param.config import ParamConfig

    ocfg = OptimConfig(name=optim, lr=lr)
    mcfg = MLPConfig(width=width, depth=depth, in_dim=in_dim, out_dim=1, activation=activation)
    model, plan = build_model(
        mcfg,
        ParamConfig(scheme=scheme, base_width=base_width),
        optim_family=ocfg.rule_family,
        seed=seed,
    )
    opt, _ = make_optimizer(model, plan, ocfg, total_steps=steps)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    weights = {n: lr_of[id(p)] / lr for n, p in model.named_parameters()}
    roles = {pp.name: pp.role for pp in plan.params}
    x, y = _task(in_dim, n_train, 1234)
    xp, _ = _task(in_dim, n_probe, 4321)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    k0 = empirical_ntk(model, xp, param_weights=weights)
    loss0 = None
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss0 = float(loss.detach()) if loss0 is None else loss0
        loss.backward()
        opt.step()
    with torch.no_grad():
        lossT = float(torch.mean((model(x) - y) ** 2))
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    kT = empirical_ntk(model, xp, param_weights=weights) if finite else k0 * math.nan
    named = dict(model.named_parameters())
    op, fro = [], []
    for n in (n for n, r in roles.items() if str(r).endswith("hidden")):
        d = named[n].detach() - w0[n]
        if not torch.isfinite(d).all():  # diverged (SP at a large width): report nan
            op.append(math.nan)
            fro.append(math.nan)
            continue
        op.append(float(torch.linalg.matrix_norm(d, 2) / torch.linalg.matrix_norm(w0[n], 2)))
        fro.append(float(d.norm() / w0[n].norm()))
    inp = (named["inp.weight"].detach() - w0["inp.weight"]).norm() / w0["inp.weight"].norm()
    return LazyRow(
        scheme=scheme,
        width=width,
        seed=seed,
        rel_w_op=float(np.mean(op)),
        rel_w_fro=float(np.mean(fro)),
        rel_w_input=float(inp),
        rel_k=float((kT - k0).norm() / k0.norm()),
        loss_0=float(loss0 or 0.0),
        loss_T=lossT,
    )


def lazy_vs_rich(
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
    schemes: tuple[str, ...] = ("sp", "ntk", "mup"),
    *,
    seeds: tuple[int, ...] = (0,),
    **kw,
) -> list[LazyRow]:
    """:func:`train_once` over a grid of schemes x widths x seeds (same base width, LR and
    data for all, so at ``width == base_width`` the schemes coincide)."""
    return [train_once(s, w, seed=sd, **kw) for s in schemes for w in widths for sd in seeds]


def width_exponents(rows: list[LazyRow], key: str = "rel_w_op") -> dict[str, float]:
    """Per scheme, the slope of ``log mean(key)`` against ``log width``."""
    out: dict[str, float] = {}
    for scheme in dict.fromkeys(r.scheme for r in rows):
        widths = sorted({r.width for r in rows if r.scheme == scheme})
        vals = [
            np.mean([getattr(r, key) for r in rows if r.scheme == scheme and r.width == w])
            for w in widths
        ]
        ok = np.isfinite(vals) & (np.array(vals) > 0)
        if ok.sum() >= 2:
            out[scheme] = float(
                np.polyfit(np.log(np.array(widths)[ok]), np.log(np.array(vals)[ok]), 1)[0]
            )
        else:
            out[scheme] = math.nan
    return out
