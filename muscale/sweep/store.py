"""The durable results store: one row per trial, SQLite by default, any SQLAlchemy URL.

Safe with concurrent writers: every write is one short transaction (an upsert keyed by the
trial key); SQLite runs in WAL mode with a generous busy timeout, and clusters should use
PostgreSQL (``sweep.store=postgresql://user@host/db``) rather than SQLite on NFS. A finished
result is committed the moment the trial ends, so a killed sweep loses none; a trial left
``running`` by a killed job is run again (resuming from its checkpoint) on the next sweep.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muscale.errors import UserError

STATUSES = ("running", "done", "failed")


def store_url(store: str) -> str:
    """A SQLAlchemy URL from a path or URL."""
    if "://" in store:
        return store
    return f"sqlite:///{Path(store).expanduser().resolve()}"


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
    """Results of sweeps, keyed by trial key."""

    def __init__(self, store: str, *, create: bool = True) -> None:
        import sqlalchemy as sa

        url = store_url(store)
        if url.startswith("sqlite:///") and not create:
            path = Path(url.removeprefix("sqlite:///"))
            if not path.is_file():
                raise UserError(
                    f"store {store} not found: run `muscale sweep sweep.store={store}` first"
                )
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url, connect_args=_connect_args(url), future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise UserError(f"sweep.store={store!r} is not a usable database URL: {exc}") from exc
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        meta = sa.MetaData()
        self.table = sa.Table(
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
        )
        try:
            meta.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise UserError(
                f"cannot open store {store}: {' '.join(str(exc.orig).split())}"
            ) from exc
        self._sa = sa

    # -- writes --------------------------------------------------------------------------
    def _upsert(self, key: str, values: dict[str, Any], *, bump_attempts: bool = False) -> None:
        sa = self._sa
        values = {**values, "updated_at": time.time()}
        dialect = self.engine.dialect.name
        insert: Any
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - other backends: read-then-write in one transaction
            insert = None
        with self.engine.begin() as conn:
            if insert is None:
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
    ) -> None:
        """Mark a trial as running (a new attempt)."""
        self._upsert(
            key,
            {
                "sweep": sweep,
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
                "git_commit": git_commit(),
                "error": None,
            },
            bump_attempts=True,
        )

    def _update(self, key: str, values: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
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
            },
        )

    def fail(self, key: str, error: str) -> None:
        self._update(key, {"status": "failed", "error": error[:2000]})

    # -- reads ---------------------------------------------------------------------------
    def records(self, sweep: str | None = None, *, status: str | None = "done") -> list[Record]:
        sa = self._sa
        q = sa.select(self.table)
        if sweep is not None:
            q = q.where(self.table.c.sweep == sweep)
        if status is not None:
            q = q.where(self.table.c.status == status)
        with self.engine.connect() as conn:
            rows = (
                conn.execute(q.order_by(self.table.c.scheme, self.table.c.width, self.table.c.lr))
                .mappings()
                .all()
            )
        return [
            Record(
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
            for r in rows
        ]

    def get(self, key: str) -> Record | None:
        sa = self._sa
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table.c.sweep).where(self.table.c.key == key)).first()
        if row is None:
            return None
        return next((r for r in self.records(row[0], status=None) if r.key == key), None)

    def done_keys(self, sweep: str) -> set[str]:
        return {r.key for r in self.records(sweep)}

    def sweeps(self) -> list[str]:
        sa = self._sa
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(self.table.c.sweep).distinct())]


def _finite(x: float | None) -> float | None:
    import math

    return None if x is None or not math.isfinite(x) else float(x)


def _connect_args(url: str) -> dict[str, Any]:
    return {"timeout": 120} if url.startswith("sqlite") else {}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=120000")
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
