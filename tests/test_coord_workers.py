"""``collect(workers=n)`` spreads the (size, seed) trainings over forked processes: the same
numbers, bit for bit, as one process with one thread; errors come back to the caller."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from muscale.coord.run import collect, config_factory, synthetic_batch
from muscale.coord.workers import map_forked, split
from muscale.errors import UserError
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")


def test_split_balances_longest_first():
    costs = [1, 4, 16, 64, 256] * 3  # the default check: widths 64..1024 (∝ width²), 3 seeds
    groups = split(costs, 2)
    assert sorted(i for g in groups for i in g) == list(range(15))
    loads = [sum(costs[i] for i in g) for g in groups]
    assert loads == [512, 511]
    assert split([5.0, 1.0], 4) == [[0], [1]]  # no empty worker


def _collect(mcfg, pcfg, optim, sizes, workers, family="adam"):
    factory = config_factory(mcfg, pcfg, family=family)
    batch = synthetic_batch(mcfg, batch_size=2, seq_len=8)
    return collect(factory, sizes, batch=batch, optimizer=optim, steps=2, seeds=2, workers=workers)


@pytest.mark.parametrize(
    "mcfg,pcfg,optim,family",
    [
        (
            GPTConfig(width=32, depth=2, n_heads=2, vocab_size=64, seq_len=8),
            ParamConfig(scheme="mup", base_width=32),
            OptimConfig(name="adam", lr=0.01),
            "adam",
        ),
        (
            MLPConfig(width=32, depth=2, in_dim=8, out_dim=4),
            ParamConfig(scheme="mup", base_width=32),
            OptimConfig(name="sgd", lr=0.1, momentum=0.9),
            "sgd",
        ),
    ],
)
def test_workers_equal_one_process_bit_for_bit(mcfg, pcfg, optim, family):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting; float sums may depend on the threads
    try:
        one = _collect(mcfg, pcfg, optim, [32, 64, 128], 1, family)
    finally:
        torch.set_num_threads(threads)
    two = _collect(mcfg, pcfg, optim, [32, 64, 128], 2, family)
    assert (one.meta["workers"], two.meta["workers"]) == (1, 2)
    assert [p.label for p in one.points] == [p.label for p in two.points]
    np.testing.assert_array_equal(one.level, two.level)
    np.testing.assert_array_equal(one.change, two.change)
    np.testing.assert_array_equal(one.loss, two.loss)
    if one.meta["eps"] is not None:
        np.testing.assert_array_equal(one.meta["eps"].rms, two.meta["eps"].rms)
    assert one.family == two.family and one.scheme == two.scheme


def test_a_worker_error_reaches_the_caller():
    def fn(x: int) -> int:
        if x == 3:
            raise UserError("bad size 3")
        return x * x

    assert map_forked(fn, [1, 2], [1, 1], 2) == [1, 4]
    with pytest.raises(UserError, match="bad size 3"):
        map_forked(fn, [1, 2, 3, 4], [1, 1, 1, 1], 2)

    def dies(x: int) -> int:
        os._exit(7)

    with pytest.raises(RuntimeError, match="exited with code 7"):
        map_forked(dies, [1, 2], [1, 1], 2)


def test_bad_workers_are_user_errors():
    mcfg = MLPConfig(width=16, depth=1, in_dim=4, out_dim=2)
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=16))
    kw = dict(batch=synthetic_batch(mcfg), optimizer=OptimConfig(name="adam"), steps=1, seeds=1)
    with pytest.raises(UserError, match="workers=0"):
        collect(factory, [16, 32], workers=0, **kw)
    with pytest.raises(UserError, match="batch_seeds"):
        collect(factory, [16, 32], workers=2, batch_seeds=True, **kw)
