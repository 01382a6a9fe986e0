"""Logit-change width exponents of tied vs untied μP GPTs, and microsoft/mup's tied form.

Runs the coordinate-check protocol (one fixed batch, T Adam steps, constant LR; TP5 §D.1)
on the default coordinate-check GPT and records the logits at t = 0..T. Per seed and step
it fits the slope of log2(statistic) on log2(width), averages over the steps, and prints
the mean ± sd over seeds of:

* ``all``: mean |z_t - z_0| over every (token, vocab) entry: the coordinate check's
  ``lm_head`` change statistic;
* ``target``: the same over the target entries only (the logits the loss moves);
* ``loss drop``: L_0 - L_T.

Variants: muscale μP tied (the shared tensor takes the input role: init and LR m^0, the
readout keeps its 1/m multiplier), microsoft/mup's ``MuSharedReadout`` + ``MuAdam`` on
the same weights (its base shapes set with ``rescale_params=False``, see
docs/parametrization.md "Tied embeddings" for why), muscale μP untied, and a broken
control (tied tensor given a hidden-like LR m^-1).

    python tools/measure_tied_embeddings.py --widths 64 128 256 512 1024 --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from muscale.build import build_model
from muscale.coord.run import synthetic_batch
from muscale.models.configs import GPTConfig
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer
from muscale.param.config import InitStd, ParamConfig

VARIANTS = ("muscale-tied", "mup-shared", "muscale-untied", "tied-lr/m")


def build(
    variant: str,
    width: int,
    seed: int,
    cfg: GPTConfig,
    base: int,
    ocfg: OptimConfig,
    input_std: float | None = None,
):
    """Model and optimizer of one variant at one width (``input_std``: the embedding's base
    init std; None: muscale's default)."""
    tied = variant != "muscale-untied"
    mcfg = dataclasses.replace(cfg, width=width, tie_embeddings=tied)
    pcfg = ParamConfig(
        scheme="mup",
        base_width=base,
        allow_base_above_width=True,
        scale_eps=variant != "mup-shared",
        init_std=InitStd(input=input_std),
    )
    model, plan = build_model(mcfg, pcfg, seed=seed)
    if variant == "mup-shared":
        return model, mup_optimizer(model, mcfg, pcfg, ocfg)
    opt, _ = make_optimizer(model, plan, ocfg)
    if variant == "tied-lr/m":
        w = model.wte.weight
        for g in opt.param_groups:
            if any(p is w for p in g["params"]):
                g["params"] = [p for p in g["params"] if p is not w]
                opt.add_param_group({**g, "params": [w], "lr": g["lr"] * base / width})
                break
    return model, opt


def mup_optimizer(model, mcfg: GPTConfig, pcfg: ParamConfig, ocfg: OptimConfig):
    """Swap the readout for ``MuSharedReadout`` on the same tensor, set mup's base shapes
    from our family at the base width (no rescaling: the weights are already μP), MuAdam."""
    from mup import MuAdam, MuSharedReadout, set_base_shapes

    def shared(m):
        m.lm_head = MuSharedReadout(m.wte.weight, bias=False)
        return m

    def at(w):
        return shared(build_model(dataclasses.replace(mcfg, width=w), pcfg)[0])

    set_base_shapes(
        shared(model), at(pcfg.base_width), delta=at(2 * pcfg.base_width), rescale_params=False
    )
    return MuAdam(model.parameters(), lr=ocfg.lr, betas=tuple(ocfg.betas), eps=ocfg.eps)


def readout_mult(model) -> float:
    """The readout's forward multiplier (muscale's ``mult``; mup's output_mult / width_mult)."""
    head = model.lm_head
    return head.mult if hasattr(head, "mult") else head.output_mult / head.width_mult()


def run(model, opt, batch, steps: int) -> dict[str, np.ndarray | float]:
    """Per step t = 1..T: mean |z_t - z_0| over all entries and over the target entries,
    and its two parts mult·(W_t - W_0)·h_t and mult·W_0·(h_t - h_0); and the loss drop."""
    x, y = batch
    hs: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_pre_hook(lambda m, a: hs.append(a[0].detach()))
    w0, mult = model.lm_head.weight.detach().clone(), readout_mult(model)
    zs, losses, dw_h = [], [], []
    for t in range(steps + 1):
        z = model(x)
        loss = F.cross_entropy(z.flatten(0, 1), y.flatten())
        zs.append(z.detach())
        losses.append(float(loss.detach()))
        dw_h.append(
            float((F.linear(hs[-1], model.lm_head.weight.detach() - w0) * mult).abs().mean())
        )
        if t < steps:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    hook.remove()
    tgt = y.unsqueeze(-1)
    return {
        "all": np.array([float((z - zs[0]).abs().mean()) for z in zs[1:]]),
        "target": np.array([float((z - zs[0]).gather(-1, tgt).abs().mean()) for z in zs[1:]]),
        "dW.h": np.array(dw_h[1:]),
        "W0.dh": np.array([float((F.linear(h - hs[0], w0) * mult).abs().mean()) for h in hs[1:]]),
        "drop": losses[0] - losses[-1],
    }


def slope(widths, vals) -> float:
    return float(np.polyfit(np.log2(widths), np.log2(vals), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument(
        "--input-std",
        type=float,
        default=None,
        help="base init std of the (shared) embedding; default: muscale's",
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = GPTConfig(width=a.widths[0], depth=a.depth, vocab_size=a.vocab, seq_len=a.seq_len)
    batch = synthetic_batch(cfg, batch_size=a.batch_size, seq_len=a.seq_len, seed=0)
    ocfg = OptimConfig(name="adam", lr=a.lr)
    base = a.widths[0]
    print(
        f"widths {a.widths}, seeds {a.seeds}, steps {a.steps}, depth {a.depth}, "
        f"vocab {a.vocab}, batch {a.batch_size}x{a.seq_len}, Adam lr {a.lr}, "
        f"embedding std {a.input_std or 'default'}"
    )
    keys = ("all", "target", "dW.h", "W0.dh")
    print(
        f"{'variant':15}"
        + "".join(f"{k:>19}" for k in (*keys, "loss drop"))
        + "  all: local slopes"
    )
    for v in a.variants:
        t0 = time.perf_counter()
        res = [
            [run(*build(v, w, s, cfg, base, ocfg, a.input_std), batch, a.steps) for w in a.widths]
            for s in range(a.seeds)
        ]
        sl: dict[str, list[float]] = {k: [] for k in (*keys, "drop")}
        for per_w in res:
            for k in keys:
                st = np.stack([r[k] for r in per_w])  # (widths, steps)
                sl[k].append(np.mean([slope(a.widths, st[:, t]) for t in range(a.steps)]))
            sl["drop"].append(slope(a.widths, [max(r["drop"], 1e-12) for r in per_w]))
        mean_all = np.mean([[r["all"].mean() for r in per_w] for per_w in res], axis=0)
        local = np.diff(np.log2(mean_all)) / np.diff(np.log2(a.widths))
        sd = {k: np.std(v_, ddof=1) if a.seeds > 1 else 0.0 for k, v_ in sl.items()}
        cells = [f"{np.mean(sl[k]):+.4g} ± {sd[k]:.2g}" for k in (*keys, "drop")]
        print(
            f"{v:15}"
            + "".join(f"{c:>19}" for c in cells)
            + "  "
            + " ".join(f"{x:+.3g}" for x in local)
            + f"   ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
