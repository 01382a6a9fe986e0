"""Where muscale finds its shipped files (muscale/resources.py) from a checkout, from an
installed layout and from $MUSCALE_CONF_DIR, and what the built wheel holds."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from muscale.errors import UserError
from muscale.resources import conf_dir, conf_search_path, data_file

ROOT = Path(__file__).parents[1]


def test_checkout_configs_come_from_conf(monkeypatch):
    monkeypatch.delenv("MUSCALE_CONF_DIR", raising=False)
    assert conf_dir() == ROOT / "conf"
    assert conf_search_path() == f"file://{ROOT / 'conf'}"


def test_env_variable_wins_and_a_bad_one_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSCALE_CONF_DIR", str(tmp_path))
    assert conf_dir() == tmp_path and conf_search_path() == f"file://{tmp_path}"
    monkeypatch.setenv("MUSCALE_CONF_DIR", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="MUSCALE_CONF_DIR"):
        conf_dir()


def test_installed_layout_finds_pkg_muscale_conf(tmp_path):
    """The wheel's layout (site-packages/muscale/conf, no pyproject.toml beside muscale):
    the configs are the package muscale.conf, and Hydra composes them as pkg://."""
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "muscale", site / "muscale", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "conf", site / "muscale" / "conf")
    code = (
        "from muscale.resources import conf_dir, conf_search_path\n"
        "from muscale.hydra_app import register_configs\n"
        "from hydra import initialize_config_module, compose\n"
        "register_configs()\n"
        "print(conf_dir()); print(conf_search_path())\n"
        "with initialize_config_module('muscale.conf', version_base='1.3'):\n"
        "    print(compose('train').model.width)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MUSCALE_CONF_DIR"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    where, url, width = out.stdout.split()
    assert Path(where) == site / "muscale" / "conf"
    assert url == "pkg://muscale.conf" and int(width) > 0


def test_packaged_chinchilla_points_are_epochs_file():
    path = data_file("chinchilla_epoch_svg_extracted.csv")
    # byte-identical to epoch-research/analyzing-chinchilla data/svg_extracted_data.csv
    assert hashlib.md5(path.read_bytes()).hexdigest() == "0e6c634f7ff189463f2638cb60fc32ab"
    df = pd.read_csv(path)
    assert len(df) == 245 and {"Model Size", "Training FLOP", "loss"} <= set(df.columns)
    readme = (path.parent / "README.md").read_text()
    assert "Licence" in readme and "9225883" in readme and path.name in readme
    with pytest.raises(UserError, match="not found"):
        data_file("nope.csv")


@pytest.mark.slow  # builds the wheel with pip
def test_wheel_holds_configs_plugin_and_data(tmp_path):
    src = tmp_path / "src"  # what the Dockerfile's wheel stage copies; the checkout stays clean
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "muscale", "conf", "hydra_plugins"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("muscale-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {
        f"muscale/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")
    }
    assert yamls and yamls <= names, sorted(yamls - names)
    assert "hydra_plugins/muscale_sweeper/muscale_sweeper.py" in names
    assert "muscale/scaling/data/chinchilla_epoch_svg_extracted.csv" in names
    assert not any(n.startswith(("tests/", "conf/", "recipes/")) for n in names)
