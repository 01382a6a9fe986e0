"""The plan equals an independent computation of PARAMETRIZATION.md's table.

The expected values below are written out from the design table (TP5 Table 8, NTK folded
form, depth rules), not imported from muscale.param.rules, so a typo in the rule table
fails here.
"""

from __future__ import annotations

import math

import pytest
import torch

from muscale.build import build_model
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.optim.groups import effective
from muscale.param.config import ParamConfig

# (scheme, family) -> role -> (init exponent, multiplier exponent, lr exponent)
TABLE = {
    ("sp", "adam"): {
        "input": (0, 0, 0),
        "hidden": (-0.5, 0, 0),
        "output": (-0.5, 0, 0),
        "vector": (0, 0, 0),
    },
    ("sp", "sgd"): {
        "input": (0, 0, 0),
        "hidden": (-0.5, 0, 0),
        "output": (-0.5, 0, 0),
        "vector": (0, 0, 0),
    },
    ("ntk", "adam"): {
        "input": (0, 0, 0),
        "hidden": (-0.5, 0, -1),
        "output": (-0.5, 0, -1),
        "vector": (0, 0, 0),
    },
    ("ntk", "sgd"): {
        "input": (0, 0, 0),
        "hidden": (-0.5, 0, -1),
        "output": (-0.5, 0, -1),
        "vector": (0, 0, 0),
    },
    ("mup", "adam"): {
        "input": (0, 0, 0),
        "hidden": (-0.5, 0, -1),
        "output": (0, -1, 0),
        "vector": (0, 0, 0),
    },
    ("mup", "sgd"): {
        "input": (0, 0, 1),
        "hidden": (-0.5, 0, 0),
        "output": (0, -1, 1),
        "vector": (0, 0, 1),
    },
}
# Adam eps exponents (eps scaling on): μP all -1; NTK -1/2 except the readout; SP 0
EPS = {
    "sp": dict(input=0, hidden=0, output=0, vector=0),
    "ntk": dict(input=-0.5, hidden=-0.5, output=0, vector=-0.5),
    "mup": dict(input=-1, hidden=-1, output=-1, vector=-1),
}
ETA, EPS0, WD = 0.02, 1e-8, 1e-4


def _measured_std(t: torch.Tensor) -> float:
    return float(t.detach().float().std())


def _check_model(model, plan, scheme, family, base_fan_in, m, m_l, alpha, optim):
    rows = TABLE[(scheme, family)]
    tensors = dict(model.named_parameters())
    for pp in plan.params:
        init_e, _, lr_e = rows[pp.role]
        m_p = 1.0 if pp.name == "out.bias" else m  # a finite-length vector does not scale
        in_block = pp.block is not None
        # depth rules: adam lr m_L^(alpha-1), sgd m_L^(2alpha-1), eps m_L^-alpha (alpha>0)
        d_lr = (
            (m_l ** ((alpha - 1) if family == "adam" else (2 * alpha - 1)))
            if (alpha and in_block)
            else 1.0
        )
        d_eps = m_l ** (-alpha) if (alpha and in_block) else 1.0
        eff = effective(pp, optim)
        assert eff.lr == pytest.approx(ETA * m_p**lr_e * d_lr, rel=1e-12), pp.name
        if family == "adam":
            assert eff.eps == pytest.approx(
                EPS0 * m_p ** EPS[scheme][pp.role] * d_eps, rel=1e-12
            ), pp.name
        want_wd = 0.0 if pp.role == "vector" else WD / eff.lr  # independent decay
        assert eff.weight_decay == pytest.approx(want_wd, rel=1e-12), pp.name
        t = tensors[pp.name]
        if pp.role == "vector":
            assert pp.init in ("ones", "zeros")
            assert torch.all(t == (1.0 if pp.init == "ones" else 0.0))
            continue
        fan_in0 = base_fan_in[pp.name]
        want = (1.0 / math.sqrt(fan_in0)) * m**init_e
        assert pp.init_std == pytest.approx(want, rel=1e-12), pp.name
        if t.numel() >= 4096:
            assert _measured_std(t) == pytest.approx(want, rel=0.06), pp.name


@pytest.mark.parametrize("scheme", ["sp", "ntk", "mup"])
@pytest.mark.parametrize("family", ["adam", "sgd"])
@pytest.mark.parametrize(
    "width,depth,base_depth,alpha", [(64, 2, 2, 0.0), (256, 4, 2, 0.5), (512, 2, 1, 1.0)]
)
def test_mlp_plan_matches_table(scheme, family, width, depth, base_depth, alpha):
    base = 64
    cfg = MLPConfig(width=width, depth=depth, in_dim=48, out_dim=10, residual=True)
    pcfg = ParamConfig(
        scheme=scheme, base_width=base, base_depth=base_depth, depth_alpha=alpha, zero_readout=False
    )
    model, plan = build_model(cfg, pcfg, optim_family=family, seed=1)
    m, m_l = width / base, depth / base_depth
    base_fan_in = {p.name: (48 if p.name.startswith("inp") else base) for p in plan.params}
    optim = OptimConfig(
        name="adamw" if family == "adam" else "sgd", lr=ETA, eps=EPS0, weight_decay=WD
    )
    _check_model(model, plan, scheme, family, base_fan_in, m, m_l, alpha, optim)
    want_out = 1.0 * (m**-1 if scheme == "mup" else 1.0)
    assert model.out.mult == pytest.approx(want_out)
    want_branch = m_l**-alpha
    assert all(b.branch == pytest.approx(want_branch) for b in model.blocks)


@pytest.mark.parametrize("scheme", ["sp", "ntk", "mup"])
@pytest.mark.parametrize("family", ["adam", "sgd"])
@pytest.mark.parametrize("width,depth,alpha", [(128, 2, 0.0), (256, 4, 1.0)])
def test_gpt_plan_matches_table(scheme, family, width, depth, alpha):
    base, base_depth, heads = 64, 2, 4
    cfg = GPTConfig(
        width=width, depth=depth, n_heads=heads, vocab_size=128, seq_len=16, mlp="swiglu"
    )
    pcfg = ParamConfig(
        scheme=scheme,
        base_width=base,
        base_depth=base_depth,
        depth_alpha=alpha,
        zero_readout=False,
        zero_query=False,
    )
    model, plan = build_model(cfg, pcfg, optim_family=family, seed=2)
    m, m_l = width / base, depth / base_depth
    d_ff0 = 4 * base
    base_fan_in = {}
    for p in plan.params:
        base_fan_in[p.name] = (
            1 if p.name == "wte.weight" else (d_ff0 if "fc_out" in p.name else base)
        )
    optim = OptimConfig(
        name="adamw" if family == "adam" else "sgd", lr=ETA, eps=EPS0, weight_decay=WD
    )
    _check_model(model, plan, scheme, family, base_fan_in, m, m_l, alpha, optim)
    head_dim0, head_dim = base // heads, width // heads
    want_scale = 1 / math.sqrt(head_dim) if scheme != "mup" else math.sqrt(head_dim0) / head_dim
    assert model.blocks[0].attn.probe.scale == pytest.approx(want_scale)
    assert model.lm_head.mult == pytest.approx(m**-1 if scheme == "mup" else 1.0)


def test_n_heads_scaling_keeps_attention_scale():
    """With head_dim fixed (more heads as width grows) μP's 1/d equals SP's 1/sqrt(d) up to
    the constant: the scale does not change with width."""
    cfg = GPTConfig(width=256, head_scaling="n_heads", head_dim=16, n_heads=1, vocab_size=64)
    model, _ = build_model(cfg, ParamConfig(scheme="mup", base_width=64))
    assert model.blocks[0].attn.probe.scale == pytest.approx(1 / 4)


def test_zero_init_readout_and_query_under_mup_only():
    cfg = GPTConfig(width=128, depth=1, vocab_size=64)
    on = dict(zero_readout=True, zero_query=True)  # opt-in (off by default)
    model, plan = build_model(cfg, ParamConfig(scheme="mup", base_width=64, **on))
    assert (
        plan["lm_head.weight"].init == "zeros"
        and plan["blocks.0.attn.q_proj.weight"].init == "zeros"
    )
    assert torch.all(model.lm_head.weight == 0) and torch.all(
        model.blocks[0].attn.q_proj.weight == 0
    )
    _, plan_sp = build_model(cfg, ParamConfig(scheme="sp", base_width=64, **on))
    assert plan_sp["lm_head.weight"].init == "normal"
    _, plan_default = build_model(cfg, ParamConfig(scheme="mup", base_width=64))
    assert plan_default["lm_head.weight"].init == "normal"


def test_orthogonal_init_has_plan_variance_and_equal_singular_values():
    cfg = MLPConfig(width=256, depth=2, in_dim=256)
    model, plan = build_model(cfg, ParamConfig(scheme="sp", base_width=256, init_dist="orthogonal"))
    w = model.blocks[0].fc.weight.detach()
    s = torch.linalg.svdvals(w)
    assert float(s.max() / s.min()) == pytest.approx(1.0, abs=1e-4)
    assert _measured_std(w) == pytest.approx(plan["blocks.0.fc.weight"].init_std, rel=1e-3)


def test_mup_gradients_scale_like_inverse_width():
    """The reason for μP's eps / m: under μP every gradient entry is Θ(1/n) (module docstring
    of muscale.param.rules). Measured slope of log mean|grad| vs log width ≈ -1."""
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    y = torch.randint(0, 10, (64,))
    grads: dict[str, list[float]] = {}
    widths = [256, 1024]
    for w in widths:
        model, plan = build_model(
            MLPConfig(width=w, depth=2, in_dim=16),
            ParamConfig(scheme="mup", base_width=64, zero_readout=False),
            seed=0,
        )
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        for pp in plan.params:
            if pp.name in ("out.bias",):
                continue
            g = dict(model.named_parameters())[pp.name].grad
            grads.setdefault(pp.name, []).append(float(g.abs().mean()))
    assert len(grads) == 7
    for name, (g1, g2) in grads.items():
        slope = math.log(g2 / g1) / math.log(widths[1] / widths[0])
        assert slope == pytest.approx(-1.0, abs=0.2), name
