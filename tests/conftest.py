"""Shared fixtures: the one-node SLURM cluster (tests/slurm_cluster.py)."""

from slurm_cluster import slurm_cluster  # noqa: F401
