"""tools/compare_search.py builds the four searches the default was chosen from."""

from pathlib import Path

from muscale.hydra_app import compose
from tools import compare_search as cs


def test_six_space_search_composes_every_base_hyperparameter(tmp_path: Path) -> None:
    _, six = cs.spaces(300)
    sc, fixed, plan = cs.spec(tmp_path, 300, "asha6", "asha", space=six)
    assert sc.strategy == "asha" and sorted(sc.space) == sorted(six)
    cfg = compose("sweep", fixed)
    assert cfg.sweep.space.warmup.high == 90 and cfg.sweep.space.warmup.log is False
    assert cfg.trainer.max_steps == 300 and cfg.optim.schedule.warmup_steps == 30
    # every hyperparameter a trial can carry maps back to its sweep.space name
    first = plan.next_round({})
    keys = {k for t in first for k in t.hparams} - {"trainer.stop_at"}
    assert {cs.SHORT[k] for k in keys} == set(six) - {"lr"}
