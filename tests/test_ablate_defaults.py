"""tools/ablate_defaults.py: each variant builds the model it claims to (one factor changed).

The expected values are written here from the definitions, not read from the plan code:
μP attention is 1/d normalised to 1/sqrt(d0) at the base width, i.e. sqrt(d0)/d (TP5
Definition 4.1); SP's is 1/sqrt(d); μP's readout multiplier is α_out·n0/n (TP5 Table 8).
"""

from __future__ import annotations

import math

import pytest
import torch

from muscale.build import build_model
from muscale.config import to_dict
from muscale.hydra_app import compose
from tools import ablate_defaults as ab

BASE, WIDTH, N_HEADS = 32, 128, 4  # GPTConfig's default n_heads; head_dim = width / 4


def _build(name: str, width: int, seed: int = 0) -> tuple[torch.nn.Module, dict[str, float]]:
    common = ab.common_overrides(10, 16, 2, 1, BASE)
    t = {"variant": name, "width": width, "seed": seed, "lr": 2.0**-6}
    cfg = compose("train", ab.trial_overrides(t, common, BASE))
    d = to_dict(cfg)
    model_d = {**d["model"], "vocab_size": 64, "seq_len": 16}
    torch.manual_seed(seed)
    model, plan = build_model(model_d, d["param"], seed=seed)
    return model, plan.multipliers


def _attn_scales(model: torch.nn.Module) -> set[float]:
    return {m.probe.scale for m in model.modules() if hasattr(m, "probe")}


def test_every_variant_composes_and_changes_only_its_factor() -> None:
    d0, d = BASE // N_HEADS, WIDTH // N_HEADS
    mup_attn = math.sqrt(d0) / d  # 1/d, equal to 1/sqrt(d0) at the base width
    expect = {
        "sp": {"attn_scale": 1 / math.sqrt(d), "output": 1.0, "input": 1.0},
        "mup": {"attn_scale": mup_attn, "output": BASE / WIDTH, "input": 1.0},
        "mup_attn_sqrtd": {"attn_scale": 1 / math.sqrt(d), "output": BASE / WIDTH},
        "mup_nheads": {"attn_scale": 1 / math.sqrt(8), "output": BASE / WIDTH},
        "sp_nheads": {"attn_scale": 1 / math.sqrt(8), "output": 1.0},
        "mup_aattn0.5": {"attn_scale": 0.5 * mup_attn},
        "mup_aattn2": {"attn_scale": 2 * mup_attn},
        "mup_aout0.5": {"output": 0.5 * BASE / WIDTH, "attn_scale": mup_attn},
        "mup_aout2": {"output": 2 * BASE / WIDTH},
        "mup_ain0.5": {"input": 0.5, "attn_scale": mup_attn},
        "mup_ain2": {"input": 2.0},
    }
    for name in ab.VARIANTS:
        model, mults = _build(name, WIDTH)
        for key, want in expect.get(name, {}).items():
            assert mults[key] == pytest.approx(want, rel=1e-12), (name, key)
        # the model runs with the plan's attention scale
        scales = _attn_scales(model)
        assert len(scales) == 1 and scales.pop() == pytest.approx(mults["attn_scale"]), name


def test_attn_sqrtd_is_one_over_sqrt_d_at_every_width() -> None:
    for width in (32, 64, 256):
        _, mults = _build("mup_attn_sqrtd", width)
        assert mults["attn_scale"] == pytest.approx(1 / math.sqrt(width // N_HEADS), rel=1e-12)
        _, mup = _build("mup", width)
        ratio = mults["attn_scale"] / mup["attn_scale"]
        assert ratio == pytest.approx(math.sqrt(width / BASE), rel=1e-12)


def test_n_heads_variant_grows_heads_not_head_dim() -> None:
    model, _ = _build("mup_nheads", WIDTH)
    attn = next(m for m in model.modules() if hasattr(m, "probe"))
    assert (attn.n_heads, attn.head_dim) == (WIDTH // 8, 8)


def test_embedding_std_variants_draw_the_std_they_name() -> None:
    for name, std in (("mup", 1.0), ("mup_emb0.5", 0.5), ("mup_emb2", 2.0)):
        model, _ = _build(name, WIDTH)
        w = model.wte.weight.detach()
        assert w.std().item() == pytest.approx(std, rel=0.05), name


def test_base_as_variants_equal_their_stand_in_at_the_base_width() -> None:
    for v in ab.VARIANTS.values():
        if v.base_as is None:
            continue
        a, ma = _build(v.name, BASE, seed=3)
        b, mb = _build(v.base_as, BASE, seed=3)
        assert ma == mb, v.name
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys(), v.name
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=f"{v.name}: {k}")


def test_plan_centres_the_grid_and_skips_base_stand_ins() -> None:
    trials = ab.plan_trials(["sp", "mup_nheads"], [32, 128], [0, 1], 2, 300, BASE)
    sp128 = sorted(
        {math.log2(t["lr"]) for t in trials if t["variant"] == "sp" and t["width"] == 128}
    )
    assert sp128 == [-9, -8, -7, -6, -5]
    nh = {t["width"] for t in trials if t["variant"] == "mup_nheads"}
    assert nh == {128}
    assert len(trials) == 2 * 5 * 2 + 5 * 2


def test_summary_best_lr_delta_and_stand_in() -> None:
    rows = []
    loss = {  # (variant, width, seed, log2 lr) -> loss
        ("sp", 32, 0): {-7: 3.0, -6: 2.5, -5: 2.7},
        ("sp", 32, 1): {-7: 3.1, -6: 2.7, -5: 2.6},
        ("mup", 32, 0): {-7: 3.0, -6: 2.5, -5: 2.7},
        ("mup", 32, 1): {-7: 3.1, -6: 2.7, -5: 2.6},
        ("mup_nheads", 128, 0): {-7: 2.4, -6: 2.2, -5: None},
    }
    for (v, w, s), curve in loss.items():
        for e, val in curve.items():
            rows.append({"variant": v, "width": w, "seed": s, "lr": 2.0**e, "loss": val})
    cells = {(c["variant"], c["width"]): c for c in ab.summarise(rows, BASE)}
    sp = cells[("sp", 32)]
    assert sp["best_mean"] == pytest.approx(2.55)  # seed bests 2.5 and 2.6
    assert sp["best_sd"] == pytest.approx(math.sqrt(0.005))
    assert sp["lr_best"] == 2.0**-6  # averaged curve: 2.6 at 2^-6, 2.65 at 2^-5
    assert cells[("mup", 32)]["delta_sp"] == pytest.approx(0.0)
    assert ab.verdict(cells[("mup", 32)]) == "within noise"
    stand = cells[("mup_nheads", 32)]
    assert stand["stand_in"] and stand["best_mean"] == pytest.approx(2.55)
    assert stand["delta_mup"] == pytest.approx(0.0)
    assert cells[("mup_nheads", 128)]["lr_best"] == 2.0**-6  # the diverged LR is not a best
    assert "base width 32: max |loss(μP) − loss(SP)| over 6 shared trials = 0" in ab.base_check(
        rows, BASE
    )


def test_unknown_variant_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert ab.main(["--variants", "sp,nope", "--summary-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "mup_attn_sqrtd" in err
