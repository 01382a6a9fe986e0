"""Hostile inputs for every ``muscale`` command: one line on stderr, exit 2, nothing touched.

A seeded generator builds cases from tables of (command, key, values that must be refused):
wrong types, out-of-range numbers (``0``, ``-1``, ``inf``, ``nan``), bad choices, paths that
are missing, directories, garbage or read-only (``/proc``), foreign or tampered stores and
checkpoints, permissions, and a few two-process races. Every case runs in a fresh empty
directory of one temporary tree; after it the tool asserts

* exit status 2, exactly one line on stderr, no ``Traceback``;
* no file anywhere in the tree created, changed or removed (SHA-256 before and after).

Cases run in-process (``muscale.cli.main.main(argv)`` with stderr captured): a case is a
fraction of a second instead of a Python start-up. ``--soak`` runs the concurrency soak
instead: 4 sweeps (2 with the same name) on one store under random SIGKILLs, restarted
like a requeueing scheduler, then counts trials lost and trials run twice.

    python tools/fuzz_cli.py [--seed 0] [--n 0 (all)] [--list] [--json]
    python tools/fuzz_cli.py --soak [--kills 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- value tables

#: values that must be refused, by the kind of field
BAD: dict[str, list[str]] = {
    "pos_int": ["abc", "0", "-1", "1.5", "inf", "nan", "[]", "[1,2]", "true"],
    "nonneg_int": ["abc", "-1", "1.5", "inf", "nan", "[]"],
    "pos_float": ["abc", "0", "-1", "inf", "-inf", "nan", "1e400", "[]", "'1,2'"],
    "nonneg_float": ["abc", "-1", "inf", "-inf", "nan", "[]"],
    "choice": ["abc", "42", "[]", "NONE"],
    "bool": ["abc", "[]", "1.5"],
    "list": ["abc", "[]", "[abc]", "[-1]", "[0]", "[inf]", "[nan]", "{}"],
    "pos_float_list": ["abc", "[]", "[abc]", "[-1]", "[0]", "[inf]", "[nan]", "[0.1,nan]"],
    "format": ["xml", "JSON", "[]", "1"],
}

#: tiny, fast settings every train/sweep case starts from (a case that wrongly passes costs
#: a second, not a training run)
TINY = [
    "model=mlp",
    "data=teacher",
    "model.width=8",
    "param.base_width=8",
    "data.batch_size=8",
    "data.eval_batches=1",
    "trainer.max_steps=2",
    "trainer.eval_every=0",
    "trainer.progress=off",
    "trainer.device=cpu",
]

#: (command prefix, key, kind): the value-level table
FIELDS: list[tuple[str, str, str]] = [
    *[
        ("train", k, kind)
        for k, kind in [
            ("optim.lr", "pos_float"),
            ("optim.eps", "nonneg_float"),
            ("optim.weight_decay", "nonneg_float"),
            ("optim.momentum", "nonneg_float"),
            ("model.width", "pos_int"),
            ("model.depth", "pos_int"),
            ("param.base_width", "pos_int"),
            ("data.batch_size", "pos_int"),
            ("trainer.max_steps", "pos_int"),
            ("trainer.log_every", "pos_int"),
            ("trainer.grad_clip", "nonneg_float"),
            ("trainer.diverge_factor", "nonneg_float"),
            ("trainer.device", "choice"),
            ("trainer.precision", "choice"),
            ("trainer.parallel", "choice"),
            ("trainer.progress", "choice"),
            ("param", "choice"),
            ("optim", "choice"),
            ("trainer.compile", "bool"),
        ]
    ],
    *[
        ("sweep", k, kind)
        for k, kind in [
            ("sweep.widths", "list"),
            ("sweep.lrs", "pos_float_list"),
            ("sweep.lr_min", "pos_float"),
            ("sweep.lr_points", "pos_int"),
            ("sweep.strategy", "choice"),
            ("sweep.schemes", "list"),
            ("sweep.lease_s", "pos_float"),
            ("sweep.adaptive.tol", "pos_float"),
            ("sweep.params.alpha_out", "pos_float_list"),
            ("trainer.max_steps", "pos_int"),
        ]
    ],
    *[
        ("fit", k, kind)
        for k, kind in [
            ("slope_tol", "nonneg_float"),
            ("bootstrap", "pos_int"),
            ("format", "format"),
        ]
    ],
    *[
        ("transfer", k, kind)
        for k, kind in [
            ("target.width", "pos_int"),
            ("target.nodes", "pos_int"),
            ("target.nproc_per_node", "pos_int"),
            ("target.launcher", "choice"),
            ("method", "choice"),
            ("overwrite", "bool"),
            ("slope_tol", "nonneg_float"),
            ("format", "format"),
        ]
    ],
    *[
        ("scaling plan", k, kind)
        for k, kind in [("compute", "pos_float"), ("law", "choice"), ("format", "format")]
    ],
    *[("diagnose", k, kind) for k, kind in [("what", "choice"), ("format", "format")]],
    *[
        ("inspect", k, kind)
        for k, kind in [("model.width", "pos_int"), ("param", "choice"), ("format", "format")]
    ],
    *[
        ("coord-check", k, kind)
        for k, kind in [("steps", "pos_int"), ("expect", "choice"), ("format", "format")]
    ],
]

#: values a kind allows although the generic table lists them (None: the key is optional)
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("sweep", "sweep.lrs"): set(),
    ("diagnose", "what"): set(),
    ("coord-check", "expect"): {"NONE"},
    ("transfer", "method"): set(),
}


@dataclass
class Case:
    name: str
    argv: list[str]
    category: str
    setup: str | None = None  # name of a fixture action run before the case
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- fixtures


def make_fixtures(root: Path) -> dict[str, Path]:
    """Stores, checkpoints and odd files the cases point at (built once, then frozen)."""
    from muscale.sweep.store import Store

    fx = root / "fixtures"
    fx.mkdir()
    paths: dict[str, Path] = {"dir": fx / "adir", "file": fx / "afile.txt"}
    paths["dir"].mkdir()
    paths["file"].write_text("not a store\n")
    (fx / "garbage.bin").write_bytes(random.Random(1).randbytes(5000))
    paths["garbage"] = fx / "garbage.bin"
    (fx / "zero.db").write_bytes(b"")
    paths["zero"] = fx / "zero.db"
    other = sqlite3.connect(fx / "other.db")
    other.execute("CREATE TABLE accounts (id INTEGER, owner TEXT)")
    other.commit()
    other.close()
    paths["other"] = fx / "other.db"
    # a good store: 2 widths x 3 LRs of a fake sweep (records written through the API)
    good = fx / "good.db"
    s = Store(str(good))
    cfg = {
        "model": {"family": "mlp", "width": 8, "depth": 2},
        "param": {"scheme": "mup", "base_width": 8},
        "optim": {"name": "adamw", "lr": 0.1},
        "data": {"name": "teacher"},
        "trainer": {"max_steps": 2},
    }
    for w in (8, 16):
        for lr, loss in ((0.01, 1.0), (0.1, 0.5), (1.0, 0.9)):
            key = f"k{w}_{lr}"
            s.start(
                key,
                sweep="good",
                scheme="mup",
                width=w,
                depth=2,
                seed=0,
                lr=lr,
                hparams={},
                config=cfg,
                run_dir=str(fx / "runs" / key),
            )
            s.finish(
                key,
                final_loss=loss,
                final_eval_loss=loss,
                best_eval_loss=loss,
                diverged=False,
                wall_time=1.0,
            )
    s.close()
    _checkpoint_db(good)
    paths["good"] = good
    for name, sql in (
        ("newer", "UPDATE muscale_meta SET value='99'"),
        ("traversal", "UPDATE trials SET sweep='../../escape'"),
        ("badversion", "UPDATE muscale_meta SET value='x'"),
    ):
        p = fx / f"{name}.db"
        shutil.copy(good, p)
        db = sqlite3.connect(p)
        db.execute(sql)
        db.commit()
        db.close()
        paths[name] = p
    nocols = fx / "nocols.db"
    db = sqlite3.connect(nocols)
    db.execute("CREATE TABLE trials (key TEXT, sweep TEXT)")
    db.commit()
    db.close()
    paths["nocols"] = nocols
    truncated = fx / "truncated.db"
    truncated.write_bytes(good.read_bytes()[:1500])
    paths["truncated"] = truncated
    paths.update(_checkpoints(fx))
    (fx / "existing.yaml").write_text("keep: me\n")
    paths["existing_yaml"] = fx / "existing.yaml"
    (fx / "bad.csv").write_text("a,b\n1,2\n")
    paths["bad_csv"] = fx / "bad.csv"
    (fx / "bad.json").write_text("{not json")
    paths["bad_json"] = fx / "bad.json"
    return paths


def _checkpoint_db(path: Path) -> None:
    """Fold the WAL into the file so the fixture is one self-contained file."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


def _checkpoints(fx: Path) -> dict[str, Path]:
    """A real tiny checkpoint and tampered-then-rehashed copies of it."""
    import torch
    from safetensors.torch import load_file, save_file

    from muscale.cli.main import main

    run = fx / "run"
    with _quiet():
        rc = main(["train", *TINY, f"hydra.run.dir={run}"])
    if rc != 0:
        raise RuntimeError(f"fixture training failed with status {rc}")
    src = sorted((run / "checkpoints").glob("step_*"))[-1]

    def rehash(d: Path) -> None:
        meta = json.loads((d / "meta.json").read_text())
        for n in meta["files"]:
            b = (d / n).read_bytes()
            meta["files"][n] = {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        (d / "meta.json").write_text(json.dumps(meta))

    def edit_model(fn):  # type: ignore[no-untyped-def]
        def go(d: Path) -> None:
            t = load_file(d / "model.safetensors")
            fn(t)
            save_file(t, d / "model.safetensors")

        return go

    def first(t: dict) -> str:
        return sorted(t)[0]

    tampers = {
        "ck_missing": edit_model(lambda t: t.pop(first(t))),
        "ck_shape": edit_model(lambda t: t.__setitem__(first(t), torch.zeros(3, 3))),
        "ck_dtype": edit_model(lambda t: t.__setitem__(first(t), t[first(t)].double())),
        "ck_extra": edit_model(lambda t: t.__setitem__("evil", torch.zeros(2))),
        "ck_rng": lambda d: save_file(
            {"torch_cpu": torch.zeros(7, dtype=torch.uint8)}, d / "rng.safetensors"
        ),
        "ck_optim": lambda d: save_file({"nope/exp_avg": torch.zeros(2)}, d / "optim.safetensors"),
        "ck_step": lambda d: (d / "train_state.json").write_text(
            json.dumps({**json.loads((d / "train_state.json").read_text()), "step": -5})
        ),
        "ck_config": lambda d: (d / "meta.json").write_text(
            json.dumps({**json.loads((d / "meta.json").read_text()), "config": {}})
        ),
    }
    out: dict[str, Path] = {"ckpt": src, "ck_bare": src / "model.safetensors"}
    for name, fn in tampers.items():
        d = fx / name / "checkpoints" / src.name
        shutil.copytree(src, d)
        fn(d)
        rehash(d)
        out[name] = d
    corrupt = fx / "ck_corrupt" / "checkpoints" / src.name
    shutil.copytree(src, corrupt)
    with open(corrupt / "model.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 16)
    out["ck_corrupt"] = corrupt
    (fx / "garbage.safetensors").write_bytes(random.Random(2).randbytes(3000))
    out["ck_garbage"] = fx / "garbage.safetensors"
    return out


# --------------------------------------------------------------------------- cases


def build_cases(fx: dict[str, Path], seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    base = {
        "train": ["train", *TINY],
        "sweep": ["sweep", *TINY, "sweep.widths=[8]", "sweep.lrs=[0.1]"],
        "fit": ["fit", f"store={fx['good']}"],
        "transfer": ["transfer", f"store={fx['good']}", "target.width=64"],
        "scaling plan": ["scaling", "plan", "compute=1e21"],
        "diagnose": ["diagnose", f"checkpoint={fx['ckpt']}"],
        "inspect": ["inspect", *TINY[:4]],
        "coord-check": ["coord-check", "model=mlp", "widths=[8,16]", "seeds=1", "steps=1"],
    }
    # 1. types and ranges: every (field, bad value)
    for cmd, key, kind in FIELDS:
        for value in BAD[kind]:
            if value in ALLOWED.get((cmd, key), set()):
                continue
            argv = [a for a in base[cmd] if not a.startswith(f"{key}=")] + [f"{key}={value}"]
            if key in ("sweep.lr_min", "sweep.lr_points"):  # used only without sweep.lrs
                argv = [a for a in argv if not a.startswith("sweep.lrs=")]
            cases.append(Case(f"{cmd} {key}={value}", argv, "type/range"))
    # 2. stores (read commands and the sweep's write path)
    stores = [
        "dir",
        "file",
        "garbage",
        "zero",
        "other",
        "newer",
        "traversal",
        "badversion",
        "nocols",
        "truncated",
    ]
    for s in stores:
        for cmd in ("fit", "transfer", "scaling fit"):
            argv = {
                "fit": ["fit", f"store={fx[s]}"],
                "transfer": ["transfer", f"store={fx[s]}", "target.width=64"],
                "scaling fit": ["scaling", "fit", f"store={fx[s]}"],
            }[cmd]
            cases.append(Case(f"{cmd} store={s}", argv, "store"))
        if s not in ("zero", "traversal"):  # a fine store for a new sweep
            cases.append(
                Case(f"sweep store={s}", [*base["sweep"], f"sweep.store={fx[s]}"], "store")
            )
    for url in (
        "mysql://u@h/db",
        "nosuch://x",
        "postgresql://u@127.0.0.1:1/db",
        "/proc/x.db",
        "/proc/self/status",
    ):
        cases.append(Case(f"fit store={url}", ["fit", f"store={url}"], "store"))
        cases.append(Case(f"sweep store={url}", [*base["sweep"], f"sweep.store={url}"], "store"))
    cases.append(Case("fit store=missing", ["fit", "store=nope.db"], "path"))
    cases.append(Case("fit sweep=../x", [*base["fit"], "sweep=../x"], "path"))
    cases.append(Case("fit sweep=missing", [*base["fit"], "sweep=nope"], "path"))
    cases.append(Case("sweep name traversal", [*base["sweep"], "sweep.name=../../x"], "path"))
    cases.append(Case("sweep name slash", [*base["sweep"], "sweep.name=a/b"], "path"))
    cases.append(
        Case("sweep unknown param", [*base["sweep"], "+sweep.params.nope=[1]"], "type/range")
    )
    cases.append(
        Case(
            "sweep bad trial width",
            [
                *base["sweep"],
                "model=gpt",
                "model.n_heads=4",
                "sweep.widths=[8,10]",
                "data=synthetic",
                "data.seq_len=8",
                "model.depth=1",
            ],
            "validation",
        )
    )
    # 3. checkpoints: resume and diagnose
    for ck in (
        "ck_missing",
        "ck_shape",
        "ck_dtype",
        "ck_extra",
        "ck_rng",
        "ck_optim",
        "ck_step",
        "ck_config",
        "ck_corrupt",
        "ck_garbage",
        "ck_bare",
        "file",
        "dir",
    ):
        target = fx[ck] if ck in fx else fx["dir"]
        cases.append(
            Case(f"train resume={ck}", [*base["train"], f"trainer.resume={target}"], "checkpoint")
        )
        if ck not in ("ck_rng", "ck_optim", "ck_step"):  # diagnose reads the weights only
            cases.append(
                Case(
                    f"diagnose checkpoint={ck}", ["diagnose", f"checkpoint={target}"], "checkpoint"
                )
            )
    cases.append(Case("train resume=missing", [*base["train"], "trainer.resume=nope"], "path"))
    cases.append(Case("diagnose what=[]", [*base["diagnose"], "what=[]"], "type/range"))
    cases.append(Case("diagnose missing", ["diagnose", "checkpoint=nope"], "path"))
    # 4. outputs: existing, directories, under a file, read-only file systems
    for cmd, key in (("transfer", "out"), ("fit", "out")):
        for where in ("existing_yaml", "dir", "under_file", "proc"):
            if cmd == "fit" and where in ("existing_yaml", "dir"):
                continue  # fit's out is a directory (it may exist)
            value = {
                "existing_yaml": str(fx["existing_yaml"]),
                "dir": str(fx["dir"]),
                "under_file": f"{fx['file']}/sub/x.yaml",
                "proc": "/proc/muscale_out/x.yaml",
            }[where]
            cases.append(Case(f"{cmd} {key}={where}", [*base[cmd], f"{key}={value}"], "output"))
    cases.append(
        Case(
            "train run dir under a file",
            [*base["train"], f"hydra.run.dir={fx['file']}/run"],
            "output",
        )
    )
    # 5. semantics
    cases += [
        Case("train width 1e6", ["train", *TINY, "model.width=1000000"], "memory"),
        Case("train ddp without torchrun", [*base["train"], "trainer.parallel=ddp"], "semantics"),
        Case("train fsdp without torchrun", [*base["train"], "trainer.parallel=fsdp"], "semantics"),
        Case("train unknown key", [*base["train"], "trainer.nope=1"], "type/range"),
        Case("train unknown group", [*base["train"], "model=nope"], "type/range"),
        Case("transfer target below proxies", [*base["transfer"], "target.width=4"], "semantics"),
        Case("unknown command", ["frobnicate"], "type/range"),
        Case("scaling unknown sub", ["scaling", "nope"], "type/range"),
        Case("scaling fit missing data", ["scaling", "fit", "data=nope.csv"], "path"),
        Case("scaling fit bad csv", ["scaling", "fit", f"data={fx['bad_csv']}"], "path"),
        Case(
            "scaling plan bad fit",
            ["scaling", "plan", "compute=1e21", f"fit={fx['bad_json']}"],
            "path",
        ),
        Case(
            "scaling plan missing fit", ["scaling", "plan", "compute=1e21", "fit=nope.json"], "path"
        ),
    ]
    # 6. pairs of hostile overrides on one command (seeded)
    pool = [c for c in cases if c.category == "type/range" and len(c.argv) > 1]
    for _ in range(40):
        a, b = rng.sample(pool, 2)
        if a.argv[0] != b.argv[0] or a.argv[:2] != b.argv[:2]:
            continue
        extra = [x for x in b.argv if x not in a.argv]
        cases.append(Case(f"{a.name} + {extra}", a.argv + extra, "pairs"))
    rng.shuffle(cases)
    return cases


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _quiet():  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def snapshot(root: Path) -> dict[str, str]:
    """Path -> SHA-256 (or "<dir>") of everything under ``root``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.join(dirpath, d)] = "<dir>"
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                with open(p, "rb") as fh:
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
            except OSError as exc:
                out[p] = f"<unreadable {exc.errno}>"
    return out


def run_case(case: Case, workdir: Path) -> tuple[int, str]:
    """Run one case in-process in ``workdir``; (exit status, captured stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    from muscale.cli.main import main

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with _quiet() as (_, err):
            try:
                rc = main(list(case.argv))
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                err.write("Traceback (most recent call last):\n" + traceback.format_exc())
                rc = 1
        return int(rc), err.getvalue()
    finally:
        os.chdir(cwd)
        GlobalHydra.instance().clear()


def check(case: Case, rc: int, stderr: str, changed: list[str]) -> list[str]:
    problems = []
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc != 2:
        problems.append(f"exit {rc}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    if "Traceback" in stderr:
        problems.append("traceback")
    if changed:
        problems.append(f"touched {changed[:3]}")
    return problems


def fuzz(seed: int, n: int, as_json: bool, list_only: bool) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="muscale-fuzz-"))
    try:
        with _quiet():
            fx = make_fixtures(tmp)
        cases = build_cases(fx, seed)
        if n:
            cases = cases[:n]
        if list_only:
            for c in cases:
                print(f"{c.category:11s} {c.name}")
            print(f"{len(cases)} cases")
            return 0
        results = []
        t0 = time.perf_counter()
        for i, case in enumerate(cases):
            work = tmp / "cases" / f"{i:04d}"
            work.mkdir(parents=True)
            before = snapshot(tmp)
            rc, err = run_case(case, work)
            after = snapshot(tmp)
            changed = sorted(
                k.removeprefix(str(tmp) + "/")
                for k in set(before) | set(after)
                if before.get(k) != after.get(k)
            )
            problems = check(case, rc, err, changed)
            results.append(
                {
                    "case": case.name,
                    "category": case.category,
                    "rc": rc,
                    "stderr": err.strip()[-400:],
                    "problems": problems,
                }
            )
            if problems and not as_json:
                print(f"FAIL {case.name}: {'; '.join(problems)}\n     {err.strip()[-300:]}")
            shutil.rmtree(work, ignore_errors=True)
        wall = time.perf_counter() - t0
        return _summary(results, wall, as_json)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _summary(results: list[dict], wall: float, as_json: bool) -> int:
    by_cat: dict[str, list[int]] = {}
    for r in results:
        tally = by_cat.setdefault(r["category"], [0, 0])
        tally[0] += 1
        tally[1] += bool(r["problems"])
    failed = sum(bool(r["problems"]) for r in results)
    if as_json:
        print(
            json.dumps(
                {
                    "cases": len(results),
                    "failures": failed,
                    "wall_s": wall,
                    "by_category": by_cat,
                    "results": results,
                },
                indent=1,
            )
        )
    else:
        print(f"\n{'category':12s} {'cases':>6s} {'failures':>9s}")
        for cat, (total, bad) in sorted(by_cat.items()):
            print(f"{cat:12s} {total:6d} {bad:9d}")
        print(f"{'total':12s} {len(results):6d} {failed:9d}   ({wall:.4g} s)")
    return 1 if failed else 0


# --------------------------------------------------------------------------- concurrency


def races(tmp: Path, fx: dict[str, Path]) -> list[str]:
    """Two-process races; returns the problems found (empty: all good)."""
    problems = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    out = tmp / "race.yaml"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "muscale",
                "transfer",
                f"store={fx['good']}",
                "target.width=64",
                f"out={out}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    rcs = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
    if sorted(rc for rc, _ in rcs) != [0, 2]:
        problems.append(f"two transfers to one out: statuses {[rc for rc, _ in rcs]}")
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith(".race.yaml")]
    if leftovers:
        problems.append(f"temporaries left: {leftovers}")
    # 8 processes claim the same 12 trials: each trial is claimed exactly once
    store = tmp / "claims.db"
    code = (
        "import sys; from muscale.sweep.store import Store, new_owner\n"
        "s = Store(sys.argv[1]); o = new_owner(); won = []\n"
        "for i in range(12):\n"
        "    r = s.claim(f'k{i}', owner=o, sweep='race', scheme='mup', width=8, depth=1,"
        " seed=0, lr=0.1, hparams={}, config={}, run_dir='x')\n"
        "    won += [f'k{i}'] if r == 'claimed' else []\n"
        "import time; time.sleep(3); print(' '.join(won))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(8)
    ]
    won = [k for p in procs for k in (p.communicate()[0] or "").split()]
    if sorted(won) != sorted(f"k{i}" for i in range(12)):
        problems.append(f"claims: {len(won)} wins for 12 trials ({sorted(won)})")
    return problems


# --------------------------------------------------------------------------- soak


def soak(seed: int, kills: int, steps: int, code: Path = ROOT) -> int:
    """4 sweeps (names A, A, B, C) on one store, random SIGKILLs, restarts until done.

    ``code``: the muscale checkout the sweeps run (another one, e.g. a build without
    leases, is the negative control of the "run twice" audit)."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="muscale-soak-"))
    env = {
        **os.environ,
        "PYTHONPATH": f"{code}:{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "HYDRA_FULL_ERROR": "0",
    }
    widths, lrs = [8, 16], [0.01, 0.03, 0.1]
    names = ["A", "A", "B", "C"]

    def cmd(name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "muscale",
            "sweep",
            *TINY[:-1],
            f"trainer.max_steps={steps}",
            "trainer.log_every=5",
            "trainer.checkpoint_every=5",
            "trainer.progress=plain",
            f"sweep.name={name}",
            f"sweep.widths=[{','.join(map(str, widths))}]",
            f"sweep.lrs=[{','.join(map(str, lrs))}]",
            f"sweep.store={tmp / 'store.db'}",
            *(["sweep.lease_s=30"] if code == ROOT else []),
            f"hydra.sweep.dir={tmp / 'runs' / name}",
            "hydra.job_logging.formatters.simple.format='%(process)d %(message)s'",
        ]

    procs: dict[int, subprocess.Popen] = {}
    killed_pids: list[int] = []
    logs = []

    def start(i: int) -> None:
        log = open(tmp / f"sweep{i}_{len(logs)}.log", "w")  # noqa: SIM115 - closed at the end
        logs.append(log)
        procs[i] = subprocess.Popen(
            cmd(names[i]), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp
        )

    t0 = time.perf_counter()
    for i in range(len(names)):
        start(i)
    done: set[int] = set()
    crashes: list[int] = []
    kills_left = kills
    while len(done) < len(names):
        time.sleep(rng.uniform(2.0, 6.0))
        for i, p in procs.items():
            if i not in done and p.poll() is not None:
                if p.returncode == 0:
                    done.add(i)
                elif crashes.append(i) or len(crashes) > 3:
                    raise RuntimeError(f"sweep {i} keeps failing: see {logs[-1].name}")
                else:
                    start(i)  # crashed by itself: requeue
        alive = [i for i in procs if i not in done and procs[i].poll() is None]
        owners = _lease_pids(tmp / "store.db")  # kill mid-trial: a sweep holding a lease
        alive = [i for i in alive if procs[i].pid in owners]
        if kills_left and alive:
            i = rng.choice(alive)
            victims = [procs[i].pid]
            from muscale.train.stop import descendants

            victims += descendants(procs[i].pid)
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            procs[i].wait()
            killed_pids += victims
            kills_left -= 1
            start(i)
        if time.perf_counter() - t0 > 1800:
            break
    for log in logs:
        log.close()
    wall = time.perf_counter() - t0
    report = _soak_report(tmp, names, widths, lrs, steps, killed_pids, kills - kills_left, wall)
    print(json.dumps(report, indent=1))
    if os.environ.get("MUSCALE_SOAK_KEEP"):
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report["trials_lost"] == 0 and report["trials_run_twice"] == 0 else 1


def _lease_pids(path: Path) -> set[int]:
    """Pids that hold a trial lease right now (read-only look at the store)."""
    if not path.exists():
        return set()
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        rows = db.execute(
            "SELECT pid FROM trials WHERE status = 'running' AND owner IS NOT NULL"
        ).fetchall()
        db.close()
    except sqlite3.Error:
        return set()
    return {int(r[0]) for r in rows if r[0]}


def _soak_report(
    tmp: Path,
    names: list[str],
    widths: list[int],
    lrs: list[float],
    steps: int,
    killed: list[int],
    kills: int,
    wall: float,
) -> dict:
    from muscale.sweep.store import Store
    from muscale.sweep.trial_spec import Trial

    store = Store(str(tmp / "store.db"), mode="read")
    expected = {
        Trial(sweep=n, scheme="mup", width=w, seed=0, lr=lr).key: n
        for n in set(names)
        for w in widths
        for lr in lrs
    }
    recs = {r.key: r for n in set(names) for r in store.records(n, status=None)}
    lost = [k for k in expected if k not in recs or recs[k].status != "done"]
    # a completed training logs "step <steps>/<steps>" once, with its pid; completions by a
    # pid that was later SIGKILLed (before recording) are legitimately redone
    completions: dict[str, set[int]] = {k: set() for k in expected}
    resumed = 0
    for key in expected:
        for log in (tmp / "runs").glob(f"*/{key}/*.log"):
            for line in log.read_text(errors="replace").splitlines():
                pid, _, msg = line.partition(" ")
                if msg.startswith(f"step {steps}/{steps} ") and pid.isdigit():
                    completions[key].add(int(pid))
                resumed += msg.startswith("resumed from")
    twice = [k for k, pids in completions.items() if len(pids - set(killed)) > 1]
    return {
        "sweeps": len(names),
        "trials_expected": len(expected),
        "kills": kills,
        "trials_lost": len(lost),
        "trials_run_twice": len(twice),
        "trials_resumed_after_kill": resumed,
        "attempts_total": sum(r.attempts for r in recs.values()),
        "max_attempts": max((r.attempts for r in recs.values()), default=0),
        "wall_s": round(wall, 1),
        "lost": lost,
        "twice": twice,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=0, help="run only the first N cases (0: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--soak", action="store_true")
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--races", action="store_true", help="also run the two-process races")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout the soak's sweeps run")
    args = ap.parse_args()
    if args.soak:
        return soak(args.seed, args.kills, args.steps, args.code.resolve())
    rc = fuzz(args.seed, args.n, args.json, args.list)
    if args.races:
        tmp = Path(tempfile.mkdtemp(prefix="muscale-race-"))
        try:
            with _quiet():
                fx = make_fixtures(tmp)
            problems = races(tmp, fx)
            print("races:", "ok" if not problems else "; ".join(problems))
            rc = rc or bool(problems)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
