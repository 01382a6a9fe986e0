"""The durable results store: one row per trial, SQLite by default, any SQLAlchemy URL.

Safe with concurrent writers: every write is one short transaction (an upsert keyed by the
trial key); SQLite runs in WAL mode with a generous busy timeout, and clusters should use
PostgreSQL (``sweep.store=postgresql://user@host/db``) rather than SQLite on NFS. A finished
result is committed the moment the trial ends, so a killed sweep loses none.

Ownership: a trial is run by whoever holds its *lease* (owner id, host, pid, heartbeat
time), taken by one conditional statement (:meth:`Store.claim`), so two sweeps of the same
name, or SLURM array jobs, never run a trial twice. A lease whose heartbeat is older than
its time-to-live, or whose owner process is gone from this host, may be taken over (the
new owner resumes from the trial's checkpoint).

Read commands (``fit``, ``transfer``, ``scaling fit``) open the store with ``mode="read"``:
SQLite's read-only URI (``mode=ro``), no table created, no journal mode switched, so they
work on read-only file systems and never change a file that is not a muscale store. The
schema carries a version (:data:`SCHEMA_VERSION`, table ``muscale_meta``); a store from a
newer muscale is refused, one from before versioning (a ``trials`` table and no version,
"v0") is read as is and migrated by the next write command.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muscale.errors import UserError
from muscale.sweep.guards import NAME_PATTERN, check_sweep_name  # noqa: F401 (re-exported)

STATUSES = ("running", "done", "failed")

#: version of the tables below; bump it (and add a step to ``_MIGRATIONS``) on any change
SCHEMA_VERSION = 1
#: columns a store needs to be read (all present since v0)
_READ_COLUMNS = (
    "key",
    "sweep",
    "status",
    "scheme",
    "width",
    "depth",
    "seed",
    "lr",
    "hparams",
    "config",
    "final_loss",
    "final_eval_loss",
    "best_eval_loss",
    "diverged",
    "wall_time",
    "attempts",
    "git_commit",
    "run_dir",
    "error",
)
#: columns added by schema v1 (trial leases), with their SQL types for ``ALTER TABLE``
_LEASE_COLUMNS = {"owner": "VARCHAR(100)", "pid": "INTEGER", "heartbeat": "FLOAT"}
#: default lease time-to-live in seconds (a heartbeat is written every quarter of it)
LEASE_TTL_S = 120.0


def store_url(store: str) -> str:
    """A SQLAlchemy URL from a path or URL."""
    if "://" in store:
        return store
    return f"sqlite:///{Path(store).expanduser().resolve()}"


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@dataclass(frozen=True)
class Record:
    key: str
    sweep: str
    status: str
    scheme: str
    width: int
    depth: int | None
    seed: int
    lr: float
    hparams: dict[str, Any]
    final_loss: float | None
    final_eval_loss: float | None
    best_eval_loss: float | None
    diverged: bool
    wall_time: float | None
    attempts: int
    git_commit: str | None
    run_dir: str | None
    config: dict[str, Any]
    error: str | None

    @property
    def loss(self) -> float | None:
        """The loss a fit uses: best held-out loss, else final held-out, else final train."""
        for v in (self.best_eval_loss, self.final_eval_loss, self.final_loss):
            if v is not None:
                return v
        return None


class Store:
    """Results of sweeps, keyed by trial key.

    ``mode="write"`` (sweeps) creates or migrates the tables; ``mode="read"`` (``fit``,
    ``transfer``, ``scaling``) opens read-only and refuses anything that is not a muscale
    store. ``create=False`` is the older spelling of ``mode="read"``.
    """

    def __init__(self, store: str, *, create: bool = True, mode: str | None = None) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.mode = mode or ("write" if create else "read")
        if self.mode not in ("read", "write"):
            raise ValueError(f"mode={self.mode!r}: choose read or write")
        self.name = store
        url = store_url(store)
        path = _sqlite_path(url)
        if path is not None:
            _check_sqlite_path(store, path, write=self.mode == "write")
        self.engine = _engine(store, url, path, read_only=self.mode == "read")
        self.table = _trials_table(sa.MetaData())
        try:
            self._open(store, path)
        except BaseException:
            self.engine.dispose()  # no connection (nor -wal/-shm file) left behind
            raise

    def close(self) -> None:
        self.engine.dispose()

    def _open(self, store: str, path: Path | None) -> None:
        for attempt in range(10):  # concurrent first writers race to create the tables
            try:
                self.version = self._open_schema()
                break
            except _Retry:
                time.sleep(0.1 * (attempt + 1))
        else:
            raise UserError(f"store {store}: could not create its tables (locked?)")
        if path is not None and self.mode == "write":
            _set_wal(self.engine)  # only once the file is known to be ours

    # -- schema --------------------------------------------------------------------------
    def _open_schema(self) -> int:
        """The store's schema version, after creating (empty store) or migrating (v0) it in
        write mode; raises :class:`UserError` for a foreign or newer database."""
        sa = self._sa
        with _db_errors(self.name):
            tables = set(sa.inspect(self.engine).get_table_names())
            version = self._read_version(tables)
            if version is None:  # an empty database: ours to create in write mode
                if tables:
                    raise UserError(
                        f"store {self.name} is not a muscale store: it holds tables "
                        f"{', '.join(sorted(tables))} and no 'trials' table"
                    )
                if self.mode == "read":
                    raise UserError(
                        f"store {self.name} is not a muscale store (no tables): run "
                        f"`muscale sweep sweep.store={self.name}` first"
                    )
                self._guarded(self._create)
                return SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"store {self.name} has schema version {version}, newer than this "
                    f"muscale reads ({SCHEMA_VERSION}): upgrade muscale"
                )
            cols = {c["name"] for c in sa.inspect(self.engine).get_columns("trials")}
            missing = [c for c in _READ_COLUMNS if c not in cols]
            if missing:
                raise UserError(
                    f"store {self.name} is not a muscale store: its 'trials' table lacks "
                    f"columns {', '.join(missing)}"
                )
            if version < SCHEMA_VERSION and self.mode == "write":
                self._guarded(lambda: self._migrate(version, cols))
                version = SCHEMA_VERSION
        return version

    def _guarded(self, step: Any) -> None:
        """Run a schema change; a concurrent writer doing the same makes it retry."""
        sa = self._sa
        try:
            step()
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
            raise _Retry from exc

    def _read_version(self, tables: set[str]) -> int | None:
        if "trials" not in tables:
            return None
        if "muscale_meta" not in tables:
            return 0  # written before schema versions (legacy v0)
        sa = self._sa
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT value FROM muscale_meta WHERE key = 'schema_version'")
            ).first()
        try:
            return int(row[0]) if row is not None else 0
        except (TypeError, ValueError):
            raise UserError(
                f"store {self.name}: schema_version {row[0]!r} is not an integer"
            ) from None

    def _create(self) -> None:
        sa = self._sa
        meta = self.table.metadata
        _meta_table(meta)
        with self.engine.begin() as conn:
            meta.create_all(conn)
            conn.execute(
                sa.text(
                    "INSERT INTO muscale_meta (key, value) VALUES ('schema_version', :v) "
                    "ON CONFLICT (key) DO NOTHING"
                ),
                {"v": str(SCHEMA_VERSION)},
            )

    def _migrate(self, version: int, cols: set[str]) -> None:
        """v0 -> v1: add the lease columns and the version table, in one transaction."""
        sa = self._sa
        meta = sa.MetaData()
        table = _meta_table(meta)
        with self.engine.begin() as conn:
            for col, sql_type in _LEASE_COLUMNS.items():
                if col not in cols:
                    conn.execute(sa.text(f"ALTER TABLE trials ADD COLUMN {col} {sql_type}"))
            meta.create_all(conn)
            conn.execute(table.delete().where(table.c.key == "schema_version"))
            conn.execute(table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    def _require_write(self) -> None:
        if self.mode != "write":
            raise RuntimeError(f"store {self.name} was opened read-only")

    # -- writes --------------------------------------------------------------------------
    def _upsert(self, key: str, values: dict[str, Any], *, bump_attempts: bool = False) -> None:
        self._require_write()
        sa = self._sa
        values = {**values, "updated_at": time.time()}
        insert = _insert_for(self.engine.dialect.name)
        with _db_errors(self.name), self.engine.begin() as conn:
            if insert is None:  # pragma: no cover - other backends: read, then write
                exists = conn.execute(
                    sa.select(self.table.c.key).where(self.table.c.key == key)
                ).first()
                if exists:
                    conn.execute(
                        self.table.update().where(self.table.c.key == key).values(**values)
                    )
                else:
                    conn.execute(
                        self.table.insert().values(key=key, attempts=int(bump_attempts), **values)
                    )
                return
            update = dict(values)
            if bump_attempts:
                update["attempts"] = self.table.c.attempts + 1
            stmt = insert(self.table).values(key=key, attempts=int(bump_attempts), **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=update))

    def start(
        self,
        key: str,
        *,
        sweep: str,
        scheme: str,
        width: int,
        depth: int | None,
        seed: int,
        lr: float,
        hparams: dict[str, Any],
        config: dict[str, Any],
        run_dir: str,
        owner: str | None = None,
    ) -> None:
        """Mark a trial as running (a new attempt), unconditionally; see :meth:`claim`."""
        self._upsert(
            key,
            _start_values(
                sweep=sweep,
                scheme=scheme,
                width=width,
                depth=depth,
                seed=seed,
                lr=lr,
                hparams=hparams,
                config=config,
                run_dir=run_dir,
                owner=owner,
            ),
            bump_attempts=True,
        )

    def claim(self, key: str, *, owner: str, ttl: float = LEASE_TTL_S, **trial: Any) -> str:
        """Take the lease of trial ``key`` for ``owner`` and mark it running (a new attempt).

        Returns ``"claimed"``, ``"done"`` (finished already) or ``"leased"`` (another owner
        is alive: its heartbeat is younger than ``ttl`` seconds and, on this host, its pid
        runs). Atomic without locks: a new row is one ``INSERT ... ON CONFLICT DO NOTHING``,
        a takeover one ``UPDATE`` conditioned on the lease it saw (compare-and-swap), so of
        two claimants exactly one wins. ``trial``: the keyword arguments of :meth:`start`.
        """
        self._require_write()
        sa = self._sa
        t = self.table
        values = {**_start_values(owner=owner, **trial), "updated_at": time.time()}
        insert = _insert_for(self.engine.dialect.name)
        for _ in range(20):
            with _db_errors(self.name), self.engine.begin() as conn:
                if insert is not None:
                    stmt = insert(t).values(key=key, attempts=1, **values)
                    if conn.execute(stmt.on_conflict_do_nothing()).rowcount == 1:
                        return "claimed"
                row = conn.execute(
                    sa.select(t.c.status, t.c.owner, t.c.host, t.c.pid, t.c.heartbeat).where(
                        t.c.key == key
                    )
                ).first()
                if row is None:  # pragma: no cover - only without INSERT ... ON CONFLICT
                    conn.execute(t.insert().values(key=key, attempts=1, **values))
                    return "claimed"
                if row.status == "done":
                    return "done"
                if row.owner not in (None, owner) and lease_alive(
                    row.host, row.pid, row.heartbeat, ttl
                ):
                    return "leased"
                same = sa.and_(
                    t.c.key == key,
                    t.c.status != "done",
                    t.c.owner.is_(None) if row.owner is None else t.c.owner == row.owner,
                    t.c.heartbeat.is_(None)
                    if row.heartbeat is None
                    else t.c.heartbeat == row.heartbeat,
                )
                done = conn.execute(
                    t.update().where(same).values(**values, attempts=t.c.attempts + 1)
                )
                if done.rowcount == 1:
                    return "claimed"
            time.sleep(0.05)  # the row changed under us: look again
        return "leased"

    def heartbeat(self, key: str, owner: str) -> bool:
        """Renew ``owner``'s lease of ``key``; False if it was lost (taken over)."""
        with _db_errors(self.name), self.engine.begin() as conn:
            done = conn.execute(
                self.table.update()
                .where(self.table.c.key == key, self.table.c.owner == owner)
                .values(heartbeat=time.time())
            )
        return done.rowcount == 1

    def lease_states(self, keys: list[str], ttl: float = LEASE_TTL_S) -> dict[str, str]:
        """``key -> "done" | "leased" | "free"`` (free: absent, failed, or lease expired)."""
        sa = self._sa
        t = self.table
        out = {k: "free" for k in keys}
        if not keys:
            return out
        with _db_errors(self.name), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.key, t.c.status, t.c.owner, t.c.host, t.c.pid, t.c.heartbeat).where(
                    t.c.key.in_(keys)
                )
            ).all()
        for r in rows:
            if r.status == "done":
                out[r.key] = "done"
            elif r.status == "running" and r.owner and lease_alive(r.host, r.pid, r.heartbeat, ttl):
                out[r.key] = "leased"
        return out

    def _update(self, key: str, values: dict[str, Any]) -> None:
        self._require_write()
        with _db_errors(self.name), self.engine.begin() as conn:
            done = conn.execute(
                self.table.update()
                .where(self.table.c.key == key)
                .values(**values, updated_at=time.time())
            )
        if done.rowcount != 1:
            raise UserError(f"trial {key} was never started in this store")

    def finish(
        self,
        key: str,
        *,
        final_loss: float | None,
        final_eval_loss: float | None,
        best_eval_loss: float | None,
        diverged: bool,
        wall_time: float,
    ) -> None:
        self._update(
            key,
            {
                "status": "done",
                "final_loss": _finite(final_loss),
                "final_eval_loss": _finite(final_eval_loss),
                "best_eval_loss": _finite(best_eval_loss),
                "diverged": bool(diverged),
                "wall_time": float(wall_time),
                "owner": None,
            },
        )

    def fail(self, key: str, error: str) -> None:
        """Record a failed (or stopped) attempt and release its lease: the next sweep
        runs it again, resuming from its checkpoint."""
        self._update(key, {"status": "failed", "error": error[:2000], "owner": None})

    # -- reads ---------------------------------------------------------------------------
    def records(
        self, sweep: str | None = None, *, status: str | None = "done", limit: int | None = None
    ) -> list[Record]:
        """Rows of ``sweep`` (all sweeps: None) with ``status`` (any: None), ordered by
        scheme, width and LR; ``limit``: at most that many (without reading the rest)."""
        sa = self._sa
        if sweep is not None:
            check_sweep_name(sweep, "sweep")
        cols = [self.table.c[c] for c in _READ_COLUMNS]
        q = sa.select(*cols)
        if sweep is not None:
            q = q.where(self.table.c.sweep == sweep)
        if status is not None:
            q = q.where(self.table.c.status == status)
        with _db_errors(self.name), self.engine.connect() as conn:
            rows = (
                conn.execute(
                    q.order_by(self.table.c.scheme, self.table.c.width, self.table.c.lr).limit(
                        limit
                    )
                )
                .mappings()
                .all()
            )
        try:
            return [_record(r) for r in rows]
        except (TypeError, ValueError) as exc:
            raise UserError(f"store {self.name} holds a malformed trial row: {exc}") from None

    def get(self, key: str) -> Record | None:
        sa = self._sa
        with _db_errors(self.name), self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table.c.sweep).where(self.table.c.key == key)).first()
        if row is None:
            return None
        return next((r for r in self.records(row[0], status=None) if r.key == key), None)

    def done_keys(self, sweep: str) -> set[str]:
        return {r.key for r in self.records(sweep)}

    def sweeps(self) -> list[str]:
        sa = self._sa
        with _db_errors(self.name), self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(self.table.c.sweep).distinct())]


class _Retry(Exception):
    """Internal: the schema changed under us; open again."""


def _set_wal(engine: Any) -> None:
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except sa.exc.OperationalError:
        pass  # another process holds it: it set WAL already, or will


def new_owner() -> str:
    """A lease owner id: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_alive(host: str | None, pid: int | None, heartbeat: float | None, ttl: float) -> bool:
    """Whether a lease still binds: heartbeat younger than ``ttl`` and, when the owner is
    on this host, its process still exists (a SIGKILLed owner frees its trials at once)."""
    if heartbeat is None or time.time() - float(heartbeat) > ttl:
        return False
    if host == socket.gethostname() and pid:
        return _pid_alive(int(pid))
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _start_values(
    *,
    sweep: str,
    scheme: str,
    width: int,
    depth: int | None,
    seed: int,
    lr: float,
    hparams: dict[str, Any],
    config: dict[str, Any],
    run_dir: str,
    owner: str | None,
) -> dict[str, Any]:
    return {
        "sweep": check_sweep_name(sweep),
        "status": "running",
        "scheme": scheme,
        "width": width,
        "depth": depth,
        "seed": seed,
        "lr": lr,
        "hparams": json.dumps(hparams),
        "config": json.dumps(config),
        "run_dir": run_dir,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "owner": owner,
        "heartbeat": time.time(),
        "git_commit": git_commit(),
        "error": None,
    }


def _record(r: Any) -> Record:
    return Record(
        key=r["key"],
        sweep=r["sweep"],
        status=r["status"],
        scheme=r["scheme"],
        width=r["width"],
        depth=r["depth"],
        seed=r["seed"],
        lr=r["lr"],
        hparams=json.loads(r["hparams"] or "{}"),
        final_loss=r["final_loss"],
        final_eval_loss=r["final_eval_loss"],
        best_eval_loss=r["best_eval_loss"],
        diverged=bool(r["diverged"]),
        wall_time=r["wall_time"],
        attempts=r["attempts"],
        git_commit=r["git_commit"],
        run_dir=r["run_dir"],
        config=json.loads(r["config"] or "{}"),
        error=r["error"],
    )


def _trials_table(meta: Any) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        "trials",
        meta,
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("sweep", sa.String(200), index=True, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scheme", sa.String(16)),
        sa.Column("width", sa.Integer),
        sa.Column("depth", sa.Integer),
        sa.Column("seed", sa.Integer),
        sa.Column("lr", sa.Float),
        sa.Column("hparams", sa.Text),
        sa.Column("config", sa.Text),
        sa.Column("final_loss", sa.Float),
        sa.Column("final_eval_loss", sa.Float),
        sa.Column("best_eval_loss", sa.Float),
        sa.Column("diverged", sa.Boolean),
        sa.Column("wall_time", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("run_dir", sa.Text),
        sa.Column("host", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.Float),
        # v1: the trial's lease
        sa.Column("owner", sa.String(100)),
        sa.Column("pid", sa.Integer),
        sa.Column("heartbeat", sa.Float),
    )


def _meta_table(meta: Any) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        "muscale_meta",
        meta,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text),
    )


def _insert_for(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    return None  # pragma: no cover


def _check_sqlite_path(store: str, path: Path, *, write: bool) -> None:
    """Refuse paths SQLite would misread (a directory) or create in read mode."""
    if path.is_dir():
        raise UserError(f"store {store} is a directory: give a file path such as {path}/sweeps.db")
    if not write and not path.is_file():
        raise UserError(f"store {store} not found: run `muscale sweep sweep.store={store}` first")
    if write and not path.exists() and not path.parent.is_dir():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"store {store}: cannot create {path.parent}: {exc}") from None


def _engine(store: str, url: str, path: Path | None, *, read_only: bool) -> Any:
    import sqlalchemy as sa

    kwargs: dict[str, Any] = {"future": True}
    if path is not None:
        if read_only:  # SQLite's read-only URI: no journal, no table, no write, ever
            url = f"sqlite:///file:{path}?mode=ro{_immutable(path)}&uri=true"
        kwargs["connect_args"] = {"timeout": 120}
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise UserError(f"store {store!r} is not a usable database URL: {exc}") from None
    if path is not None:
        sa.event.listen(engine, "connect", _sqlite_ro_pragmas if read_only else _sqlite_pragmas)
    return engine


def _immutable(path: Path) -> str:
    """``&immutable=1`` for a WAL-mode file with no ``-wal`` beside it (fully checkpointed,
    no writer): read-only SQLite would otherwise create ``-wal``/``-shm`` files next to it."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return ""
    wal = len(header) == 20 and header[:16] == b"SQLite format 3\x00" and header[18] == 2
    return "&immutable=1" if wal and not Path(f"{path}-wal").exists() else ""


@contextlib.contextmanager
def _db_errors(store: str) -> Iterator[None]:
    """Database errors (garbage file, locked, wrong schema, lost server) as one line."""
    import sqlite3

    import sqlalchemy as sa

    try:
        yield
    except sa.exc.DBAPIError as exc:
        msg = " ".join(str(exc.orig).split()) if exc.orig is not None else str(exc)
        raise UserError(f"cannot use store {store}: {msg}") from None
    except (sa.exc.SQLAlchemyError, sqlite3.DatabaseError) as exc:
        raise UserError(f"cannot use store {store}: {' '.join(str(exc).split())}") from None


def _finite(x: float | None) -> float | None:
    import math

    return None if x is None or not math.isfinite(x) else float(x)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=120000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_ro_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=120000")
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def git_commit() -> str | None:
    """The commit of the muscale checkout that ran the trial (provenance), if any."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or os.environ.get("MUSCALE_GIT_COMMIT")
