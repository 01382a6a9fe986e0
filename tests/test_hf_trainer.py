"""The trainer with Hugging Face models: ``trainer.init_from`` continues an exported run,
``model=hf`` trains a transformers model."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from muscale.cli.common import compose
from muscale.cli.train import register_schemas
from muscale.hf.export import export_checkpoint
from muscale.train.logging import read_metrics
from muscale.train.loop import run

TINY = [
    "param.base_width=32",
    "model.width=64",
    "model.depth=2",
    "model.mlp=swiglu",
    "data.seq_len=16",
    "data.batch_size=8",
    "data.eval_batches=1",
    "optim.lr=0.01",
    "trainer.device=cpu",
    "trainer.log_every=1",
    "trainer.eval_every=0",
    "trainer.progress=off",
]


def _losses(run_dir):
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def test_init_from_an_export_continues_where_the_run_stopped(tmp_path):
    register_schemas()
    run(compose("train", [*TINY, "trainer.max_steps=30"]), tmp_path / "a")
    first = _losses(tmp_path / "a")
    out = export_checkpoint(tmp_path / "a", tmp_path / "hf")
    run(
        compose("train", [*TINY, "trainer.max_steps=2", f"trainer.init_from={out}"]), tmp_path / "b"
    )
    cont = _losses(tmp_path / "b")
    run(compose("train", [*TINY, "trainer.max_steps=2"]), tmp_path / "c")
    fresh = _losses(tmp_path / "c")
    assert fresh[0] == pytest.approx(first[0])  # same seed, same data: same start
    # the imported (trained) weights start far below a fresh start (measured: 4.59 vs 5.55;
    # run a fell to 4.87..4.99 over its last steps, on batches it had not yet fitted)
    assert cont[0] < first[0] - 0.5 * (first[0] - min(first))


def test_model_hf_trains(tmp_path):
    register_schemas()
    res = run(
        compose(
            "train",
            [
                "model=hf",
                "model.width=64",
                "model.depth=2",
                "model.head_dim=16",
                "param.base_width=32",
                "data.seq_len=16",
                "data.batch_size=8",
                "data.eval_batches=1",
                "optim.lr=0.01",
                "trainer.device=cpu",
                "trainer.max_steps=12",
                "trainer.log_every=1",
                "trainer.eval_every=0",
                "trainer.progress=off",
            ],
        ),
        tmp_path / "hf",
    )
    assert res.completed
    losses = _losses(tmp_path / "hf")
    assert losses[-1] < losses[0]


def test_adamw_in_hf_with_the_exported_lrs_follows_the_trainer(tmp_path):
    """Three trainer steps (AdamW, μP groups, weight decay) == three plain-PyTorch AdamW steps
    on the exported Granite model with the groups of ``muscale_optim.json``."""
    import json

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from muscale.build import build_model
    from muscale.data import build_data, data_config
    from muscale.hf.export import hf_param_groups
    from muscale.models import model_config
    from muscale.train.checkpoint import save_checkpoint

    register_schemas()
    steps = [
        "trainer.max_steps=3",
        "trainer.grad_clip=0",
        "optim.schedule.name=constant",
        "optim.schedule.warmup_steps=0",
        "optim.weight_decay=0.1",
        "param.depth_alpha=1",
        "param.base_depth=1",
    ]
    run(compose("train", [*TINY, *steps]), tmp_path / "a")
    conf = json.loads((tmp_path / "a" / "config.json").read_text())
    seed = conf["trainer"]["seed"]
    torch.manual_seed(seed)  # what the trainer does before building
    model0, plan = build_model(model_config(conf["model"]), conf["param"], seed=seed)
    save_checkpoint(
        tmp_path / "init" / "checkpoints",
        step=0,
        model_state=model0.state_dict(),
        optim_state={},
        train_state={},
        config=conf,
        plan=plan,
        keep=1,
    )
    start = export_checkpoint(tmp_path / "init", tmp_path / "hf0")
    hf = AutoModelForCausalLM.from_pretrained(start)
    betas = tuple(json.loads((start / "muscale_optim.json").read_text())["betas"])
    opt = torch.optim.AdamW(hf_param_groups(hf, start), betas=betas)
    data = build_data(data_config(conf["data"]))
    for step in range(3):
        x, y = data.train_batch(step, 0, 1)
        loss = F.cross_entropy(hf(input_ids=x).logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    want = AutoModelForCausalLM.from_pretrained(export_checkpoint(tmp_path / "a", tmp_path / "hf3"))
    with torch.no_grad():
        torch.testing.assert_close(
            hf(input_ids=x).logits, want(input_ids=x).logits, rtol=1e-5, atol=1e-5
        )
        assert not torch.allclose(hf(input_ids=x).logits, model0(x), atol=1e-3)  # it trained
