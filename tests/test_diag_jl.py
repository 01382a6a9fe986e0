"""Johnson–Lindenstrauss bound and projections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muscale.diagnostics import distortion, jl_min_dim, random_projection
from muscale.errors import ConfigError


def test_jl_bound_is_the_known_formula():
    for n, eps in [(10, 0.5), (1000, 0.1), (10**6, 0.2)]:
        assert jl_min_dim(n, eps) == int(4 * math.log(n) / (eps**2 / 2 - eps**3 / 3))
    assert jl_min_dim(1000, 0.1) == 5920  # scikit-learn's documented example value
    assert list(jl_min_dim(np.array([10, 1000]), 0.5)) == [110, 331]
    with pytest.raises(ConfigError):
        jl_min_dim(10, 1.5)


def test_jl_matches_scikit_learn_when_installed():
    sk = pytest.importorskip("sklearn.random_projection")
    for n, eps in [(10, 0.5), (1000, 0.1), (12345, 0.25)]:
        assert jl_min_dim(n, eps) == int(sk.johnson_lindenstrauss_min_dim(n, eps=eps))


@pytest.mark.parametrize("kind", ["gaussian", "achlioptas", "sparse"])
def test_projected_distances_within_one_plus_minus_eps(kind):
    """k from the bound keeps all 4950 pairwise squared distances of 100 points within
    1 ± ε in at least 3 of 4 seeded draws (the bound promises probability ≥ 1 − 1/n for
    Gaussian projections; very sparse ones meet it asymptotically, Li et al. 2006), and
    never misses by more than 10%."""
    n, d, eps = 100, 4000, 0.3
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = jl_min_dim(n, eps)
    dists = [distortion(x, random_projection(x, k, kind=kind, seed=s)) for s in range(4)]
    ok = [1 - eps <= t.min_ratio and t.max_ratio <= 1 + eps for t in dists]
    assert sum(ok) >= 3
    assert max(t.max_abs for t in dists) < 1.1 * eps
