"""Only what pyproject.toml cannot say: the top-level ``conf/`` is installed as the package
``muscale.conf`` (a ``package-dir`` entry beside the found packages; its subfolders are its
subpackages, its YAML files package data in pyproject.toml). See muscale/resources.py."""

from setuptools import find_namespace_packages, setup

CONF = ["muscale.conf", *(f"muscale.conf.{p}" for p in find_namespace_packages(where="conf"))]

setup(
    packages=[*find_namespace_packages(include=["muscale*", "hydra_plugins*"]), *CONF],
    package_dir={"muscale.conf": "conf"},
)
