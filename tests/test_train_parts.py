"""Checkpoint format, MFU arithmetic, wandb settings and the shipped YAML."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from muscale.build import build_model
from muscale.errors import UserError
from muscale.train import checkpoint as ck
from muscale.train.config import LoggerConfig, TrainerConfig, logger_config, trainer_config

CONF = Path(__file__).parents[1] / "conf"


def _tiny(**model):
    cfg = {"family": "gpt", "width": 32, "depth": 1, "seq_len": 16, "vocab_size": 64, **model}
    return build_model(cfg, {"scheme": "mup", "base_width": 32})


def _save(tmp_path: Path, model, plan, opt, *, step: int = 1, keep: int = 2) -> Path:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return ck.save_checkpoint(
        tmp_path / "checkpoints",
        step=step,
        model_state=model.state_dict(),
        optim_state=get_optimizer_state_dict(model, opt),
        train_state={"tokens": 3},
        config={"model": {"width": 32}, "param": {}, "optim": {}, "data": {}},
        plan=plan,
        keep=keep,
    )


def _stepped(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 64, (2, 16))).sum().backward()
    opt.step()
    return opt


def test_checkpoint_roundtrip_is_exact(tmp_path: Path) -> None:
    model, plan = _tiny(tie_embeddings=True)  # tied tensors are stored once
    opt = _stepped(model)
    path = _save(tmp_path, model, plan, opt, step=7)
    meta = ck.read_meta(path)
    assert meta["step"] == 7 and meta["aliases"] == {"lm_head.weight": "wte.weight"}
    state = ck.read_model_state(path, meta)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    train, osd, rng = ck.read_train_state(path)
    assert train["tokens"] == 3 and train["step"] == 7
    for name, slots in osd["state"].items():
        p = dict(model.named_parameters())[name]
        assert torch.equal(slots["exp_avg"], opt.state[p]["exp_avg"])
    assert osd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(rng["torch_cpu"], torch.get_rng_state())


def test_keeps_last_k_and_finds_latest(tmp_path: Path) -> None:
    model, plan = _tiny()
    opt = _stepped(model)
    for s in (1, 2, 3):
        _save(tmp_path, model, plan, opt, step=s, keep=2)
    names = [p.name for p in ck.list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_0000002", "step_0000003"]
    assert ck.find_checkpoint(tmp_path).name == "step_0000003"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_load_model_rebuilds_the_checkpoint(tmp_path: Path) -> None:
    model, plan = _tiny()
    opt = _stepped(model)
    meta_cfg = {
        "model": {"family": "gpt", "width": 32, "depth": 1, "seq_len": 16, "vocab_size": 64},
        "param": {"scheme": "mup", "base_width": 32},
        "optim": {},
        "data": {},
    }
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    ck.save_checkpoint(
        tmp_path / "checkpoints",
        step=2,
        model_state=model.state_dict(),
        optim_state=get_optimizer_state_dict(model, opt),
        train_state={},
        config=meta_cfg,
        plan=plan,
        keep=1,
    )
    loaded = ck.load_model(tmp_path)
    x = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(loaded.model(x), model.eval()(x), rtol=0, atol=0)
    assert loaded.step == 2 and loaded.plan.to_dict() == plan.to_dict()


@pytest.mark.parametrize("damage", ["meta", "weights", "missing"])
def test_corrupt_checkpoints_are_user_errors(tmp_path: Path, damage: str) -> None:
    model, plan = _tiny()
    path = _save(tmp_path, model, plan, _stepped(model))
    if damage == "meta":
        (path / "meta.json").write_text("{not json")
    elif damage == "weights":
        data = bytearray((path / "model.safetensors").read_bytes())
        data[-3] ^= 0xFF
        (path / "model.safetensors").write_bytes(bytes(data))
    else:
        (path / "optim.safetensors").unlink()
    with pytest.raises(UserError, match=r"corrupt|incomplete"):
        ck.read_meta(path)


def test_mismatched_checkpoint_names_the_field(tmp_path: Path) -> None:
    model, plan = _tiny()
    path = _save(tmp_path, model, plan, _stepped(model))
    meta = ck.read_meta(path)
    cfg = {**meta["config"], "model": {"width": 64}}
    with pytest.raises(UserError, match=r"model\.width is 32 there and 64 here"):
        ck.check_compatible(path, meta, cfg, plan)
    _, plan_sp = build_model(
        {"family": "gpt", "width": 32, "depth": 1, "seq_len": 16, "vocab_size": 64},
        {"scheme": "sp", "base_width": 32},
    )
    with pytest.raises(UserError, match="plan"):
        ck.check_compatible(path, meta, meta["config"], plan_sp)


def test_flops_per_token_is_6n_plus_attention() -> None:
    from muscale.models import model_config
    from muscale.train.mfu import flops_per_token, matmul_params, mfu, peak_flops

    model, _ = _tiny()
    mcfg = model_config({"family": "gpt", "width": 32, "depth": 1, "seq_len": 16, "vocab_size": 64})
    # per block 4 C^2 (attention) + 8 C^2 (MLP, ff 4); readout C V; no embedding lookup
    n = 12 * 32 * 32 + 32 * 64 + 3 * 32  # + the three RMSNorm gains
    assert matmul_params(model) == n
    assert flops_per_token(model, mcfg) == 6 * n + 12 * 1 * 4 * 8 * 16
    tied, _ = _tiny(tie_embeddings=True)
    assert matmul_params(tied) == n  # the tied matrix counts once, as the readout
    assert peak_flops(torch.device("cpu"), "bf16") is None
    assert mfu(1e5, 6e9, 1e15, 2) == pytest.approx(0.3)


def test_wandb_settings_group_by_width_and_default_offline(monkeypatch) -> None:
    from muscale.train.logging import wandb_settings

    config = {
        "model": {"family": "gpt", "width": 128},
        "param": {"scheme": "mup"},
        "optim": {"lr": 0.01, "schedule": {"name": "cosine"}},
        "logger": {},
    }
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    kw = wandb_settings(LoggerConfig(wandb=True), config, Path("/runs/x"))
    assert kw["mode"] == "offline" and kw["group"] == "gpt-mup"
    assert kw["job_type"] == "width=128" and kw["name"] == "x"
    assert kw["config"]["optim.schedule.name"] == "cosine" and "logger" not in kw["config"]
    monkeypatch.setenv("WANDB_MODE", "online")
    assert "mode" not in wandb_settings(LoggerConfig(group="sw"), config, Path("x"))
    assert wandb_settings(LoggerConfig(group="sw"), config, Path("x"))["group"] == "sw"


def test_metrics_logger_sends_rows_to_wandb(tmp_path: Path, monkeypatch) -> None:
    from muscale.train.logging import MetricsLogger, read_metrics

    calls: dict = {"log": []}

    class FakeRun:
        id = "abc"

        def __init__(self) -> None:
            self.summary: dict = {}

        def log(self, row, step):
            calls["log"].append((step, row))

        def finish(self):
            calls["finished"] = True

    def init(**kw):
        calls["init"] = kw
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    config = {"model": {"family": "gpt", "width": 64}, "param": {"scheme": "mup"}}
    log = MetricsLogger(tmp_path, enabled=True, cfg=LoggerConfig(wandb=True), config=config)
    log.log({"step": 1, "loss": float("nan"), "lr": 0.1})
    log.close()
    assert calls["init"]["job_type"] == "width=64" and calls["finished"]
    assert calls["log"] == [(1, {"loss": None, "lr": 0.1})]
    assert read_metrics(tmp_path) == [{"step": 1, "loss": None, "lr": 0.1}]
    assert (tmp_path / "wandb_id").read_text() == "abc"


def test_trainer_config_validation() -> None:
    with pytest.raises(UserError, match=r"trainer\.parallel"):
        TrainerConfig(parallel="zero3")
    with pytest.raises(UserError, match=r"trainer\.max_stepz"):
        trainer_config({"max_stepz": 3})
    with pytest.raises(UserError, match="diverge_factor"):
        TrainerConfig(diverge_factor=0.5)
    assert logger_config(None) == LoggerConfig()


def test_shipped_yaml_composes() -> None:
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas

    register_schemas()
    for overrides in ([], ["logger=wandb"], ["data=pytext"], ["model=mlp", "data=teacher"]):
        cfg = compose("train", overrides)
        trainer_config(cfg.trainer)
        logger_config(cfg.logger)
    assert compose("train", ["logger=wandb"]).logger.wandb is True
    for name in ("trainer/default.yaml", "logger/default.yaml", "logger/wandb.yaml"):
        assert (CONF / name).exists()
    json.dumps(TrainerConfig().__dict__)
