"""Parametrization guards: combinations that are valid field by field but wrong together
are rejected (or warned about) with one line naming the field."""

from __future__ import annotations

import warnings

import pytest
import torch

from muscale.build import build_model
from muscale.errors import ConfigError
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

GPT = dict(width=64, depth=1, n_heads=4, vocab_size=64, seq_len=8)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_depth_rule_on_non_residual_mlp_is_rejected(alpha):
    with pytest.raises(ConfigError, match=r"param.depth_alpha.*residual"):
        build_model(MLPConfig(width=64, residual=False), ParamConfig(depth_alpha=alpha))
    # with residual branches the same rule is fine, and alpha=0 is fine without them
    build_model(MLPConfig(width=64, residual=True), ParamConfig(depth_alpha=alpha))
    build_model(MLPConfig(width=64, residual=False), ParamConfig(depth_alpha=0.0))


def test_ntk_with_tied_embeddings_is_rejected_and_sp_warns():
    with pytest.raises(ConfigError, match=r"param.scheme.*tie_embeddings"):
        build_model(GPTConfig(**GPT, tie_embeddings=True), ParamConfig(scheme="ntk"))
    with pytest.warns(UserWarning, match=r"tie_embeddings"):
        build_model(GPTConfig(**GPT, tie_embeddings=True), ParamConfig(scheme="sp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # μP tied and NTK untied: silent
        build_model(GPTConfig(**GPT, tie_embeddings=True), ParamConfig(scheme="mup"))
        build_model(GPTConfig(**GPT), ParamConfig(scheme="ntk"))


def test_weight_decay_through_adams_normaliser_is_rejected():
    with pytest.raises(ConfigError, match=r"optim.weight_decay.*adamw"):
        OptimConfig(name="adam", weight_decay=0.1)
    with pytest.raises(ConfigError, match=r"optim.weight_decay"):
        OptimConfig(name="torch.optim.Adam", weight_decay=0.1)
    # decoupled decay is fine; SGD's L2 is not normalised, so it is fine too
    assert OptimConfig(name="adamw", weight_decay=0.1).decay_style == "decoupled"
    ok = OptimConfig(name="adam", weight_decay=0.1, kwargs={"decoupled_weight_decay": True})
    assert ok.decay_style == "decoupled"
    assert OptimConfig(name="sgd", weight_decay=0.1).decay_style == "l2"
    assert OptimConfig(name="adam", weight_decay=0.0).decay_style == "l2"


def test_optimizer_family_is_inferred_from_the_class():
    assert OptimConfig(name="torch.optim.SGD").rule_family == "sgd"
    assert OptimConfig(name="torch.optim.AdamW").rule_family == "adam"
    assert OptimConfig(name="torch.optim.RMSprop").rule_family == "adam"
    assert OptimConfig(name="torch.optim.SGD", family="adam").rule_family == "adam"  # explicit
    with pytest.raises(ConfigError, match=r"optim.family"):
        OptimConfig(name="torch.optim.LBFGS")
    with pytest.raises(ConfigError, match=r"optim.name"):
        OptimConfig(name="torch.optim.NoSuchThing")


def test_inferred_sgd_family_builds_sgd_rules():
    """The plan built for the inferred family is the SGD column (hidden LR m^0, not m^-1)."""
    from muscale.optim.optimizer import make_optimizer

    cfg = OptimConfig(name="torch.optim.SGD", lr=0.1)
    model, plan = build_model(
        MLPConfig(width=128), ParamConfig(base_width=64), optim_family=cfg.rule_family
    )
    opt, _ = make_optimizer(model, plan, cfg)
    assert isinstance(opt, torch.optim.SGD)
    hidden = [p for p in plan.params if p.role == "hidden"]
    assert hidden and all(p.lr_scale == pytest.approx(1.0) for p in hidden)


def test_cli_guard_is_one_line_exit_2(capsys):
    from muscale.cli.main import main as cli

    rc = cli(["inspect", "model=mlp", "model.residual=false", "param.depth_alpha=0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "param.depth_alpha" in err
