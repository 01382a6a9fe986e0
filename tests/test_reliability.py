"""Nothing lost, nothing touched that isn't ours, every bad input one line (issue 15).

The store opens read-only for reads and refuses foreign files; leases give every trial one
owner; checkpoints are checked against the plan before a run starts; outputs are never
overwritten silently. The last test runs ~30 representative cases of ``tools/fuzz_cli.py``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muscale.errors import ConfigError, UserError, check_positive
from muscale.files import write_text_new
from muscale.sweep.store import SCHEMA_VERSION, Store, check_sweep_name, lease_alive

TRIAL = dict(
    sweep="s", scheme="mup", width=8, depth=1, seed=0, lr=0.1, hparams={}, config={}, run_dir="r"
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(d: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in d.iterdir() if p.is_file()}


# --------------------------------------------------------------------------- store


def test_read_mode_never_changes_a_file(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE accounts (id INTEGER)")
    db.commit()
    db.close()
    (tmp_path / "zero.db").write_bytes(b"")
    (tmp_path / "junk.db").write_bytes(os.urandom(4096))
    before = _files(tmp_path)
    for name, msg in (
        ("app.db", "not a muscale store"),
        ("zero.db", "not a muscale store"),
        ("junk.db", "not a database"),
    ):
        with pytest.raises(UserError, match=msg):
            Store(str(tmp_path / name), mode="read")
    with pytest.raises(UserError, match="not a muscale store"):
        Store(str(foreign))  # a write command refuses another application's database too
    assert _files(tmp_path) == before  # no table, no WAL switch, no -wal/-shm files
    journal = sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "delete"


def test_read_mode_reads_a_store_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = Store(str(path))
    s.start("k", **TRIAL)
    s.finish(
        "k", final_loss=1.0, final_eval_loss=1.0, best_eval_loss=0.5, diverged=False, wall_time=1.0
    )
    s.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}
    r = Store(str(path), mode="read")
    assert [x.loss for x in r.records("s")] == [0.5] and r.version == SCHEMA_VERSION
    with pytest.raises(RuntimeError, match="read-only"):
        r.start("k2", **TRIAL)
    r.close()
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == before


#: as root, drop the capabilities that bypass file permissions (CI runs as root), so a
#: read-only directory is read-only for the child too
_NO_DAC = (
    ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
     "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() == 0
    else []
)  # fmt: skip


def test_read_mode_works_in_a_read_only_directory(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    s = Store(str(d / "s.db"))
    s.start("k", **TRIAL)
    s.close()
    before = {p.name: _sha(p) for p in d.iterdir()}
    probe = (
        "import sys; from muscale.sweep.store import Store\n"
        "open(sys.argv[1] + '/probe', 'w').close() if sys.argv[2] == 'write' else None\n"
        "print(len(Store(sys.argv[1] + '/s.db', mode='read').records('s', status=None)))"
    )
    os.chmod(d, 0o555)
    try:
        write = subprocess.run(
            [*_NO_DAC, sys.executable, "-c", probe, str(d), "write"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        read = subprocess.run(
            [*_NO_DAC, sys.executable, "-c", probe, str(d), "read"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        os.chmod(d, 0o755)
    assert write.returncode != 0 and "Permission" in write.stderr  # the directory is read-only
    assert read.returncode == 0 and read.stdout.strip() == "1", read.stderr[-2000:]
    assert {p.name: _sha(p) for p in d.iterdir()} == before


def test_schema_versions_newer_refused_legacy_migrated_by_writes_only(tmp_path: Path) -> None:
    legacy = tmp_path / "v0.db"
    db = sqlite3.connect(legacy)
    cols = (
        "key TEXT PRIMARY KEY, sweep TEXT, status TEXT, scheme TEXT, width INT, depth INT, "
        "seed INT, lr FLOAT, hparams TEXT, config TEXT, final_loss FLOAT, "
        "final_eval_loss FLOAT, best_eval_loss FLOAT, diverged BOOLEAN, wall_time FLOAT, "
        "attempts INT, git_commit TEXT, run_dir TEXT, host TEXT, error TEXT, "
        "updated_at FLOAT"
    )
    db.execute(f"CREATE TABLE trials ({cols})")
    db.execute(
        "INSERT INTO trials (key, sweep, status, attempts, best_eval_loss) "
        "VALUES ('k', 's', 'done', 1, 0.25)"
    )
    db.commit()
    db.close()
    before = _sha(legacy)
    assert Store(str(legacy), mode="read").version == 0  # read as is
    assert _sha(legacy) == before
    w = Store(str(legacy))  # a write command migrates
    assert w.version == 1 and w.records("s")[0].loss == 0.25
    assert w.claim("k2", owner="o", **TRIAL) == "claimed"
    w.close()
    db = sqlite3.connect(legacy)
    db.execute("UPDATE muscale_meta SET value = '2'")
    db.commit()
    db.close()
    for mode in ("read", "write"):
        with pytest.raises(UserError, match="schema version 2, newer"):
            Store(str(legacy), mode=mode)


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".hidden", "x" * 201, "a\nb", 3])
def test_unsafe_sweep_names_refused(name: object) -> None:
    with pytest.raises(UserError):
        check_sweep_name(name)


def test_unsafe_name_read_back_from_a_store_is_refused(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "s.db"))
    s.start("k", **TRIAL)
    with s.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE trials SET sweep = '../../etc'")
    with pytest.raises(UserError, match="not allowed"):
        s.records("../../etc")


# --------------------------------------------------------------------------- leases


def test_lease_claim_semantics(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "s.db"))
    assert s.claim("k", owner="a", **TRIAL) == "claimed"
    assert s.claim("k", owner="b", **TRIAL) == "leased"  # a is alive (this pid, fresh)
    assert s.lease_states(["k", "new"]) == {"k": "leased", "new": "free"}
    assert s.heartbeat("k", "a") and not s.heartbeat("k", "b")
    # an expired heartbeat (crashed owner on another host) may be taken over
    with s.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE trials SET heartbeat = 0, host = 'elsewhere'")
    assert s.claim("k", owner="b", **TRIAL) == "claimed"
    assert not s.heartbeat("k", "a")  # a lost it
    s.finish(
        "k",
        final_loss=1.0,
        final_eval_loss=None,
        best_eval_loss=None,
        diverged=False,
        wall_time=1.0,
    )
    assert s.claim("k", owner="c", **TRIAL) == "done"
    assert s.get("k").attempts == 2


def test_dead_owner_on_this_host_frees_its_lease_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    assert not lease_alive(os.uname().nodename, proc.pid, time.time(), 120)
    s = Store(str(tmp_path / "s.db"))
    s.claim("k", owner="dead", **TRIAL)
    with s.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE trials SET pid = {proc.pid}")
    assert s.claim("k", owner="me", **TRIAL) == "claimed"


def _claimer(path: str, n: int, q: mp.Queue) -> None:
    from muscale.sweep.store import Store, new_owner

    s = Store(path)
    owner = new_owner()
    q.put([f"k{i}" for i in range(n) if s.claim(f"k{i}", owner=owner, **TRIAL) == "claimed"])
    time.sleep(1.0)  # stay alive so the leases stay live


def test_racing_claimants_each_trial_claimed_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(tmp_path / "s.db"), 10, q)) for _ in range(4)]
    for p in procs:
        p.start()
    won = [k for _ in procs for k in q.get(timeout=120)]
    for p in procs:
        p.join()
    assert sorted(won) == sorted(f"k{i}" for i in range(10))


# --------------------------------------------------------------------------- values, files


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, 0, "abc", None, True])
def test_check_positive_refuses_non_finite_and_non_numbers(value: object) -> None:
    with pytest.raises(ConfigError):
        check_positive("optim.lr", value)  # type: ignore[arg-type]


def test_write_text_new_refuses_overwrite_and_leaves_no_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    write_text_new(out, "a: 1\n")
    with pytest.raises(UserError, match="exists: pass overwrite=true"):
        write_text_new(out, "b: 2\n")
    assert out.read_text() == "a: 1\n"
    write_text_new(out, "b: 2\n", overwrite=True)
    assert out.read_text() == "b: 2\n"
    with pytest.raises(UserError, match="is a directory"):
        write_text_new(tmp_path, "x")
    with pytest.raises(UserError, match="cannot write"):
        write_text_new(out / "sub" / "x.yaml", "x")  # under a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"]


def test_checkpoint_publish_race_leaves_one_complete_step(tmp_path: Path) -> None:
    from muscale.train.checkpoint import _publish

    final = tmp_path / "step_0000001"
    tmps = []
    for i in range(2):  # two writers finished the same step
        t = tmp_path / f".tmp-{i}"
        t.mkdir()
        (t / "meta.json").write_text(str(i))
        tmps.append(t)
    for t in tmps:
        _publish(t, final)
    assert (final / "meta.json").read_text() == "1"  # the re-save replaced the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0000001"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools import fuzz_cli

    root = tmp_path_factory.mktemp("fuzz")
    with fuzz_cli._quiet():
        fx = fuzz_cli.make_fixtures(root)
    return fuzz_cli, root, fx


#: one or two cases of every kind the fuzzer generates (names from tools/fuzz_cli.py)
REPRESENTATIVE = [
    "train optim.lr=inf",
    "train optim.eps=inf",
    "train model.width=abc",
    "train param=42",
    "train trainer.parallel=abc",
    "train width 1e6",
    "train ddp without torchrun",
    "train resume=ck_missing",
    "train resume=ck_shape",
    "train resume=ck_dtype",
    "train resume=ck_rng",
    "train resume=ck_optim",
    "train resume=ck_step",
    "train run dir under a file",
    "sweep sweep.widths=abc",
    "sweep sweep.lrs=[nan]",
    "sweep sweep.lrs=[inf]",
    "sweep store=dir",
    "sweep store=garbage",
    "sweep store=mysql://u@h/db",
    "sweep bad trial width",
    "sweep name traversal",
    "fit store=other",
    "fit store=zero",
    "fit store=newer",
    "fit store=traversal",
    "fit slope_tol=-1",
    "transfer target.width=abc",
    "transfer out=existing_yaml",
    "transfer out=dir",
    "diagnose checkpoint=ck_bare",
    "diagnose checkpoint=ck_garbage",
    "diagnose what=[]",
    "scaling fit store=truncated",
]


@pytest.mark.slow
def test_representative_hostile_inputs_one_line_exit_2_nothing_touched(fuzz) -> None:  # type: ignore[no-untyped-def]
    fuzz_cli, root, fx = fuzz
    cases = {c.name: c for c in fuzz_cli.build_cases(fx, seed=0)}
    assert len(cases) >= 300
    failures = []
    for i, name in enumerate(REPRESENTATIVE):
        work = root / "cases" / str(i)
        work.mkdir(parents=True)
        before = fuzz_cli.snapshot(root)
        rc, err = fuzz_cli.run_case(cases[name], work)
        after = fuzz_cli.snapshot(root)
        changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
        problems = fuzz_cli.check(cases[name], rc, err, changed)
        if problems:
            failures.append(f"{name}: {problems} {err.strip()[-200:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_sigterm_stops_train_with_its_own_exit_status(tmp_path: Path) -> None:
    from muscale.train.stop import EXIT_STOPPED

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "muscale",
            "train",
            "model=mlp",
            "data=teacher",
            "model.width=16",
            "param.base_width=16",
            "trainer.max_steps=1000000",
            "trainer.log_every=5",
            "trainer.eval_every=0",
            "trainer.progress=plain",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "step 10/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == EXIT_STOPPED
    assert "STOPPED EARLY by SIGTERM" in rest
    assert list((tmp_path / "run" / "checkpoints").glob("step_*"))


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (a private read-only mount)")
def test_fit_reads_a_store_on_a_read_only_file_system(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    s = Store(str(ro / "s.db"))
    for w in (8, 16):
        for lr, loss in ((0.01, 1.0), (0.1, 0.5), (1.0, 0.9)):
            key = f"k{w}_{lr}"
            s.start(key, **{**TRIAL, "width": w, "lr": lr})
            s.finish(key, final_loss=loss, final_eval_loss=loss, best_eval_loss=loss,
                     diverged=False, wall_time=1.0)  # fmt: skip
    s.close()
    db = sqlite3.connect(ro / "s.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = _files(ro)
    script = (
        f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
        f"{sys.executable} -m muscale fit store={ro / 's.db'} format=json out={tmp_path / 'fit'}"
    )
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert {w["width"] for w in json.loads(proc.stdout)["per_width"]} == {8, 16}
    assert _files(ro) == before and sorted(p.name for p in ro.iterdir()) == ["s.db"]
