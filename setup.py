"""Only what pyproject.toml cannot say: the top-level ``conf/`` is installed as the package
``muscale.conf`` (a ``package-dir`` entry for one package beside the found ones; its YAML
files are package data in pyproject.toml). Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["muscale*", "hydra_plugins*"]), "muscale.conf"],
    package_dir={"muscale.conf": "conf"},
)
