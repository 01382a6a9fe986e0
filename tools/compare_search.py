"""Which joint search at the smallest proxy finds the best μP point for its CPU (issue 10).

The measurement that chose ``muscale pipeline``'s default search (``docs/transfer.md``,
"Choosing the default search"): GPT depth 2 on the embedded pytext corpus at width 32, four
searches run side by side through the pipeline's trial pool —

``grid``   7 LRs (2^-10..2^-4) x α_out {½, 1, 2, 4}, the previous default;
``asha2``  successive halving (η = 3) over 27 points of LR x α_out;
``asha6``  the same over all six base hyperparameters (LR, α_out, α_in, α_attn, init std,
           warmup; TP5 §7.2's set);
``rand6``  random search, 27 points of the six, every one at the full budget —

then each winner re-trained with two fresh seeds (1, 2) at widths 32 and 128, because the
search's own best loss is the minimum over many noisy trials (selection bias). Prints one
JSON line per search and per re-training; writes ``<out>/res.json``.

    python tools/compare_search.py /tmp/compare_search 300
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from muscale.sweep.config import SweepConfig
from muscale.sweep.strategy import fixed_overrides, planner
from muscale.trial_pool import make_pool, run_sweep

#: the pipeline's proxy settings (conf/pipeline.yaml), warmup a tenth of the steps
BASE = [
    "model=gpt",
    "data=pytext",
    "model.depth=2",
    "param.base_width=32",
    "trainer.threads=1",
    "trainer.progress=off",
    "data.seq_len=64",
    "data.batch_size=16",
    "data.eval_batches=8",
    "trainer.eval_every=0",
]
#: sweep.space name -> the config key a trial's hparams holds it under
SHORT = {
    "param.output_mult": "alpha_out",
    "param.input_mult": "alpha_in",
    "param.attn_mult": "alpha_attn",
    "param.init_std.hidden": "init_std",
    "optim.schedule.warmup_steps": "warmup",
}


def spaces(steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two search spaces: LR x α_out, and all six base hyperparameters."""
    two = {"lr": {"low": 2**-9, "high": 2**-2}, "alpha_out": {"low": 0.25, "high": 8.0}}
    six = {
        **two,
        "alpha_in": {"low": 0.25, "high": 8.0},
        "alpha_attn": {"low": 0.25, "high": 4.0},
        "init_std": {"low": 0.05, "high": 0.5},
        "warmup": {"low": 0, "high": 3 * steps // 10, "log": False, "int": True},
    }
    return two, six


def _lst(xs: Any) -> str:
    return "[" + ",".join(str(x) for x in xs) + "]"


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def spec(
    out: Path,
    steps: int,
    name: str,
    strategy: str,
    *,
    widths: tuple[int, ...] = (32,),
    space: dict[str, Any] | None = None,
    lrs: list[float] | None = None,
    params: dict[str, list[Any]] | None = None,
    trials: int = 27,
    seeds: tuple[int, ...] = (0,),
) -> tuple[SweepConfig, list[str], Any]:
    """A sweep of the given strategy, the overrides its trials compose, and its planner."""
    sc = SweepConfig(
        name=name,
        widths=list(widths),
        schemes=["mup"],
        seeds=list(seeds),
        lrs=lrs,
        strategy=strategy,
        params=params or {},
        space=space or {},
        search={"trials": trials, "eta": 3},
        store=str(out / "sweeps.db"),
    )
    fixed = [
        *BASE,
        f"trainer.max_steps={steps}",
        f"optim.schedule.warmup_steps={steps // 10}",
        f"sweep.name={name}",
        f"sweep.store={sc.store}",
        f"sweep.widths={_lst(widths)}",
        "sweep.schemes=[mup]",
        f"sweep.seeds={_lst(sc.seeds)}",
        f"sweep.strategy={strategy}",
        f"sweep.search.trials={trials}",
    ]
    if lrs:
        fixed.append(f"sweep.lrs={_lst(lrs)}")
    fixed += [f"sweep.params.{k}={_lst(v)}" for k, v in (params or {}).items()]
    for k, r in (space or {}).items():
        fixed.append(
            f"sweep.space.{k}={{" + ",".join(f"{a}:{_value(b)}" for a, b in r.items()) + "}"
        )
    plan = planner(sc, max_steps=steps)
    return sc, [*fixed, *fixed_overrides(plan)], plan


def main() -> None:
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    two, six = spaces(steps)
    searches = {
        "grid": {
            "strategy": "grid",
            "lrs": [2.0**-i for i in range(10, 3, -1)],
            "params": {"alpha_out": [0.5, 1.0, 2.0, 4.0]},
        },
        "asha2": {"strategy": "asha", "space": two},
        "asha6": {"strategy": "asha", "space": six},
        "rand6": {"strategy": "random", "space": six},
    }
    res: dict[str, dict[str, Any]] = {}
    with make_pool(2) as pool:
        for name, kw in searches.items():
            sc, fixed, plan = spec(out, steps, name, **kw)
            t0 = time.perf_counter()
            oc = run_sweep(
                sc,
                fixed,
                out / "trials" / name,
                pool=pool,
                jobs=2,
                planner_factory=lambda c, p=plan: p,
            )
            trial, loss = min(oc.losses.values(), key=lambda tl: tl[1])
            res[name] = {
                "cpu_s": oc.cpu_s,
                "wall_s": time.perf_counter() - t0,
                "trials": len(oc.costs),
                "best_loss": loss,
                "lr": trial.lr,
                "hp": {k: v for k, v in trial.hparams.items() if k != "trainer.stop_at"},
            }
            print(name, json.dumps(res[name]), flush=True)
        for name, r in res.items():  # the winners with fresh seeds: no selection bias
            params = {SHORT[k]: [v] for k, v in r["hp"].items()}
            for w in (32, 128):
                sc, fixed, _ = spec(
                    out, steps, f"re_{name}_{w}", "grid", widths=(w,), lrs=[r["lr"]],
                    params=params, seeds=(1, 2),
                )  # fmt: skip
                oc = run_sweep(sc, fixed, out / "trials" / sc.name, pool=pool, jobs=2)
                r[f"w{w}_seeds_1_2"] = [loss for _, loss in oc.losses.values()]
                print(name, w, r[f"w{w}_seeds_1_2"], flush=True)
    (out / "res.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
