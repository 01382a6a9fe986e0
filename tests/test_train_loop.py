"""The trainer in-process: learning, μP width ordering, bit-identical resume, divergence,
gradient accumulation. Tiny GPTs on the embedded data, CPU, fixed seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from muscale.train.logging import read_metrics
from muscale.train.loop import run

TINY = [
    "param.base_width=32",
    "model.width=32",
    "model.depth=1",
    "data.seq_len=32",
    "data.batch_size=8",
    "data.eval_batches=2",
    "trainer.device=cpu",
    "trainer.progress=off",
]


def compose_train(overrides: list[str]):
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas

    register_schemas()
    return compose("train", [*TINY, *overrides])


def losses(run_dir: Path, key: str = "loss") -> list[tuple[int, float]]:
    return [(m["step"], m[key]) for m in read_metrics(run_dir) if key in m]


def test_loss_decreases_on_synthetic(tmp_path: Path) -> None:
    # zero readout (opt-in since issue 10): uniform logits, so the first loss is ln(256)
    res = run(
        compose_train(["trainer.max_steps=40", "trainer.log_every=1", "param.zero_readout=true"]),
        tmp_path,
    )
    first = losses(tmp_path)[0][1]
    assert first == pytest.approx(5.5452, abs=0.02)  # μP zero readout: ln(256) at step 1
    assert res.final_eval_loss is not None and res.final_eval_loss < first - 0.6
    assert not res.diverged and res.completed and res.steps == 40
    assert res.tokens == 40 * 8 * 32
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["final_eval_loss"] == pytest.approx(res.final_eval_loss)
    rows = read_metrics(tmp_path)
    assert {"step", "loss", "lr", "tokens", "tokens_per_s", "grad_norm"} <= set(rows[0])
    assert any("eval_loss" in r for r in rows)


def test_loss_decreases_on_pytext(tmp_path: Path) -> None:
    cfg = compose_train(
        ["data=pytext", "data.max_bytes=200000", "trainer.max_steps=30", "trainer.log_every=1"]
    )
    res = run(cfg, tmp_path)
    first = losses(tmp_path)[0][1]
    assert res.final_eval_loss is not None and res.final_eval_loss < first - 1.0


@pytest.mark.slow
def test_wider_mup_reaches_lower_loss_at_same_lr(tmp_path: Path) -> None:
    """μP (TP5): at a fixed LR tuned for nothing in particular, width only helps."""
    out = {}
    for w in (32, 96):
        cfg = compose_train(
            [
                f"model.width={w}",
                "model.depth=2",
                "trainer.max_steps=50",
                "trainer.eval_every=0",
                "data.eval_batches=4",
                "trainer.save_final=false",
            ]
        )
        out[w] = run(cfg, tmp_path / f"w{w}").final_eval_loss
    assert out[96] < out[32] - 0.1, out


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    steps = ["trainer.max_steps=20", "trainer.log_every=1", "trainer.eval_every=5"]
    run(compose_train(steps), tmp_path / "a")
    part = run(compose_train([*steps, "trainer.stop_at=10"]), tmp_path / "b")
    assert not part.completed and part.steps == 10
    assert (tmp_path / "b" / "checkpoints" / "step_0000010" / "meta.json").exists()
    rest = run(compose_train([*steps, "trainer.resume=auto"]), tmp_path / "b")
    assert rest.completed and rest.steps == 20
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    strip = ("tokens_per_s", "time")
    assert [{k: v for k, v in r.items() if k not in strip} for r in a] == [
        {k: v for k, v in r.items() if k not in strip} for r in b
    ]
    assert len([r for r in a if "loss" in r]) == 20


def test_resume_from_finished_run_returns_its_result(tmp_path: Path) -> None:
    first = run(compose_train(["trainer.max_steps=4"]), tmp_path)
    again = run(compose_train(["trainer.max_steps=4", "trainer.resume=auto"]), tmp_path)
    assert again.steps == 4 and again.final_eval_loss == first.final_eval_loss


def test_divergence_stops_and_is_recorded(tmp_path: Path) -> None:
    cfg = compose_train(
        [
            "param.scheme=sp",
            "optim.lr=50",
            "trainer.grad_clip=0",
            "trainer.max_steps=30",
            "trainer.log_every=5",
            "optim.schedule.warmup_steps=0",
        ]
    )
    res = run(cfg, tmp_path)
    assert res.diverged and not res.completed and res.steps < 30
    last = read_metrics(tmp_path)[-1]
    assert last["diverged"] is True and last["step"] == res.steps
    assert json.loads((tmp_path / "result.json").read_text())["diverged"] is True
    assert not (tmp_path / "checkpoints").exists()  # nothing diverged is checkpointed


def test_grad_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    base = ["trainer.max_steps=5", "trainer.log_every=1", "trainer.eval_every=0"]
    run(compose_train(base), tmp_path / "one")
    run(compose_train([*base, "trainer.grad_accum=4"]), tmp_path / "four")
    one, four = losses(tmp_path / "one"), losses(tmp_path / "four")
    assert [s for s, _ in one] == [s for s, _ in four]
    for (_, x), (_, y) in zip(one, four, strict=True):
        assert x == pytest.approx(y, rel=1e-5)


def test_teacher_data_trains_an_mlp(tmp_path: Path) -> None:
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas

    register_schemas()
    cfg = compose(
        "train",
        [
            "model=mlp",
            "data=teacher",
            "model.width=64",
            "param.base_width=64",
            "data.batch_size=32",
            "trainer.max_steps=30",
            "trainer.device=cpu",
            "trainer.progress=off",
            "trainer.log_every=1",
            "data.eval_batches=2",
        ],
    )
    res = run(cfg, tmp_path)
    assert res.final_eval_loss < losses(tmp_path)[0][1]


def test_spectral_monitor_is_logged(tmp_path: Path) -> None:
    pytest.importorskip("muscale.diagnostics.monitor")
    run(compose_train(["trainer.max_steps=2", "trainer.monitor_every=2"]), tmp_path)
    rows = [r for r in read_metrics(tmp_path) if any(k.startswith("spectral/") for k in r)]
    assert rows and rows[0]["step"] == 2
