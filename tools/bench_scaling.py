"""Benchmark: the batched Approach 3 fit against a loop of scipy.optimize.minimize calls.

Both fit L(N, D) = E + A/N^alpha + B/D^beta to the Chinchilla points (less the 5
highest-loss ones, as Besiroglu et al. 2024) from the standard grid of 4500 starts, in the
same process, and must reach the same optimum. The loops:

* ``scipy loop``: the straightforward one, as in the Epoch AI replication notebook:
  ``minimize(huber_objective, x0, method="L-BFGS-B")`` per start, gradient by finite
  differences, objective with ``np.logaddexp`` and ``scipy.special.huber``;
* ``scipy loop + jac``: the same loop given our analytic gradient (a stronger baseline).

By default the loops run on a random subset of starts (``--loop-starts``) and their time is
extrapolated to 4500 starts, labelled as such; ``--full-loop`` runs every start.

BLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1`` etc., unless already set): on a
shared, oversubscribed machine OpenBLAS's spinning threads slow scipy's L-BFGS-B by ~50x
(measured: 400 ms vs 8 ms per start), which would flatter the batched fit.

    python tools/bench_scaling.py [--loop-starts 450] [--full-loop] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from scipy.special import huber  # noqa: E402

from muscale.scaling.approach3 import fit_approach3, objective, standard_grid  # noqa: E402
from muscale.scaling.io import canonical  # noqa: E402

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "chinchilla"
    / "svg_extracted_data.csv"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--loop-starts", type=int, default=450, help="starts timed in each loop")
    ap.add_argument("--full-loop", action="store_true", help="loop over all 4500 starts")
    ap.add_argument("--repeat", type=int, default=3, help="batched fit: best of this many")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    raw = pd.read_csv(args.data)
    df = canonical(raw, {"N": "Model Size", "C": "Training FLOP", "loss": "loss"})
    kept = df.drop(df["loss"].nlargest(5).index)
    log_n, log_d, log_l = (np.log(kept[k].to_numpy()) for k in ("N", "D", "loss"))
    grid = standard_grid()

    times, cpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_approach3(df, drop_top=5)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_batch, c_batch = min(times), min(cpus)

    def plain(p: np.ndarray) -> float:
        a, b, e, alpha, beta = p
        pred = np.logaddexp.reduce([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
        return float(np.sum(huber(1e-3, pred - log_l)))

    def with_jac(p: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective(p[None], log_n, log_d, log_l)
        return float(f[0]), g[0]

    if args.full_loop:
        idx = np.arange(len(grid))
    else:
        idx = np.random.default_rng(args.seed).choice(len(grid), args.loop_starts, replace=False)
    rows = [
        ("batched L-BFGS (muscale)", len(grid), t_batch, t_batch, c_batch, fit.objective, fit.theta)
    ]
    for name, fun, jac in (("scipy loop", plain, False), ("scipy loop + jac", with_jac, True)):
        t0, c0 = time.perf_counter(), time.process_time()
        best = (np.inf, None)
        for i in idx:
            r = minimize(fun, grid[i], jac=jac, method="L-BFGS-B")
            if r.fun < best[0]:
                best = (float(r.fun), r.x)
        dt, ct = time.perf_counter() - t0, time.process_time() - c0
        scale = len(grid) / len(idx)
        rows.append((name, len(idx), dt, dt * scale, ct * scale, best[0], best[1]))

    extrap = "" if args.full_loop else f" (loops timed on {len(idx)} random starts, extrapolated)"
    print(f"Approach 3 on {args.data}: {fit.n_points} points, 4500 starts{extrap}")
    print(f"batched fit: best of {args.repeat} runs {', '.join(f'{t:.2f}' for t in times)} s")
    print(
        f"machine load average (1 min) at start: {_load()}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    head = (
        f"{'method':<26} {'starts':>6} {'wall s':>8} {'4500-start s':>13} {'speed-up':>9} "
        f"{'CPU s (4500)':>13} {'CPU speed-up':>12} {'best objective':>15} {'alpha':>7} "
        f"{'beta':>7} {'E':>6}"
    )
    print(head)
    print("-" * len(head))
    for name, n, dt, full, cpu, f, x in rows:
        star = "" if n == len(grid) else "*"
        print(
            f"{name:<26} {n:>6} {dt:>8.2f} {full:>12.2f}{star:1} {full / t_batch:>8.1f}x "
            f"{cpu:>12.2f}{star:1} {cpu / c_batch:>11.1f}x "
            f"{f:>15.10f} {x[3]:>7.4f} {x[4]:>7.4f} {np.exp(x[2]):>6.3f}"
        )
    if not args.full_loop:
        print("* extrapolated from the subset: time per start x 4500")
    loop_best = min(r[5] for r in rows[1:])
    same = abs(loop_best - fit.objective) <= 1e-6 * fit.objective
    print(
        f"same optimum: {'yes' if same else 'NO'} (relative objective gap "
        f"{(loop_best - fit.objective) / fit.objective:+.2e}; batched <= loop: "
        f"{fit.objective <= loop_best + 1e-15})"
    )
    target = t_batch <= 10.0 and rows[1][3] / t_batch >= 20.0
    print(f"target (<= 10 s and >= 20x the scipy loop): {'met' if target else 'NOT met'}")
    return 0 if same else 1


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
