"""Reading tables of runs into the canonical N, D, C, loss frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from muscale.errors import UserError
from muscale.scaling.io import canonical, read_table
from muscale.scaling.laws import FlopsModel


def test_csv_and_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"n": [1e8, 2e8], "tok": [2e9, 4e9], "L": [3.0, 2.9]})
    for name in ("runs.csv", "runs.parquet"):
        path = tmp_path / name
        df.to_csv(path, index=False) if name.endswith("csv") else df.to_parquet(path)
        out = canonical(read_table(path), {"N": "n", "D": "tok", "loss": "L"})
        np.testing.assert_allclose(out["C"], 6 * df["n"] * df["tok"])
        assert list(out.columns[:3]) == ["N", "D", "loss"]


def test_d_from_c_uses_the_flops_model():
    df = pd.DataFrame({"N": [1e9], "C": [1e21], "loss": [2.5]})
    assert canonical(df)["D"].iloc[0] == pytest.approx(1e21 / 6e9)
    fm = FlopsModel(n_ctx=4096)
    assert canonical(df, flops=fm)["D"].iloc[0] == pytest.approx(1e21 / float(fm(1e9)))
    assert float(fm(1e9)) > 6e9


@pytest.mark.parametrize(
    ("frame", "columns", "needle"),
    [
        ({"N": [1e8], "loss": [3.0]}, None, "D or C"),
        ({"N": [1e8], "D": [1e9]}, None, "lacks column loss"),
        ({"N": [0.0], "D": [1e9], "loss": [3.0]}, None, "positive finite"),
        ({"N": ["x"], "D": [1e9], "loss": [3.0]}, None, "positive finite"),
        ({"N": [1e8], "D": [np.inf], "loss": [3.0]}, None, "positive finite"),
        ({"N": [1e8], "D": [1e9], "loss": [3.0]}, {"params": "N"}, "not a known column"),
    ],
)
def test_bad_tables(frame, columns, needle):
    with pytest.raises(UserError, match=needle):
        canonical(pd.DataFrame(frame), columns)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"csv or \.parquet"):
        read_table(tmp_path / "runs.xlsx")
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "runs.csv")


def test_sweep_store_reads_as_a_table_of_runs(tmp_path):
    """`muscale scaling fit store=...`: N from each trial's model, D = steps x batch x seq."""
    from muscale.build import build_model
    from muscale.scaling.io import from_store
    from muscale.sweep.store import Store

    store = Store(str(tmp_path / "s.db"))
    for i, (w, loss) in enumerate([(32, 3.0), (64, 2.8), (64, None)]):
        cfg = {
            "model": {"family": "gpt", "width": w, "depth": 2, "vocab_size": 256},
            "param": {"scheme": "mup", "base_width": 32},
            "optim": {"name": "adamw"},
            "data": {"batch_size": 8, "seq_len": 16},
            "trainer": {"max_steps": 100},
        }
        store.start(
            f"k{i}",
            sweep="s",
            scheme="mup",
            width=w,
            depth=2,
            seed=0,
            lr=0.01,
            hparams={},
            config=cfg,
            run_dir="x",
        )
        store.finish(
            f"k{i}",
            final_loss=loss,
            final_eval_loss=loss,
            best_eval_loss=loss,
            diverged=loss is None,
            wall_time=0.0,
        )
    df = from_store(str(tmp_path / "s.db"))
    assert len(df) == 2 and set(df["D"]) == {100 * 8 * 16}
    model, _ = build_model(cfg["model"], cfg["param"], device="meta")
    assert df.loc[df["loss"] == 2.8, "N"].item() == sum(p.numel() for p in model.parameters())
