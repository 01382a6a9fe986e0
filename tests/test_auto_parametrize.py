"""``muscale.parametrize``: roles inferred from shapes equal the hand-written ones and
mup's infshapes; plain PyTorch models get μP (coordinate check, mup's LRs and updates)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from anymodels import (
    TRANSFORMER_ROLES,
    PlainTransformer,
    SmallCNN,
    image_batch,
    lm_batch,
)
from mup_reference import with_mureadout
from torch import nn

from muscale.auto import infer, parametrize
from muscale.coord import coord_check
from muscale.errors import UserError
from muscale.models import GPT, MLP
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer
from muscale.param.config import ParamConfig
from muscale.param.plan import shape_info

mup = pytest.importorskip("mup")

UNIT = {"input": 1.0, "output": 1.0, "branch": 1.0, "attn_scale": 1.0}
VARIANTS = [
    MLPConfig(width=96, depth=3, in_dim=20),
    MLPConfig(width=96, depth=2, in_dim=20, bias=False, residual=True),
    GPTConfig(width=128, depth=2, vocab_size=64, seq_len=16),
    GPTConfig(width=128, depth=2, vocab_size=64, seq_len=16, tie_embeddings=True),
    GPTConfig(width=128, depth=2, n_heads=8, q_per_kv=4, vocab_size=64, seq_len=16),
    GPTConfig(width=128, depth=2, vocab_size=64, seq_len=16, mlp="swiglu"),
    GPTConfig(
        width=128, depth=2, vocab_size=64, seq_len=16, norm="layernorm", bias=True, pos="learned"
    ),
    GPTConfig(width=128, depth=3, head_scaling="n_heads", head_dim=16, vocab_size=64, seq_len=16),
]


def _family(cfg):
    cls = GPT if cfg.family == "gpt" else MLP
    return lambda w: cls(dataclasses.replace(cfg, width=w), UNIT)


def _resolve(dim, dims, base):
    return (dims[dim], base[dim]) if isinstance(dim, str) else (dim, dim)


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: f"{c.family}-{id(c) % 997}")
def test_inferred_roles_equal_param_specs(cfg):
    base_width = 32
    model = _family(cfg)(cfg.width)
    hand = model.param_specs()
    shape = shape_info(cfg, ParamConfig(base_width=base_width))
    inf = infer(_family(cfg), width=cfg.width, base_width=base_width)
    assert list(inf.specs) == [n for n, _ in model.named_parameters()]
    assert set(inf.specs) == set(hand)
    for name, h in hand.items():
        s = inf.specs[name]
        assert s.role == h.role, name
        assert s.block == h.block, name
        assert s.tag == (h.tag if h.tag != "query" else None), name  # query: not inferable
        for a, b in ((s.fan_in, h.fan_in), (s.fan_out, h.fan_out)):
            assert _resolve(a, inf.dims, inf.base_dims) == _resolve(b, shape.dims, shape.base_dims)
    # the readout is the module that applies 1/m (the tied one reads the embedding matrix)
    assert inf.readouts == (["lm_head"] if cfg.family == "gpt" else ["out"])


@pytest.mark.parametrize("cfg", VARIANTS[:1] + VARIANTS[2:5], ids=lambda c: c.family)
def test_inferred_width_mults_equal_mup_infshapes(cfg):
    from mup import set_base_shapes

    base_width = 32
    _, plan = parametrize(_family(cfg), width=cfg.width, base_width=base_width, device="meta")
    model = _family(cfg)(cfg.width)
    set_base_shapes(
        model,
        _family(cfg)(base_width),
        delta=_family(cfg)(base_width * 2),
        rescale_params=False,
        do_assert=False,  # mup would want its MuReadout; only the shapes matter here
    )
    for name, p in model.named_parameters():
        pp = plan[name]
        ninf = p.infshape.ninf()
        assert (pp.role == "hidden") == (ninf == 2), name
        assert pp.width_mult == pytest.approx(p.infshape.width_mult()), name


def test_ambiguous_tensor_is_named():
    with pytest.raises(UserError, match=r"role of pos \(a raw \(16, 64\) parameter"):
        infer(PlainTransformer, width=64, base_width=32)
    inf = infer(PlainTransformer, width=64, base_width=32, roles=TRANSFORMER_ROLES)
    assert inf.specs["pos"].role.value == "input"

    class Odd(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.lin = nn.Linear(8, int(w**0.5) * 4)  # grows like sqrt(width)

    with pytest.raises(UserError, match=r"lin\.weight .*not proportional to width"):
        infer(Odd, width=256, base_width=16)


def test_head_dim_growth_without_a_reachable_scale_is_refused():
    with pytest.raises(UserError, match="scale the number of heads"):
        parametrize(
            PlainTransformer,
            width=64,
            base_width=32,
            roles=TRANSFORMER_ROLES,
            head_dim=lambda w: w // 4,
        )


def test_mup_at_base_width_is_the_plain_model_function():
    """At m = 1 every multiplier is 1: μP and SP plans give the same function."""
    a, pa = parametrize(CNN_BUILD, width=32, base_width=32, param=NO_ZERO, seed=1)
    b, _ = parametrize(CNN_BUILD, width=32, base_width=32, scheme="sp", param=NO_ZERO, seed=1)
    x, _ = image_batch()
    torch.testing.assert_close(a(x), b(x))
    assert pa.multipliers["output"] == 1.0


CNN_BUILD = SmallCNN
NO_ZERO = {"zero_readout": False, "zero_query": False, "scale_eps": False}


def _mup_twin(model, build, base_width, readout):
    """``model`` with its readout swapped for mup's MuReadout (same weights), base shapes
    from plain builds at the base width and twice it."""
    from mup import set_base_shapes

    twin = with_mureadout(model, readout, drop_hooks=True)
    set_base_shapes(
        twin,
        with_mureadout(build(base_width), readout, drop_hooks=True),
        delta=with_mureadout(build(2 * base_width), readout, drop_hooks=True),
        rescale_params=False,
    )
    return twin


CASES = {
    "transformer": (PlainTransformer, TRANSFORMER_ROLES, "head", lm_batch, 128),
    "cnn": (SmallCNN, None, "head", image_batch, 128),
}


def _loss(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("optim_name", ["adam", "sgd"])
def test_matches_microsoft_mup(case, optim_name):
    from mup import MuAdam, MuSGD

    build, roles, readout, batch_fn, width = CASES[case]
    family = "sgd" if optim_name == "sgd" else "adam"
    ours, plan = parametrize(
        build, width=width, base_width=32, roles=roles, optim_family=family, param=NO_ZERO, seed=2
    )
    twin = _mup_twin(ours, build, 32, readout)
    x, y = batch_fn()
    torch.testing.assert_close(ours(x), twin(x), rtol=1e-5, atol=1e-6)
    lr = 0.05 if family == "sgd" else 1e-3
    opt, _ = make_optimizer(ours, plan, OptimConfig(name=optim_name, lr=lr, betas=[0.9, 0.999]))
    mopt = (MuSGD if family == "sgd" else MuAdam)(twin.parameters(), lr=lr)
    ours_lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    twin_lr = {id(p): g["lr"] for g in mopt.param_groups for p in g["params"]}
    twin_params = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        assert ours_lr[id(p)] == pytest.approx(twin_lr[id(twin_params[name])], rel=1e-12), name
    for model, o in ((ours, opt), (twin, mopt)):
        _loss(model(x), y).backward()
        o.step()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p, twin_params[name], rtol=1e-5, atol=1e-7, msg=name)
    torch.testing.assert_close(ours(x), twin(x), rtol=1e-4, atol=1e-6)


POINTS = {
    "transformer": {
        "tok": "embed",
        "blocks.0.attn.proj": "attn_out",
        "blocks.1.mlp": "mlp_out",
        "blocks.1": "residual",
        "head": "logits",
    },
    "cnn": {"conv1": "embed", "conv2": "hidden", "head": "logits"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_plain_models_pass_the_mup_coordinate_check(case):
    build, roles, _, batch_fn, _ = CASES[case]

    def factory(width, seed):
        return parametrize(build, width=width, base_width=32, roles=roles, seed=seed)

    rep = coord_check(
        factory,
        [64, 128, 256, 512],  # 32-256 sits at the edge of the band (finite size), as for GPT
        batch=batch_fn(),
        optimizer=OptimConfig(name="adam", lr=1e-2),
        points=POINTS[case],
        seeds=3,
        expect="mup",
    )
    assert rep.passed, rep.verdict()


def test_top_level_parametrize_is_the_library_function():
    import muscale

    x, _ = image_batch()
    a, pa = muscale.parametrize(SmallCNN, width=64, base_width=32, param=NO_ZERO, seed=4)
    b, pb = parametrize(SmallCNN, width=64, base_width=32, param=NO_ZERO, seed=4)
    assert pa == pb
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
