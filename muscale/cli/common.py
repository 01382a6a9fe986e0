"""Shared plumbing for the ``muscale`` subcommands: finding ``conf/``, composing configs
with Hydra's compose API, and printing JSON.

Subcommands are plain functions ``main(argv) -> int``; they raise
:class:`muscale.errors.UserError` for bad input and the dispatcher
(:mod:`muscale.cli.main`) turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from muscale.errors import UserError


def conf_dir() -> Path:
    """The Hydra config directory: ``$MUSCALE_CONF_DIR`` or the repository's ``conf/``."""
    env = os.environ.get("MUSCALE_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not path.is_dir():
        raise UserError(
            f"config directory {path} not found: set MUSCALE_CONF_DIR or install muscale "
            "from a clone (pip install -e .)"
        )
    return path


def compose(
    config_name: str,
    overrides: list[str],
    *,
    extra_dir: str | None = None,
    config_dir: Path | None = None,
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line ``overrides``.

    ``extra_dir`` is searched too (Hydra's ``--config-dir``), e.g. for a transfer config
    written by ``muscale transfer`` that extends ``train``. ``config_dir`` replaces
    ``conf/`` as the primary directory (``muscale scaling`` composes ``conf/scaling/``, where
    ``data=<file>`` is a plain key rather than the ``data`` config group).

    Registers muscale's structured-config schemas first (explicitly, not at import time),
    so that typos and wrong types fail at composition with Hydra's message.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from muscale.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    primary, extra = str(config_dir or conf_dir()), []
    if extra_dir:  # the user's dir is primary; conf/ stays on the search path for its defaults
        extra = [f"hydra.searchpath=[file://{primary}]"]
        primary = str(Path(extra_dir).resolve())
    with initialize_config_dir(config_dir=primary, version_base="1.3"):
        try:
            return hydra_compose(config_name=config_name, overrides=[*overrides, *extra])
        except ValueError as exc:  # Hydra: e.g. "Config group override must be a string"
            raise UserError(f"bad override: {exc}") from None


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (and nothing else)."""
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_format(value: str) -> str:
    """Validate a ``format=`` option."""
    if value not in ("table", "json"):
        raise UserError(f"format={value!r} is not allowed: choose table or json")
    return value


#: Hydra command-line flags that take a value in the next argument
VALUE_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
               "--experimental-rerun")


def hydra_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split argv into plain overrides (composable) and Hydra's own flags/``hydra.*`` keys."""
    overrides: list[str] = []
    flags: list[str] = []
    args = iter(argv)
    for a in args:
        if a in VALUE_FLAGS:
            flags += [a, next(args, "")]
        elif a.startswith("-") or a.startswith(("hydra.", "hydra/", "+hydra.", "~hydra")):
            flags.append(a)
        else:
            overrides.append(a)
    return overrides, flags


def config_location(flags: list[str], default_name: str) -> tuple[str, str | None]:
    """``(--config-name, --config-dir)`` from Hydra flags (either ``--flag X`` or ``--flag=X``)."""
    found: dict[str, str] = {}
    for i, f in enumerate(flags):
        key, eq, val = f.partition("=")
        if key in VALUE_FLAGS:
            found[key] = val if eq else (flags[i + 1] if i + 1 < len(flags) else "")
    name = found.get("--config-name") or found.get("-cn") or default_name
    cdir = found.get("--config-dir") or found.get("-cd")
    return name, cdir


def is_sweep_value(override: str) -> bool:
    """A Hydra sweep (``a,b``, ``range(...)``...), which compose cannot take."""
    value = override.split("=", 1)[-1]
    if value[:1] in ("'", '"'):  # a quoted string is one value, never a sweep
        return False
    return ("," in value and not value.startswith(("[", "{"))) or value.startswith(
        ("range(", "choice(", "interval(", "glob(")
    )


def run_hydra_app(
    config_name: str, argv: list[str], task: Any, *, multirun: bool = False, prog: str = "muscale"
) -> int:
    """Run ``task(cfg)`` as a real Hydra app (run dirs, ``-m``, launchers, sweepers).

    The overrides are first composed once with the compose API so that a bad value is one
    line and exit 2 (Hydra's own handler prints more and exits 1). Inside the job a
    :class:`UserError` is also turned into one line and exit 2.
    """
    import hydra

    overrides, _ = hydra_flags(argv)
    compose(
        config_name,
        [
            o
            for o in overrides
            if "," not in o.split("=", 1)[-1] or o.split("=", 1)[-1].startswith("[")
        ],
    )
    from muscale.config import register_configs

    register_configs()
    result: dict[str, Any] = {}

    def job(cfg: DictConfig) -> Any:
        try:
            out = task(cfg)
        except UserError as exc:
            sys.stderr.write(f"{prog}: error: {' '.join(str(exc).split())}\n")
            raise SystemExit(2) from None
        result["value"] = out
        return out

    app = hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(job)
    args = list(argv)
    if multirun and "-m" not in args and "--multirun" not in args:
        args.insert(0, "--multirun")
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        app()
    finally:
        sys.argv = saved
    value = result.get("value")
    return int(value) if isinstance(value, int) else 0
