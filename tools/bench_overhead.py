"""Train-step overhead of muscale's μP against plain PyTorch (SP) and microsoft/mup.

Same architecture, same data, same run, CPU; eager and torch.compile. Contenders:

* ``plain``  — the same network written in plain PyTorch (nn.Linear readout, default SDPA
  scale), one ``torch.optim.AdamW`` param group;
* ``mup``    — muscale's module with microsoft/mup's ``MuReadout`` + ``set_base_shapes`` +
  ``MuAdamW`` (per-parameter groups);
* ``muscale`` — ``build_model(param=mup)`` + ``make_optimizer`` (merged groups).

Family ``hf``: a transformers Llama-style model, ``plain`` = ``from_config`` + one AdamW
group, ``muscale`` = ``muscale.hf.build`` (forward hooks, attention ``scaling`` set, μP
groups); no mup contender (it would need the model's code edited).

Timing alternates contenders round by round (noisy machines: only ratios measured side by
side mean anything); reports the median step time per contender and the ratios.

    python tools/bench_overhead.py [--rounds 5] [--steps 10] [--no-compile] [--families hf]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from muscale.build import build_model
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.models.layers import apply_rope, rope_cache
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer
from muscale.param.config import ParamConfig


class PlainBlock(nn.Module):
    def __init__(self, c: int, nh: int, seq: int) -> None:
        super().__init__()
        self.nh, self.hs = nh, c // nh
        self.norm1, self.norm2 = nn.RMSNorm(c, eps=1e-6), nn.RMSNorm(c, eps=1e-6)
        self.q, self.k, self.v, self.o = (nn.Linear(c, c, bias=False) for _ in range(4))
        self.fc_in, self.fc_out = nn.Linear(c, 4 * c, bias=False), nn.Linear(4 * c, c, bias=False)
        cos, sin = rope_cache(seq, self.hs, 10000.0)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        h = self.norm1(x)
        q = self.q(h).view(B, T, self.nh, self.hs).transpose(1, 2)
        k = self.k(h).view(B, T, self.nh, self.hs).transpose(1, 2)
        v = self.v(h).view(B, T, self.nh, self.hs).transpose(1, 2)
        q, k = apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc_out(F.gelu(self.fc_in(self.norm2(x))))


class PlainGPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.width)
        self.blocks = nn.ModuleList(
            PlainBlock(cfg.width, cfg.n_heads, cfg.seq_len) for _ in range(cfg.depth)
        )
        self.norm_f = nn.RMSNorm(cfg.width, eps=1e-6)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)

    def forward(self, idx):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.norm_f(x))


class PlainMLP(nn.Module):
    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(cfg.in_dim, cfg.width)
        self.blocks = nn.ModuleList(nn.Linear(cfg.width, cfg.width) for _ in range(cfg.depth))
        self.out = nn.Linear(cfg.width, cfg.out_dim)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(F.relu(h))
        return self.out(F.relu(h))


def mup_variant(model: nn.Module, cfg, readout: str, base_width: int) -> nn.Module:
    from mup import MuReadout, set_base_shapes

    def swap(m):
        m = copy.deepcopy(m)
        old = getattr(m, readout)
        new = MuReadout(old.in_features, old.out_features, bias=old.bias is not None)
        setattr(m, readout, new)
        return m

    pcfg = ParamConfig(scheme="mup", base_width=base_width)
    base, _ = build_model(dataclasses.replace(cfg, width=base_width), pcfg)
    delta, _ = build_model(dataclasses.replace(cfg, width=2 * base_width), pcfg)
    twin = swap(model)
    set_base_shapes(twin, swap(base), delta=swap(delta))
    return twin


def hf_contenders():
    """A Llama-style transformers model, plain vs parametrized by muscale.hf.build."""
    import transformers
    from transformers import AutoModelForCausalLM, LlamaConfig

    from muscale.hf import build as hf_build
    from muscale.hf.model import HFCausalLM

    transformers.logging.set_verbosity_error()
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=256,
        intermediate_size=688,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_hidden_layers=4,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 128), generator=g)
    y = torch.randint(0, 256, (8, 128), generator=g)

    def loss_fn(m):
        return F.cross_entropy(m(x).flatten(0, 1), y.flatten())

    plain = HFCausalLM(AutoModelForCausalLM.from_config(cfg))
    ours, plan = hf_build(cfg, width=256, base_width=64, head_scaling="head_dim")
    ocfg = OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4)
    opt_ours, _ = make_optimizer(ours, plan, ocfg)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    return {"plain": (plain, opt_plain), "muscale": (ours, opt_ours)}, loss_fn


def contenders(family: str):
    if family == "hf":
        return hf_contenders()
    if family == "gpt":
        cfg = GPTConfig(width=256, depth=4, n_heads=4, vocab_size=256, seq_len=128)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (8, 128), generator=g)
        y = torch.randint(0, 256, (8, 128), generator=g)

        def loss_fn(m):
            return F.cross_entropy(m(x).flatten(0, 1), y.flatten())

        plain, readout = PlainGPT(cfg), "lm_head"
    else:
        cfg = MLPConfig(width=1024, depth=4, in_dim=256, out_dim=10)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 256, generator=g)
        y = torch.randint(0, 10, (256,), generator=g)

        def loss_fn(m):
            return F.cross_entropy(m(x), y)

        plain, readout = PlainMLP(cfg), "out"
    ocfg = OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4)
    ours, plan = build_model(cfg, ParamConfig(scheme="mup", base_width=64))
    opt_ours, _ = make_optimizer(ours, plan, ocfg)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    out = {"plain": (plain, opt_plain), "muscale": (ours, opt_ours)}
    try:
        from mup import MuAdamW

        twin = mup_variant(ours, cfg, readout, 64)
        out["mup"] = (
            twin,
            MuAdamW(twin.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1),
        )
    except ImportError:
        print("microsoft/mup not installed: skipping it (pip install --no-deps mup)")
    return out, loss_fn


def time_steps(model, opt, loss_fn, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mb(family: str, name: str) -> float:
    """Peak resident memory of 3 eager steps of one contender, in a fresh process (torch's
    CPU allocator is invisible to tracemalloc)."""
    code = (
        "import resource, sys; sys.argv=['x'];"
        "from tools.bench_overhead import contenders, time_steps;"
        f"c, f = contenders({family!r}); m, o = c[{name!r}];"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "time_steps(m, o, f, 3);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return int(out.stdout.split()[-1]) / 1024


def bench(family: str, compiled: bool, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    cands, loss_fn = contenders(family)
    if compiled:
        cands = {k: (torch.compile(m), o) for k, (m, o) in cands.items()}
    for m, o in cands.values():  # warm-up (compilation, allocator)
        time_steps(m, o, loss_fn, 3)
    samples: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(rounds):
        for name, (m, o) in cands.items():
            samples[name].append(statistics.median(time_steps(m, o, loss_fn, steps)))
    res = {}
    for name, (m, _opt) in cands.items():
        res[name] = {
            "step_ms": 1e3 * statistics.median(samples[name]),
            "params": sum(p.numel() for p in m.parameters()),
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also peak RSS per contender")
    ap.add_argument("--families", default="gpt,mlp,hf", help="comma list of gpt, mlp, hf")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    modes = [False] if args.no_compile else [False, True]
    print(f"threads={torch.get_num_threads()} rounds={args.rounds} steps/round={args.steps}")
    if args.memory:
        print(f"{'family':<6} {'plain MB':>9} {'mup MB':>9} {'muscale MB':>11} (peak RSS, eager)")
        for family in ("gpt", "mlp"):
            mb = {n: peak_rss_mb(family, n) for n in ("plain", "mup", "muscale")}
            print(f"{family:<6} {mb['plain']:>9.0f} {mb['mup']:>9.0f} {mb['muscale']:>11.0f}")
    print(
        f"{'family':<6} {'mode':<8} {'plain ms':>9} {'mup ms':>9} {'muscale ms':>11} "
        f"{'muscale/plain':>14} {'muscale/mup':>12}"
    )
    for family in args.families.split(","):
        for compiled in modes:
            r = bench(family, compiled, args.rounds, args.steps)
            mup_ms = r.get("mup", {}).get("step_ms", float("nan"))
            print(
                f"{family:<6} {'compiled' if compiled else 'eager':<8} "
                f"{r['plain']['step_ms']:>9.2f} {mup_ms:>9.2f} {r['muscale']['step_ms']:>11.2f} "
                f"{r['muscale']['step_ms'] / r['plain']['step_ms']:>14.3f} "
                f"{r['muscale']['step_ms'] / mup_ms:>12.3f}"
            )


if __name__ == "__main__":
    main()
