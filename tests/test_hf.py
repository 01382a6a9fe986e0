"""Hugging Face causal LMs under μP (local configs, no downloads), export to Granite and
import back."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from muscale.build import build_model  # noqa: E402
from muscale.cli.main import main as cli  # noqa: E402
from muscale.coord import coord_check  # noqa: E402
from muscale.errors import UserError  # noqa: E402
from muscale.hf import build  # noqa: E402
from muscale.hf.export import OPTIM_FILE, export_checkpoint, hf_param_groups  # noqa: E402
from muscale.hf.load import load_hf_into  # noqa: E402
from muscale.models.configs import GPTConfig  # noqa: E402
from muscale.optim.config import OptimConfig  # noqa: E402
from muscale.optim.optimizer import make_optimizer  # noqa: E402
from muscale.param.config import ParamConfig  # noqa: E402
from muscale.train.checkpoint import save_checkpoint  # noqa: E402

transformers.logging.set_verbosity_error()
V = 64


def _configs():
    from transformers import (
        GPT2Config,
        GPTNeoXConfig,
        GraniteConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    common = dict(vocab_size=V, num_hidden_layers=2, hidden_size=64, num_attention_heads=4)
    ids = dict(bos_token_id=0, eos_token_id=0)
    return {
        "llama": LlamaConfig(**common, intermediate_size=128, num_key_value_heads=2, **ids),
        "qwen2": Qwen2Config(**common, intermediate_size=128, num_key_value_heads=2, **ids),
        "mistral": MistralConfig(**common, intermediate_size=128, num_key_value_heads=2, **ids),
        "granite": GraniteConfig(**common, intermediate_size=128, **ids),
        "gpt_neox": GPTNeoXConfig(**common, intermediate_size=256, **ids),
        "gpt2": GPT2Config(
            vocab_size=V,
            n_layer=2,
            n_embd=64,
            n_head=4,
            n_positions=32,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,
            **ids,
        ),
    }


def _batch(b=4, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (b, t + 1), generator=g)
    return idx[:, :-1], idx[:, 1:]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral", "granite", "gpt_neox", "gpt2"])
@pytest.mark.parametrize("head_scaling", ["n_heads", "head_dim"])
def test_plan_and_forward_for_each_architecture(arch, head_scaling):
    cfg = _configs()[arch]
    model, plan = build(cfg, width=128, base_width=32, head_scaling=head_scaling, seed=0)
    roles = {p.name: p.role for p in plan.params}
    assert sum(r == "output" for r in roles.values()) == 1  # the lm_head
    assert sum(r == "input" for r in roles.values()) == (2 if arch == "gpt2" else 1)  # + wpe
    for p in plan.params:
        if p.role == "hidden":
            assert p.width_mult == 4.0 and p.lr_scale == 0.25, p.name
    assert plan.multipliers["output"] == 0.25
    # μP's 1/d attention: 1/sqrt(d0) * (d/d0)^-1; with head_dim fixed it is 1/sqrt(d)
    d, d0 = (16, 16) if head_scaling == "n_heads" else (32, 8)
    assert plan.multipliers["attn_scale"] == pytest.approx(d0**-0.5 * d0 / d)
    attn = [m for n, m in model.named_modules() if n in plan.shape["hooks"]["attention"]]
    assert len(attn) == 2 and all(a.scaling == plan.multipliers["attn_scale"] for a in attn)
    x, _ = _batch()
    assert model(x).shape == (4, 16, V)


def test_mup_equals_sp_at_the_base_width():
    cfg = _configs()["llama"]
    kw = dict(width=64, base_width=64, seed=3, param={"zero_readout": False, "zero_query": False})
    a, _ = build(cfg, scheme="mup", head_scaling="head_dim", **kw)
    b, _ = build(cfg, scheme="sp", head_scaling="head_dim", **kw)
    x, _ = _batch()
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_coordinate_check_passes_under_mup_and_fails_under_sp(arch):
    cfg = _configs()[arch]
    reps = {}
    for scheme in ("mup", "sp"):

        def factory(w, seed, scheme=scheme):
            return build(
                cfg, width=w, base_width=64, scheme=scheme, head_scaling="head_dim", seed=seed
            )

        rep = coord_check(
            factory,
            [64, 128, 256, 512],
            batch=_batch(),
            seeds=3,
            expect="mup",
            optimizer=OptimConfig(name="adam", lr=1e-2),
        )
        reps[scheme] = rep
    assert reps["mup"].passed, reps["mup"].verdict()
    assert not reps["sp"].passed
    assert reps["sp"].signature == "sp", reps["sp"].verdict()


# --------------------------------------------------------------------------- export


def _checkpoint(tmp_path, *, tie, alpha, bias=False, mlp="swiglu", seed=1):
    cfg = GPTConfig(
        width=64,
        depth=2,
        n_heads=4,
        q_per_kv=2,
        vocab_size=V,
        seq_len=16,
        mlp=mlp,
        tie_embeddings=tie,
        bias=bias,
    )
    pcfg = ParamConfig(
        base_width=32,
        depth_alpha=alpha,
        base_depth=1,
        zero_readout=False,
        zero_query=False,
        input_mult=2.0,
        output_mult=1.5,
        attn_mult=0.7,
    )
    ocfg = OptimConfig(name="adamw", lr=1e-2, weight_decay=0.1, betas=[0.9, 0.95])
    model, plan = build_model(cfg, pcfg, seed=seed)
    config = {
        "model": dataclasses.asdict(cfg),
        "param": dataclasses.asdict(pcfg),
        "optim": dataclasses.asdict(ocfg),
    }
    ck = save_checkpoint(
        tmp_path / "run" / "checkpoints",
        step=1,
        model_state=model.state_dict(),
        optim_state={},
        train_state={},
        config=config,
        plan=plan,
        keep=1,
    )
    return model, plan, ocfg, ck


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_exported_granite_logits_equal_muscale(tmp_path, tie, alpha):
    from transformers import AutoModelForCausalLM

    model, plan, _, _ = _checkpoint(tmp_path, tie=tie, alpha=alpha, bias=not tie)
    out = export_checkpoint(tmp_path / "run", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out)
    assert type(hf).__name__ == "GraniteForCausalLM"
    assert hf.config.residual_multiplier == pytest.approx(plan.multipliers["branch"])
    x, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=x).logits, model(x), rtol=1e-5, atol=1e-5)


def test_adamw_steps_with_exported_lrs_match_muscale(tmp_path):
    from transformers import AutoModelForCausalLM

    model, plan, ocfg, _ = _checkpoint(tmp_path, tie=False, alpha=1.0)
    out = export_checkpoint(tmp_path / "run", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out)
    table = json.loads((out / OPTIM_FILE).read_text())
    assert len({e["lr"] for e in table["params"].values()}) > 1  # μP: per-layer LRs
    hopt = torch.optim.AdamW(hf_param_groups(hf, out), betas=tuple(table["betas"]))
    const = dataclasses.replace(ocfg, schedule={"name": "constant"})
    mopt, _ = make_optimizer(model, plan, const)
    x, y = _batch()
    for _ in range(3):
        for fwd, opt in ((lambda: hf(input_ids=x).logits, hopt), (lambda: model(x), mopt)):
            loss = F.cross_entropy(fwd().flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=x).logits, model(x), rtol=1e-5, atol=1e-5)


def test_export_cli_refuses_overwrite_and_unsupported_features(tmp_path, capsys):
    _checkpoint(tmp_path, tie=False, alpha=0.0)
    args = ["export", f"checkpoint={tmp_path / 'run'}", f"out={tmp_path / 'hf'}"]
    assert cli(args) == 0
    assert cli(args) == 2
    assert "exists; pass overwrite=true" in capsys.readouterr().err
    assert cli([*args, "overwrite=true"]) == 0
    gelu = tmp_path / "gelu"
    gelu.mkdir()
    _checkpoint(gelu, tie=False, alpha=0.0, mlp="gelu")
    assert cli(["export", f"checkpoint={gelu / 'run'}", f"out={gelu / 'hf'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.mlp='gelu'" in err
    assert not (gelu / "hf").exists()


def test_import_roundtrip_into_gpt_and_hf(tmp_path):
    model, plan, _, _ = _checkpoint(tmp_path, tie=True, alpha=0.0)
    out = export_checkpoint(tmp_path / "run", tmp_path / "hf")
    fresh, fplan = build_model(model.cfg, ParamConfig(**_pcfg_of(plan, tmp_path)), seed=9)
    x, _ = _batch()
    assert not torch.allclose(fresh(x), model(x))
    load_hf_into(fresh, fplan, out)
    torch.testing.assert_close(fresh(x), model(x))
    # a run with other multipliers is refused (the loaded function would change)
    other, oplan = build_model(model.cfg, ParamConfig(base_width=16, base_depth=1), seed=9)
    with pytest.raises(
        UserError, match="embedding_multiplier gives input=2 but this run's plan has 1"
    ):
        load_hf_into(other, oplan, out)
    # model=hf: an HF directory loads into the same architecture at the same width
    cfg = _configs()["llama"]
    src, _ = build(cfg, width=64, base_width=32, seed=1)
    src.hf.save_pretrained(tmp_path / "llama")
    dst, dplan = build(cfg, width=64, base_width=32, seed=2)
    load_hf_into(dst, dplan, tmp_path / "llama")
    torch.testing.assert_close(dst(x), src(x))


def _pcfg_of(plan, tmp_path):
    meta = json.loads(next((tmp_path / "run" / "checkpoints").glob("step_*/meta.json")).read_text())
    return meta["config"]["param"]
