"""Every ``conf/data/*.yaml`` composes against its schema and builds a data source."""

from __future__ import annotations

from pathlib import Path

import pytest

from muscale.data import DATA_CONFIGS, build_data, data_config, data_schemas

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    cs = ConfigStore.instance()
    for group, name, node in data_schemas():
        cs.store(group=group, name=name, node=node)

    def run(name, overrides=()):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name=f"data/{name}", overrides=list(overrides)).data

    return run


def test_every_dataset_has_a_yaml_and_a_schema():
    assert {p.stem for p in (CONF / "data").glob("*.yaml")} == set(DATA_CONFIGS)
    assert {(g, n) for g, n, _ in data_schemas()} == {("schema/data", n) for n in DATA_CONFIGS}


@pytest.mark.parametrize("name", sorted(DATA_CONFIGS))
def test_yaml_composes_to_the_dataclass_defaults(compose, name):
    cfg = compose(name)
    typed = data_config(cfg)
    assert type(typed) is DATA_CONFIGS[name]
    defaults = DATA_CONFIGS[name]()
    if name != "teacher":  # teacher.yaml deliberately uses a bigger batch
        assert typed == defaults


def test_composed_configs_build(compose, tmp_path):
    src = build_data(compose("synthetic", ["data.seq_len=16", "data.batch_size=4"]))
    assert src.train_batch(0)[0].shape == (4, 16)
    src = build_data(compose("teacher", ["data.task=classification"]))
    assert src.kind == "classification"
    (tmp_path / "a.txt").write_text("one line\nanother line\na third line here\n")
    cfg = compose(
        "hf",
        [
            f"data.data_files=[{tmp_path / 'a.txt'}]",
            "data.seq_len=4",
            "data.batch_size=2",
            "data.eval_fraction=0.3",
        ],
    )
    assert build_data(cfg, cache_dir=tmp_path / "c").vocab_size == 256


def test_schema_rejects_typos_and_wrong_types(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose("synthetic", ["data.seq_len=abc"])
    with pytest.raises(ConfigCompositionException):
        compose("pytext", ["data.no_such_field=1"])
