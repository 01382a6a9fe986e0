"""Benchmark: muscale's GPT coordinate check against microsoft/mup's ``get_coord_data``.

Same GPT (depth 2, 4 heads, RoPE, vocab 256), widths 64..1024, 4 optimizer steps, 3 seeds,
one fixed batch of 8 x 64 tokens, Adam lr 0.01, CPU. Each contender runs in its own
subprocess (wall time, peak RSS via resource.getrusage). mup records only the level
(mean |x|) of every module; muscale records level and change at the hooked points. mup
records at t = 1..nsteps *before* each step, so it gets nsteps = T + 1 to see the same
t = 0..T that muscale records (it then does T + 1 backwards, muscale T).

    python tools/bench_coord_check.py              # the table (3 interleaved rounds, medians)
    python tools/bench_coord_check.py --small      # quick smoke run (widths 64..256)
    python tools/bench_coord_check.py --to512      # widths 64..512
    python tools/bench_coord_check.py --bf16       # add muscale with precision=bf16 (autocast)
    python tools/bench_coord_check.py --repeats 5  # more rounds
    python tools/bench_coord_check.py --threads 1  # OMP_NUM_THREADS for every contender
    python tools/bench_coord_check.py --default-batch  # both on the CLI's default batch, 2 x 16
    python tools/bench_coord_check.py --seed-paths # add muscale with batch_seeds=True (vmap)
    python tools/bench_coord_check.py --preimport  # import torch._dynamo before the clock starts
    python tools/bench_coord_check.py --threads 2 --workers 2  # the 2-core table: adds
                                    # muscale-2proc (2 processes x 1 thread) and mup@1 (1 thread)

``muscale`` is the default path (one seed at a time); ``--workers N`` adds ``muscale-Nproc``
(``collect(workers=N)``: the sizes and seeds trained in N forked processes with one thread
each; the forks are inside the clock) and ``mup@1``, mup with one thread. On N cores the
fair comparison is ``--threads N --workers N``: mup and ``muscale`` with N intra-op threads,
``muscale-Nproc`` with N processes, and mup's one-thread run beside it, since at this batch
more threads may be slower (on a loaded machine OpenMP threads waiting for a busy core can
be many times slower), so each muscale row is compared with mup's faster variant too.
``--seed-paths`` adds ``muscale-vmap``
(``batch_seeds=True``: the seeds batched with ``torch.func.vmap``), the same ``collect`` +
``report`` that ``check_from_configs`` runs. ``--preimport``:
building any torch optimizer imports ``torch._dynamo`` (~0.8 s, once per process; mup pays
it too), so with it the table shows the ratio of the work that differs.

Absolute times swing with the machine's load; only the ratio of medians within one run
means anything, so the contenders run interleaved (the order rotating each round) and the
1-minute load average before each run is printed beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

WIDTHS = [64, 128, 256, 512, 1024]
STEPS, SEEDS, BATCH, SEQ, DEPTH, LR = 4, 3, 8, 64, 2, 0.01


def _gpt_cfg(width: int, seq: int = SEQ):
    from muscale.models.configs import GPTConfig

    return GPTConfig(width=width, depth=DEPTH, n_heads=4, vocab_size=256, seq_len=seq)


def run_muscale(
    widths: list[int],
    precision: str = "fp32",
    batch: int = BATCH,
    seq: int = SEQ,
    batch_seeds: bool = False,
    workers: int = 1,
) -> dict:
    """What ``check_from_configs`` runs (factory, batch, ``collect``, ``report``), with the
    seed path chosen by ``batch_seeds``, ``workers`` processes and, for equal work with mup,
    no extension rounds (``extend=0``: :mod:`muscale.coord.extend` is not called)."""
    from muscale.coord import report
    from muscale.coord.run import collect, config_factory, synthetic_batch
    from muscale.optim.config import OptimConfig
    from muscale.param.config import ParamConfig

    t0 = time.perf_counter()
    cfg = _gpt_cfg(64, seq)
    factory = config_factory(cfg, ParamConfig(scheme="mup", base_width=64))
    data = collect(
        factory,
        widths,
        batch=synthetic_batch(cfg, batch_size=batch, seq_len=seq),
        optimizer=OptimConfig(name="adam", lr=LR),
        steps=STEPS,
        seeds=SEEDS,
        precision=precision,
        batch_seeds=batch_seeds,
        workers=workers,
    )
    rep = report(data)
    return {
        "wall_s": time.perf_counter() - t0,
        "records": len(rep.slopes),
        "status": rep.status,
        "path": data.meta["seed_batching"] + (f", {workers} processes" if workers > 1 else ""),
    }


def run_mup(widths: list[int], batch: int = BATCH, seq: int = SEQ) -> dict:
    import math

    import torch
    from mup import MuAdam, MuReadout, set_base_shapes
    from mup.coord_check import get_coord_data

    from muscale.coord.run import synthetic_batch
    from muscale.models.gpt import GPT

    def build(width: int, init: bool = True):
        cfg = _gpt_cfg(width, seq)
        d_h = width // cfg.n_heads
        # muP attention 1/d, equal to 1/sqrt(d) at the base head_dim (16)
        mults = {"input": 1.0, "output": 1.0, "branch": 1.0, "attn_scale": math.sqrt(16) / d_h}
        model = GPT(cfg, mults)
        model.lm_head = MuReadout(width, cfg.vocab_size, bias=False, readout_zero_init=True)
        return model

    base, delta = build(64), build(128)

    def lazy(width: int):
        def f():
            model = build(width)
            set_base_shapes(model, base, delta=delta)
            with torch.no_grad():
                for blk in model.blocks:
                    blk.attn.q_proj.weight.zero_()
            return model

        return f

    x, y = synthetic_batch(_gpt_cfg(64, seq), batch_size=batch, seq_len=seq)
    loader = [(x, y.reshape(-1))]
    t0 = time.perf_counter()
    df = get_coord_data(
        {w: lazy(w) for w in widths},
        loader,
        optimizer="adam",
        lr=LR,
        mup=True,
        nsteps=STEPS + 1,
        nseeds=SEEDS,
        cuda=False,
        flatten_output=True,
        show_progress=False,
    )
    _ = MuAdam
    return {"wall_s": time.perf_counter() - t0, "records": len(df), "passed": None}


def _child(name: str, widths: list[int], batch: int, seq: int, preimport: bool) -> None:
    import resource

    if preimport:
        import torch._dynamo  # noqa: F401  (what the first optimizer would import)
    if name.endswith("proc"):  # muscale-<N>proc
        workers = int(name.removeprefix("muscale-").removesuffix("proc"))
        res = run_muscale(widths, "fp32", batch, seq, workers=workers)
        # RUSAGE_CHILDREN: the largest worker (the parent's own is below it)
        rss = max(
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        res["maxrss_mb"] = rss / 1024
        print(json.dumps(res))
        return
    runs = {
        "muscale": lambda w: run_muscale(w, "fp32", batch, seq),
        "muscale-vmap": lambda w: run_muscale(w, "fp32", batch, seq, batch_seeds=True),
        "muscale-bf16": lambda w: run_muscale(w, "bf16", batch, seq),
        "mup": lambda w: run_mup(w, batch, seq),
    }
    res = runs[name](widths)
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def _run_child(
    name: str, widths: list[int], threads: int | None, batch: int, seq: int, preimport: bool
) -> dict:
    """Run contender ``name`` (``name@N``: with N threads, whatever ``threads`` says)."""
    env = dict(os.environ)
    name, _, own = name.partition("@")
    if own or threads:
        env["OMP_NUM_THREADS"] = own or str(threads)
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(widths), str(batch), str(seq)]
        + (["--preimport"] if preimport else []),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load"] = load
    return res


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _arg(flag: str, default: int | None) -> int | None:
    return int(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default


def main() -> None:
    if {"-h", "--help"} & set(sys.argv):
        print(__doc__)
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(
            sys.argv[2],
            json.loads(sys.argv[3]),
            int(sys.argv[4]),
            int(sys.argv[5]),
            "--preimport" in sys.argv,
        )
        return
    widths = [64, 128, 256] if "--small" in sys.argv else WIDTHS
    if "--to512" in sys.argv:
        widths = [64, 128, 256, 512]
    repeats, threads = _arg("--repeats", 3) or 1, _arg("--threads", None)
    # --default-batch: the CLI's calibrated protocol (conf/coord_check.yaml: 2 x 16 tokens)
    batch, seq = (2, 16) if "--default-batch" in sys.argv else (BATCH, SEQ)
    names = ["muscale", "mup"] + (["muscale-bf16"] if "--bf16" in sys.argv else [])
    if "--seed-paths" in sys.argv:
        names += ["muscale-vmap"]
    workers = _arg("--workers", 1) or 1
    if workers > 1:
        names += [f"muscale-{workers}proc"] + (["mup@1"] if threads != 1 else [])
    preimport = "--preimport" in sys.argv
    if workers > (threads or 1):
        print(
            f"note: muscale-{workers}proc uses {workers} cores and the others {threads or 1} "
            f"thread(s): the fair table is --threads {workers} --workers {workers}"
        )
    print(f"uptime before: {_uptime()}")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeats):  # interleaved, the order rotating each round
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            runs[name].append(_run_child(name, widths, threads, batch, seq, preimport))
    print(
        f"GPT coord check: widths {widths}, depth {DEPTH}, batch {batch}x{seq}, "
        f"{STEPS} steps, {SEEDS} seeds, Adam lr {LR}, CPU, "
        f"{threads or 'default'} threads, {repeats} interleaved rounds"
        + (", torch._dynamo imported before the clock" if preimport else "")
    )
    refs = [n for n in names if n.startswith("mup")]  # a ratio column for each mup run
    head = "| contender | seed path | runs s (1-min load before each) | median s | peak RSS MB |"
    print(head + "".join(f" {m} / it |" for m in refs))
    print("| --- | --- | --- | ---: | ---: |" + " ---: |" * len(refs))
    med = {n: statistics.median(r["wall_s"] for r in rs) for n, rs in runs.items()}
    for name, rs in runs.items():
        each = ", ".join(f"{r['wall_s']:.2f} ({r['load']:.1f})" for r in rs)
        rss = max(r["maxrss_mb"] for r in rs)
        path = rs[0].get("path", "")
        ratios = "".join(f" {med[m] / med[name]:.2f}x |" for m in refs)
        print(f"| {name} | {path} | {each} | {med[name]:.2f} | {rss:.0f} |{ratios}")
    per_round = [
        u["wall_s"] / m["wall_s"] for m, u in zip(runs["muscale"], runs["mup"], strict=True)
    ]
    print(
        "per-round mup/muscale: "
        + ", ".join(f"{x:.2f}x" for x in per_round)
        + f" (median {statistics.median(per_round):.2f}x; a round whose two runs saw different "
        "loads gives a meaningless ratio, so read this beside the ratio of medians)"
    )


if __name__ == "__main__":
    main()
