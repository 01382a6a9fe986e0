"""The seed-batched coordinate check (``collect(batch_seeds=True)``, muscale.coord.batched)
records the same numbers as the sequential one, and falls back to it, saying why, where
batching would not be the same protocol.

Each seed's model is built exactly as in the sequential path, so the two paths start from
identical weights; the batched one runs ``vmap``'d matmuls (``bmm`` instead of ``mm``), so
the statistics agree to float rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muscale.coord import report
from muscale.coord.run import CoordData, collect, config_factory, synthetic_batch
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

STEPS, SEEDS = 3, 2


def _both(factory, sizes, **kw) -> tuple[CoordData, CoordData]:
    kw = {"steps": STEPS, "seeds": SEEDS, **kw}
    return (
        collect(factory, sizes, batch_seeds=True, **kw),
        collect(factory, sizes, batch_seeds=False, **kw),
    )


def _assert_same(b: CoordData, s: CoordData, rtol: float = 1e-4) -> None:
    """Equal to float rounding (``rtol``: fp32 1e-4; bf16 autocast 1e-2, a few of its ulps
    of 2^-8, since ``bmm`` and ``mm`` round their bf16 outputs differently)."""
    np.testing.assert_allclose(b.level, s.level, rtol=rtol, atol=1e-7)
    # x_t - x_0 cancels digits: its error scales with the level, not with the change
    np.testing.assert_allclose(b.change, s.change, rtol=rtol, atol=rtol * s.level.max() / 10)
    np.testing.assert_allclose(b.loss, s.loss, rtol=rtol / 10)
    eb, es = b.meta["eps"], s.meta["eps"]
    assert (eb is None) == (es is None)
    if es is not None:  # the ε probe reads each seed's row of the stacked Adam state
        assert eb.names == es.names
        np.testing.assert_array_equal(eb.eps, es.eps)
        np.testing.assert_allclose(eb.rms, es.rms, rtol=rtol)
    assert s.meta["seed_batching"] == "sequential"
    assert s.meta["seed_batching_reason"] == "batch_seeds=False"


def _verdicts(b: CoordData, s: CoordData, expect: str = "mup") -> None:
    rb, rs = report(b, expect=expect), report(s, expect=expect)
    assert rb.status == rs.status
    assert [x.status for x in rb.slopes] == [x.status for x in rs.slopes]
    for x, y in zip(rb.slopes, rs.slopes, strict=True):
        assert x.slope == pytest.approx(y.slope, abs=1e-3)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_gpt_batched_equals_sequential(name):
    """GQA GPT with the attention-logit probe, μP Adam and SGD (fused steps, plan groups)."""
    mcfg = GPTConfig(width=32, depth=2, n_heads=4, q_per_kv=2, vocab_size=64, seq_len=16)
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=32), family=name)
    ocfg = OptimConfig(name=name, lr=0.02 if name == "adam" else 0.5)
    batch = synthetic_batch(mcfg, batch_size=2, seq_len=16)
    b, s = _both(factory, [32, 64], batch=batch, optimizer=ocfg, seeds=3)
    assert b.meta["seed_batching"] == "vmap" and b.meta["seed_batching_reason"] is None
    assert any(p.kind == "attn_logits" for p in b.points)
    assert not np.allclose(b.level[:, 0], b.level[:, 1])  # the seeds are different models
    _assert_same(b, s)
    _verdicts(b, s)


@pytest.mark.parametrize(
    ("kw", "axis", "sizes"),
    [
        ({"tie_embeddings": True, "pos": "learned", "mlp": "swiglu"}, "width", [32, 64]),
        ({"norm": "layernorm", "bias": True}, "depth", [2, 4]),
    ],
    ids=["tied-learned-swiglu", "depth"],
)
def test_gpt_variants_batched_equal_sequential(kw, axis, sizes):
    """A weight shared by two modules (functional_call keeps it tied), biases, and the depth
    axis (new parameter names at every size)."""
    mcfg = GPTConfig(width=32, depth=2, n_heads=4, vocab_size=64, seq_len=16, **kw)
    extra = {"depth_alpha": 0.5} if axis == "depth" else {}
    factory = config_factory(
        mcfg, ParamConfig(scheme="mup", base_width=32, **extra), family="adam", axis=axis
    )
    batch = synthetic_batch(mcfg, batch_size=2, seq_len=16)
    ocfg = OptimConfig(name="adamw", lr=0.02, weight_decay=0.1)
    b, s = _both(factory, sizes, batch=batch, optimizer=ocfg, axis=axis)
    assert b.meta["seed_batching"] == "vmap", b.meta["seed_batching_reason"]
    _assert_same(b, s)


def test_mlp_adamw_and_bf16_batched_equals_sequential():
    mcfg = MLPConfig(width=32, depth=2, in_dim=8, out_dim=5)
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=32))
    batch = synthetic_batch(mcfg, batch_size=16)
    ocfg = OptimConfig(name="adamw", lr=0.02, weight_decay=0.1)
    b, s = _both(factory, [32, 128], batch=batch, optimizer=ocfg)
    assert b.meta["seed_batching"] == "vmap"
    _assert_same(b, s)
    b16, s16 = _both(factory, [32, 128], batch=batch, optimizer=ocfg, precision="bf16")
    assert b16.meta["seed_batching"] == "vmap"
    assert not np.allclose(b16.level, b.level)  # autocast did run inside vmap
    _assert_same(b16, s16, rtol=1e-2)
    _verdicts(b16, s16)


@pytest.mark.parametrize("optim", ["adam", "sgd"])
@pytest.mark.parametrize("model", ["mup-mlp", "mup-gpt"])
def test_microsoft_mup_model_batched_equals_sequential(model, optim):
    """MuReadout reads ``weight.infshape`` in its forward and MuAdam/MuSGD group the
    Parameters by it: both must see the user's Parameters as in the sequential path."""
    pytest.importorskip("mup")
    from tools import calibrate_coord_check as cal

    sizes = (32, 64) if model == "mup-gpt" else (64, 128, 256)
    case = cal.Case(model=model, optim=optim, sizes=sizes)
    factory, optimizer, batch, points = cal._mup_factory(case)
    b, s = _both(factory, list(sizes), batch=batch, optimizer=optimizer, points=points)
    assert b.meta["seed_batching"] == "vmap", b.meta["seed_batching_reason"]
    _assert_same(b, s)
    assert b.family == s.family == optim


class _Net(nn.Module):
    """in -> width -> width -> out, an optional module after the hidden layer, and a spare
    layer the forward never uses (its parameters get no gradient)."""

    def __init__(self, width: int, extra: nn.Module | None = None) -> None:
        super().__init__()
        self.inp, self.h, self.out = (
            nn.Linear(8, width),
            nn.Linear(width, width),
            nn.Linear(width, 5),
        )
        self.extra = extra or nn.Identity()
        self.spare = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.extra(torch.relu(self.h(torch.relu(self.inp(x))))))


class _ItemNet(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y * 2 if y.sum().item() > -1e9 else y  # data-dependent control flow


class _ClippedAdam(torch.optim.Adam):
    """A subclass with its own ``step`` (here: a global norm, not element-wise)."""

    def step(self, closure=None):  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        return super().step(closure)


class _PlainAdam(torch.optim.Adam):
    """A subclass that keeps Adam's step: still element-wise."""


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)


_BATCH = (torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 5)
_POINTS = ["inp", "h", "out"]


def test_unused_parameter_gets_no_gradient_in_either_path():
    """A parameter outside the forward has ``.grad = None`` (no step, no weight decay, no
    Adam state), as in the sequential path; zeros would decay it and give it a state."""
    b, s = _both(lambda w: _Net(w), [16, 32], batch=_BATCH, optimizer=_adamw, points=_POINTS)
    assert b.meta["seed_batching"] == "vmap"
    _assert_same(b, s)
    assert not any(n.startswith("spare") for n in b.meta["eps"].names)


@pytest.mark.parametrize(
    ("factory", "optimizer", "reason"),
    [
        (lambda w: _Net(w, nn.BatchNorm1d(w)), _adamw, "updates buffers in place"),
        (lambda w: _Net(w, nn.Dropout(0.1)), _adamw, "random operation"),
        (lambda w: _ItemNet(w), _adamw, ".item()"),
        (
            lambda w: _Net(w),
            lambda m: torch.optim.RMSprop(m.parameters(), lr=0.01),
            "not an element-wise",
        ),
        (lambda w: _Net(w), lambda m: _ClippedAdam(m.parameters(), lr=0.01), "not an element"),
    ],
    ids=["batchnorm", "dropout", "item", "rmsprop", "own-step"],
)
def test_unbatchable_falls_back_and_says_so(factory, optimizer, reason):
    b, s = _both(factory, [16, 32], batch=_BATCH, optimizer=optimizer, points=_POINTS)
    assert b.meta["seed_batching"] == "sequential"
    assert reason in b.meta["seed_batching_reason"]
    np.testing.assert_array_equal(b.level, s.level)  # the very same sequential run
    np.testing.assert_array_equal(b.change, s.change)


def test_one_seed_runs_sequentially():
    d = collect(
        lambda w: _Net(w),
        [16, 32],
        batch=_BATCH,
        optimizer=_adamw,
        points=_POINTS,
        seeds=1,
        steps=2,
        batch_seeds=True,
    )
    assert d.meta["seed_batching"] == "sequential"
    assert d.meta["seed_batching_reason"] == "one seed"


def test_sequential_is_the_default():
    d = collect(lambda w: _Net(w), [16, 32], batch=_BATCH, optimizer=_adamw, points=_POINTS)
    assert d.meta["seed_batching"] == "sequential"
    assert d.meta["seed_batching_reason"] == "batch_seeds=False"


def test_optimizer_subclass_that_keeps_the_step_is_batched():
    opt = lambda m: _PlainAdam(m.parameters(), lr=0.01)  # noqa: E731
    b, s = _both(lambda w: _Net(w), [16, 32], batch=_BATCH, optimizer=opt, points=_POINTS)
    assert b.meta["seed_batching"] == "vmap"
    _assert_same(b, s)


# --- the calibration subset through both paths (tests/test_coord_calibration.py's cases) ----


def _calibration_cases():
    from tools import calibrate_coord_check as cal

    w, gw = (64, 128, 256, 512), (32, 64, 128, 256)
    return [
        cal.Case(model="mlp", optim="adam", sizes=w),
        cal.Case(model="mlp", optim="sgd", sizes=w),
        cal.Case(model="gpt", optim="adam", sizes=gw),
        cal.Case(model="mup-gpt", optim="adam", sizes=gw),
        cal.Case(model="mlp", optim="adam", sizes=w, bug="readout_no_1/m"),
        cal.Case(model="mlp", optim="sgd", sizes=w, bug="hidden_lr_not/m"),
        cal.Case(model="gpt", optim="adam", sizes=gw, bug="attn_1/sqrt(d)"),
        cal.Case(model="mlp", optim="adam", sizes=w, scheme="sp"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", _calibration_cases(), ids=lambda c: c.name)
def test_calibration_cases_same_verdict_both_paths(case):
    """Correct models PASS and broken ones FAIL on the same module kinds, batched or not,
    with the same ε-probe verdict."""
    from tools import calibrate_coord_check as cal

    if case.model.startswith("mup-"):
        pytest.importorskip("mup")
        factory, optimizer, batch, points = cal._mup_factory(case)
    else:
        (factory, optimizer, batch), points = cal._muscale_factory(case), None
    kw = {"steps": case.steps, "seeds": case.seeds, "points": points, "axis": case.axis}
    b, s = _both(factory, list(case.sizes), batch=batch, optimizer=optimizer, **kw)
    assert b.meta["seed_batching"] == "vmap", b.meta["seed_batching_reason"]
    rb, rs = cal.judge(case, b), cal.judge(case, s)
    assert rb.status == rs.status == ("pass" if case.correct else "fail"), rb.verdict()
    assert [x.status for x in rb.slopes] == [x.status for x in rs.slopes]
    assert (rb.eps and rb.eps.status) == (rs.eps and rs.eps.status)
