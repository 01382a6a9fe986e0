"""Every YAML shipped in conf/ and recipes/ composes and validates (litgpt's habit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from muscale.cli.common import compose, conf_dir
from muscale.config import to_dict
from muscale.hydra_app import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = conf_dir()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "param", "optim", "data", "trainer", "logger"])
def test_every_group_option_composes_into_train(group):
    from muscale.build import build_model, param_config
    from muscale.data.config import data_config
    from muscale.optim.config import OptimConfig
    from muscale.train.config import logger_config, trainer_config

    for option in _options(group):
        cfg = compose("train", [f"{group}={option}"])
        builders = {
            "model": lambda c: build_model(c.model, c.param, device="meta"),
            "param": lambda c: param_config(c.param),
            "optim": lambda c: OptimConfig(**to_dict(c.optim)),
            "data": lambda c: data_config(c.data),
            "trainer": lambda c: trainer_config(c.trainer),
            "logger": lambda c: logger_config(c.logger),
        }
        builders[group](cfg)


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("inspect", []),
        ("train", []),
        ("sweep", []),
        ("pipeline", []),
        ("coord_check", []),
        ("diagnose", ["checkpoint=x"]),
        ("export", ["checkpoint=x", "out=y"]),
        ("fit", ["store=x.db"]),
        ("transfer", ["store=x.db", "target.width=1024"]),
    ],
)
def test_primary_configs_compose(name, overrides):
    cfg = compose(name, overrides)
    assert cfg is not None


@pytest.mark.parametrize("launcher", ["local", "muscale_joblib", "joblib", "slurm", "slurm_gpu"])
def test_launchers_compose_with_the_sweep(launcher):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("sweep", [f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_
    assert cfg.hydra.sweeper._target_.endswith("MuscaleSweeper")


@pytest.mark.parametrize("name", ["fit", "plan"])
def test_scaling_configs_compose(name):
    from muscale.cli.scaling import compose as scaling_compose

    assert scaling_compose(name, ["data=x.csv"] if name == "fit" else []) is not None


def test_recipes_compose():
    from muscale.sweep.config import SweepConfig

    sweep = compose("proxy_sweep_gpt", [], extra_dir=str(ROOT / "recipes"))
    assert sweep.data.name == "pytext"
    SweepConfig(**to_dict(sweep.sweep))
    target = compose(
        "target_gpt_cuda",
        ["data.data_files=[x.txt]", "data.tokenizer=tok"],
        extra_dir=str(ROOT / "recipes"),
    )
    from muscale.build import build_model

    _, plan = build_model(target.model, target.param, device="meta")
    assert plan.scheme == "mup" and plan.depth_alpha == 1.0
    workflow = yaml.safe_load((ROOT / "recipes" / "github-actions-coord-check.yml").read_text())
    steps = workflow["jobs"]["coord-check"]["steps"]
    assert any("recipes/coord_check_ci" in s.get("run", "") for s in steps)
