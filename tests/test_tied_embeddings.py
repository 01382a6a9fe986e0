"""Tied input/output embeddings under μP: muscale's form equals microsoft/mup's
``MuSharedReadout`` + ``MuAdam``/``MuSGD``; tying is consistent exactly where TP5 Table 8's
input and output rows agree; the default init gives a sane initial loss; and the logit
change splits into a Θ(1) part (the shared tensor's update) and a Θ(n^-1/2) part (the
initial readout meeting the hidden-state change), the derivation in docs/parametrization.md
"Tied embeddings"."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mup_reference import with_mushared_readout

from muscale.build import build_model
from muscale.models.configs import GPTConfig
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer
from muscale.param.config import InitStd, ParamConfig
from muscale.param.guards import tied_conflicts
from muscale.param.roles import Role
from muscale.param.rules import FAMILIES, SCHEMES, width_rule

needs_mup = pytest.mark.skipif(
    importlib.util.find_spec("mup") is None, reason="microsoft/mup not installed"
)

TIED = GPTConfig(width=128, depth=2, n_heads=4, vocab_size=64, seq_len=16, tie_embeddings=True)


def _batch(vocab: int, b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab, (b, t + 1), generator=g)
    return idx[:, :-1], idx[:, 1:]


def _loss(model, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def _mup_twin(model, cfg: GPTConfig, pcfg: ParamConfig):
    """Our tied model with its readout swapped for mup's MuSharedReadout on the same tensor;
    base shapes from our family at the base width, not rescaled (the weights are μP already;
    mup's default ``rescale_params=True`` would multiply the *embedding* by sqrt(m), mup
    issue #55)."""
    from mup import set_base_shapes

    def at(width: int):
        return with_mushared_readout(
            build_model(dataclasses.replace(cfg, width=width), pcfg)[0], "wte", "lm_head"
        )

    twin = with_mushared_readout(model, "wte", "lm_head")
    set_base_shapes(twin, at(pcfg.base_width), delta=at(2 * pcfg.base_width), rescale_params=False)
    return twin


@needs_mup
@pytest.mark.parametrize("optim_name", ["adam", "sgd"])
def test_tied_equals_mup_mushared_readout(optim_name):
    from mup import MuAdam, MuSGD

    family = "sgd" if optim_name == "sgd" else "adam"
    pcfg = ParamConfig(scheme="mup", base_width=32, scale_eps=False)  # mup leaves eps alone
    ours, plan = build_model(TIED, pcfg, optim_family=family, seed=7)
    twin = _mup_twin(ours, TIED, pcfg)
    assert twin.lm_head.weight is twin.wte.weight
    batch = _batch(TIED.vocab_size, 4, 16)
    # the same function at init: mup divides by width_mult = 4, ours multiplies by 1/4
    torch.testing.assert_close(ours(batch[0]), twin(batch[0]), rtol=1e-5, atol=1e-6)
    lr = 0.05 if family == "sgd" else 1e-2
    opt, _ = make_optimizer(ours, plan, OptimConfig(name=optim_name, lr=lr, betas=[0.9, 0.95]))
    if family == "adam":
        mopt = MuAdam(twin.parameters(), lr=lr, betas=(0.9, 0.95))
    else:
        mopt = MuSGD(twin.parameters(), lr=lr)
    ours_lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    twin_lr = {id(p): g["lr"] for g in mopt.param_groups for p in g["params"]}
    twin_params = dict(twin.named_parameters())
    for name, p in ours.named_parameters():
        assert ours_lr[id(p)] == pytest.approx(twin_lr[id(twin_params[name])], rel=1e-12), name
    # the shared tensor takes the input row: Adam LR m^0, SGD LR m^+1 (m = 4)
    assert ours_lr[id(ours.wte.weight)] == pytest.approx(lr * (4.0 if family == "sgd" else 1.0))
    for _ in range(2):  # two steps: Adam's second step uses both moments
        for model, o in ((ours, opt), (twin, mopt)):
            o.zero_grad()
            _loss(model, batch).backward()
            o.step()
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p, twin_params[name], rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(ours(batch[0]), twin(batch[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tying_is_consistent_where_input_and_output_rows_agree(scheme):
    """One tensor can follow one rule: tying is width-consistent iff TP5 Table 8's input and
    output rows agree on the init and LR exponents (the readout keeps its own forward
    multiplier). They agree under μP, for Adam and SGD alike; SP and NTK differ (the guards
    warn and reject; tests/test_coord_guards.py)."""
    for family in FAMILIES:
        inp, out = (width_rule(scheme, r, family) for r in (Role.INPUT, Role.OUTPUT))
        agree = (inp.init, inp.lr, inp.eps) == (out.init, out.lr, out.eps)
        assert agree == (scheme == "mup"), (scheme, family, inp, out)
    # the guard reads the same table: NTK's LR conflict is an error, SP's init one a warning
    assert (
        tied_conflicts(scheme)
        == {"mup": set(), "sp": {"init"}, "ntk": {"init", "lr", "eps"}}[scheme]
    )


def test_tied_default_init_gives_a_sane_initial_loss():
    """The shared tensor's default base std is the readout's 1/sqrt(n0), width-independent;
    the initial loss is then near ln V at every width. With the embedding's std 1 the
    readout meets each token's own row and the initial loss is ~n0/2 nats."""
    vocab, base = 256, 64
    batch = _batch(vocab, 2, 16)
    for width in (64, 256, 1024):
        cfg = GPTConfig(width=width, depth=1, vocab_size=vocab, seq_len=16, tie_embeddings=True)
        model, plan = build_model(cfg, ParamConfig(base_width=base), seed=0)
        assert plan["wte.weight"].init_std == pytest.approx(base**-0.5)
        assert float(model.wte.weight.detach().std()) == pytest.approx(base**-0.5, rel=0.02)
        with torch.no_grad():
            assert abs(float(_loss(model, batch)) - math.log(vocab)) < 1.0, width
        std1, plan1 = build_model(
            cfg, ParamConfig(base_width=base, init_std=InitStd(input=1.0)), seed=0
        )
        assert plan1["wte.weight"].init_std == 1.0  # an explicit std still wins
        with torch.no_grad():
            assert float(_loss(std1, batch)) > 20.0, width
    # untied models keep the embedding's default std 1
    _, untied = build_model(dataclasses.replace(cfg, tie_embeddings=False), ParamConfig())
    assert untied["wte.weight"].init_std == 1.0


def test_tied_mup_at_base_width_is_tied_sp():
    cfg = dataclasses.replace(TIED, width=64)
    m_mup, p_mup = build_model(cfg, ParamConfig(scheme="mup", base_width=64), seed=3)
    with pytest.warns(UserWarning, match="tie_embeddings"):
        m_sp, p_sp = build_model(cfg, ParamConfig(scheme="sp", base_width=64), seed=3)
    for (n1, t1), (n2, t2) in zip(m_mup.named_parameters(), m_sp.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(t1, t2), n1
    assert [(p.init_std, p.lr_scale) for p in p_mup.params] == [
        (p.init_std, p.lr_scale) for p in p_sp.params
    ]
    assert p_mup.multipliers == p_sp.multipliers


def _logit_change_parts(width: int, seed: int, lr_div: float) -> tuple[np.ndarray, np.ndarray]:
    """mean |mult·(W_t - W_0)·h_t| and mean |mult·W_0·(h_t - h_0)| at t = 1..3 (the two
    parts of the logit change z_t - z_0; h is the readout's input)."""
    cfg = GPTConfig(width=width, depth=1, vocab_size=256, seq_len=16, tie_embeddings=True)
    model, plan = build_model(cfg, ParamConfig(base_width=64), seed=seed)
    opt, _ = make_optimizer(model, plan, OptimConfig(name="adam", lr=0.01))
    w = model.wte.weight
    if lr_div != 1.0:  # the broken control: the shared tensor given a hidden-like LR
        g0 = next(g for g in opt.param_groups if any(p is w for p in g["params"]))
        g0["params"] = [p for p in g0["params"] if p is not w]
        opt.add_param_group({**g0, "params": [w], "lr": g0["lr"] / lr_div})
    hs: list[torch.Tensor] = []
    model.lm_head.register_forward_pre_hook(lambda m, a: hs.append(a[0].detach()))
    batch = _batch(256, 2, 16)
    w0, mult = w.detach().clone(), model.lm_head.mult
    dw_h = []
    for t in range(4):
        loss = _loss(model, batch)
        dw_h.append(float((F.linear(hs[-1], w.detach() - w0) * mult).abs().mean()))
        if t < 3:
            opt.zero_grad()
            loss.backward()
            opt.step()
    w0_dh = [float((F.linear(h - hs[0], w0) * mult).abs().mean()) for h in hs[1:]]
    return np.array(dw_h[1:]), np.array(w0_dh)


def _slopes(widths, lr_div: float = 1.0, seeds: int = 3) -> tuple[float, float]:
    """Slopes of log2(part) on log2(width), averaged over steps and seeds."""
    out = []
    for seed in range(seeds):
        parts = [
            _logit_change_parts(w, seed, lr_div(w) if callable(lr_div) else lr_div) for w in widths
        ]
        x = np.log2(widths)
        out.append(
            [
                np.mean([np.polyfit(x, np.log2([p[k][t] for p in parts]), 1)[0] for t in range(3)])
                for k in (0, 1)
            ]
        )
    return tuple(np.mean(out, axis=0))


def test_logit_change_is_a_flat_update_term_plus_an_incoherent_init_term():
    """z_t - z_0 = (α/m)(W_t - W_0) h_t + (α/m) W_0 (h_t - h_0). The first is the shared
    tensor's Adam update, Θ(1) entries aligned with h: n terms / m = Θ(1), slope 0. The
    second is the initial tensor against the hidden state's change: aligned only through
    the few rows the batch touches, a random sum of n terms / m = Θ(n^-1/2), slope -1/2.
    A hidden-like LR on the shared tensor (m^-1) drops the first part to slope -1."""
    widths = [64, 128, 256, 512]
    dw_h, w0_dh = _slopes(widths)
    assert -0.3 < dw_h < 0.3, dw_h
    assert -0.65 < w0_dh < -0.3, w0_dh
    broken, _ = _slopes(widths, lr_div=lambda w: w / 64, seeds=1)
    assert broken < -0.7, broken


@pytest.mark.parametrize("width", [64, 128])
def test_inferred_tied_embedding_of_a_transformers_model(width):
    """muscale.auto finds a tied embedding (GPT-2, ``tie_word_embeddings=True``) at any
    width, the base width included: the tensor gets the readout's default std and the
    readout its multiplier alpha_out/m."""
    transformers = pytest.importorskip("transformers")
    from muscale.hf import build

    cfg = transformers.GPT2Config(
        vocab_size=256, n_layer=1, n_embd=64, n_head=4, n_positions=16, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    x, _ = _batch(256, 2, 16)
    logits = {}
    for a_out in (1.0, 2.0):
        model, plan = build(cfg, width=width, base_width=64, seed=0, param={"output_mult": a_out})
        assert plan["hf.transformer.wte.weight"].init_std == pytest.approx(64**-0.5)
        assert plan["hf.transformer.wpe.weight"].init_std == 1.0  # not tied: the input default
        with torch.no_grad():
            logits[a_out] = model(x)
    torch.testing.assert_close(logits[2.0], 2.0 * logits[1.0], rtol=1e-5, atol=1e-6)
