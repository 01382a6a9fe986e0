"""A parametrized model (hooks, no tensor attributes) survives state_dict round trips,
torch.compile, DDP and FSDP2 (2-process gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anymodels import TRANSFORMER_ROLES, PlainTransformer, lm_batch

from muscale.auto import attach, parametrize

WORKER = Path(__file__).with_name("auto_dist_worker.py")


def _plain(seed=0):
    return parametrize(
        PlainTransformer,
        width=128,
        base_width=32,
        roles=TRANSFORMER_ROLES,
        param={"zero_readout": False},
        seed=seed,
    )


def _llama(seed=0):
    """A HF Llama-style model, head_dim growing (so its attention ``scaling`` is set too)."""
    transformers = pytest.importorskip("transformers")
    from muscale.hf import build

    transformers.logging.set_verbosity_error()
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    param = {"zero_readout": False, "zero_query": False}
    return build(cfg, width=128, base_width=32, head_scaling="head_dim", param=param, seed=seed)


def _plain_twin(name, model):
    """The same architecture built without muscale (no hooks, default attention scale)."""
    if name == "plain":
        return PlainTransformer(128)
    from muscale.hf.model import HFCausalLM

    return HFCausalLM(type(model.hf)(model.hf.config))


BUILDERS = {"plain": _plain, "llama": _llama}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_roundtrip_and_plain_keys(tmp_path, name):
    a, plan = BUILDERS[name](seed=1)
    plain = _plain_twin(name, a)
    assert set(a.state_dict()) == set(plain.state_dict())  # hooks add no state
    torch.save(a.state_dict(), tmp_path / "m.pt")
    b, _ = BUILDERS[name](seed=2)
    x, _ = lm_batch()
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    # a model built plainly gets the multipliers back from the plan (plain JSON data)
    c = plain
    c.load_state_dict(a.state_dict())
    assert not torch.allclose(c(x), a(x))  # without the 1/m readout
    from muscale.param.plan import Plan

    attach(c, Plan.from_dict(json.loads(json.dumps(plan.to_dict()))))
    torch.testing.assert_close(c(x), a(x), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_compiled_model_has_the_same_outputs(name):
    model, _ = BUILDERS[name]()
    x, _ = lm_batch()
    eager = model(x)
    compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    plain = _plain_twin(name, model)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(x), compiled, atol=1e-3)  # the 1/m hook was compiled in


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(parallel, tmp_path):
    one = _run(str(WORKER), "none", str(tmp_path / "one.json"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        parallel,
        str(tmp_path / "two.json"),
    )
    assert two.returncode == 0, two.stderr[-3000:]
    want = json.loads((tmp_path / "one.json").read_text())
    got = json.loads((tmp_path / "two.json").read_text())
    assert set(got) == {"plain", "llama"}
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-5), name
