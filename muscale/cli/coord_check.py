"""``muscale coord-check``: coordinate check of a muscale model over widths or depths.

    muscale coord-check model=gpt param=mup expect=mup widths=[64,128,256,512] steps=3 seeds=3
    muscale coord-check model=mlp param=sp optim=adam expect=mup format=json   # exit 1
    muscale coord-check model=mlp model.residual=true param.depth_alpha=0.5 depths=[2,4,8,16]

Writes ``report.json`` and ``coord.png`` into ``out`` (default
``outputs/coord_check/<timestamp>``) and prints a table; ``format=json`` prints only the
report. Exit status: 0 passed, 1 failed, 2 bad input, 3 inconclusive (the data cannot
decide: the message says which seeds or widths would).

An INCONCLUSIVE verdict first collects more data and judges all of it again, up to
``extend=`` rounds (default 2): the widest width doubled when a slope drifts at finite width,
more seeds when the interval is wide from seed noise, never beyond ``max_size=`` (default 4x
the largest width) nor a width that would not fit in memory. One line says what was added
and why; ``extend=0`` turns it off.

The command runs on one intra-op thread (``threads=1``; ``threads=null``: torch's default):
the check's matmuls are tiny, and two threads stall on a busy machine. ``workers=N`` trains
the widths and seeds in N forked processes (Linux, CPU; the same numbers).

Without ``expect=`` the run is judged against what its own plan claims (``param=sp`` is
checked for SP's signature); ``expect=mup`` asks whether the model is μP.

With Adam-family optimizers ``expect=mup`` also runs the Adam-ε probe: ε/√v̂ from the
optimizer state, extrapolated to ``eps_horizon=`` (default width 65536); it FAILS when an
unscaled ε reaches 10 % of √v̂ by then (fix: ``param.scale_eps=true``).
"""

from __future__ import annotations

import sys

from muscale.cli.common import check_format, compose, print_json
from muscale.errors import check_positive_int


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(__doc__ or "")
        return 0
    cfg = compose("coord_check", argv)
    fmt = check_format(str(cfg.format))
    threads = cfg.get("threads")
    if threads is not None:  # this command's own process (the library call leaves it alone)
        check_positive_int("threads", threads)
        import torch

        torch.set_num_threads(int(threads))
    from muscale.coord.check import check_from_cfg, default_out, save

    rep = check_from_cfg(cfg)
    out = cfg.out or default_out()
    paths = save(rep, out, plot=bool(cfg.plot))
    if fmt == "json":
        d = rep.to_json()
        d["out"] = str(out)
        print_json(d)
    else:
        print_summary(rep, paths)
    return EXIT[rep.status]


#: exit status per verdict (2 is every user error, see muscale.cli.main)
EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}


def print_summary(rep, paths) -> None:  # type: ignore[no-untyped-def]
    """A rich table: rows = modules; judged columns = slope ± half-width of the 90 % interval
    of the level at init, the level and the change over steps 1..T (red: failed, yellow:
    inconclusive, dim: not judged); then the per-step change slopes (shown, not judged)."""
    from rich.console import Console
    from rich.table import Table

    from muscale.coord.verdict import extension_line

    d = rep.data
    table = Table(
        title=f"coordinate check: slope of log2(stat) vs log2({d.axis}), ± 90 % interval "
        f"over {d.seeds} seed(s) ({d.axis}s {d.sizes}, {d.wall_s:.1f} s)"
    )
    table.add_column("module")
    table.add_column("kind")
    stats = {"init": "A0", "level": f"A1..{d.steps}", "change": f"D1..{d.steps}"}
    for head in stats.values():
        table.add_column(head, justify="right")
    table.add_column("D per step", justify="right")
    by = {(s.module, s.stat): s for s in rep.slopes}
    style = {"fail": "red", "inconclusive": "yellow", None: "dim"}
    for p in d.points:
        cells = []
        for stat in stats:
            sl = by.get((p.label, stat))
            if sl is None:
                cells.append("[dim]0[/dim]")
                continue
            txt = f"{sl.slope:+.2f}±{sl.half:.2f}" if sl.half == sl.half else f"{sl.slope:+.2f}"
            color = style.get(sl.status)
            cells.append(f"[{color}]{txt}[/{color}]" if color else txt)
        ch = by.get((p.label, "change"))
        cells.append(" ".join(f"{v:+.2f}" for v in ch.step_slopes) if ch else "")
        table.add_row(p.label, p.kind, *cells)
    con = Console(file=sys.stdout, width=140)
    con.print(table)
    con.print(
        "A0 = level mean|x_0| at init, A = level mean|x_t|, D = change mean|x_t - x_0| (slopes "
        "averaged over steps); red: clearly off the band, yellow: undecided, dim: not judged, "
        "0: identically zero (skipped)"
    )
    if rep.eps is not None:
        con.print(eps_table(rep.eps))
    color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[rep.status]
    if rep.extensions:
        con.print(extension_line(rep.extensions, rep.status), highlight=False, soft_wrap=True)
    con.print(f"[{color}]" + rep.verdict(extension=False), highlight=False)
    con.print("written: " + ", ".join(str(p) for p in paths.values()))


def eps_table(ev, rows: int = 6):  # type: ignore[no-untyped-def]
    """The Adam-ε probe: the judged bulk (median over tensors) and the tensors whose ratio
    ε/√v̂ grows most by the horizon (muscale.coord.eps_probe)."""
    from rich.table import Table

    color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[ev.status]
    table = Table(
        title=f"Adam ε probe: ε/√v̂ after the steps, extrapolated to width {ev.horizon:.0f} "
        f"(threshold {ev.threshold:g}; [{color}]{ev.status.upper()}[/{color}])"
    )
    for head, just in (
        ("tensor", "left"),
        ("ε", "right"),
        (f"ε/√v̂ at {ev.widest:.0f}", "right"),
        ("slope ± 90 %", "right"),
        (f"at {ev.horizon:.0f}", "right"),
        (f"reaches {ev.threshold:g} at", "right"),
    ):
        table.add_column(head, justify=just)

    def cross(w: float | None) -> str:
        return f"{w:.0f}" if w is not None and w < 1e7 else ("never" if w is None else f"{w:.4g}")

    table.add_row(
        f"[{color}]bulk (median of {len(ev.tensors)})[/{color}]",
        "",
        f"{ev.ratio_max:.4g}",
        f"{ev.slope:+.3g}±{ev.half:.2g}",
        f"{ev.ratio_at:.4g}",
        cross(ev.crossing),
    )
    # a passing probe lists only tensors that still reach the threshold by the horizon (a
    # note); otherwise the ones closest to it: the full table is in the JSON report
    ranked = sorted(ev.tensors, key=lambda t: -t.ratio_at)
    if ev.status == "pass":
        ranked = [t for t in ranked if t.ratio_at >= ev.threshold]
    for t in ranked[:rows]:
        table.add_row(
            t.tensor,
            f"{t.eps:.4g}",
            f"{t.ratio_max:.4g}",
            f"{t.slope:+.3g}",
            f"{t.ratio_at:.4g}",
            cross(t.crossing),
        )
    return table
