"""Shared fixtures: the one-node SLURM cluster (tests/slurm_cluster.py)."""

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Commands run in-process set torch's thread count for their process
    (``muscale coord-check threads=1``, ``trainer.threads``): restore it after each test."""
    import torch

    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
