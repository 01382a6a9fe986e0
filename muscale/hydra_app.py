"""The Hydra layer: schema registration, config composition, running Hydra apps.

The top of muscale's import graph below the CLI: it may import any library module, and no
library module imports the CLI. Typed configs (the dataclasses in ``*/config.py`` and the
helpers in :mod:`muscale.config`) sit at the bottom and know nothing of Hydra; this module
registers them with Hydra's ConfigStore as schemas, explicitly before composing (never at
import time), so importing muscale mutates no global registry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from muscale.errors import UserError

#: Hydra command-line flags that take a value in the next argument
VALUE_FLAGS = (
    "--config-dir",
    "-cd",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--experimental-rerun",
    "--cfg",
    "-c",
    "--package",
    "-p",
)


def schemas() -> list[tuple[str | None, str, type]]:
    """``(group, name, dataclass)`` for every structured config; the YAML files in ``conf/``
    name them in their defaults lists (``/schema/optim@_here_``)."""
    from muscale.data.config import data_schemas
    from muscale.hf.config import HFModelConfig
    from muscale.models.configs import GPTConfig, MLPConfig
    from muscale.optim.config import OptimConfig
    from muscale.param.config import ParamConfig
    from muscale.train.config import train_schemas

    return [
        *data_schemas(),
        *train_schemas(),
        ("schema/model", "mlp", MLPConfig),
        ("schema/model", "gpt", GPTConfig),
        ("schema/model", "hf", HFModelConfig),
        ("schema", "param", ParamConfig),
        ("schema", "optim", OptimConfig),
    ]


def register_configs() -> None:
    """Register every schema with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name, node in schemas():
        cs.store(group=group, name=name, node=node)


def conf_dir() -> Path:
    """The Hydra config directory (see :func:`muscale.resources.conf_dir`: ``$MUSCALE_CONF_DIR``,
    the checkout's ``conf/``, or the installed ``muscale.conf`` package)."""
    from muscale.resources import conf_dir as find_conf_dir

    return find_conf_dir()


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

    Registers muscale's structured-config schemas first, so that typos and wrong types
    fail at composition with Hydra's message.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

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


def run_app(config_name: str, argv: list[str], task: Callable[[DictConfig], Any]) -> None:
    """Run ``task(cfg)`` as a Hydra app over ``argv`` (run dirs, ``-m``, launchers, sweepers).

    What ``@hydra.main`` does, with the arguments passed in rather than read from
    ``sys.argv`` (so nothing global is rewritten). ``_run_hydra`` is Hydra's own entry point
    behind ``hydra.main`` (hydra 1.3, ``hydra/main.py``); it has no public equivalent that
    takes an argument list.
    """
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser

    register_configs()
    version.setbase("1.3")
    parser = get_args_parser()
    args = parser.parse_args(list(argv))
    if args.experimental_rerun is not None:
        from hydra.main import _get_rerun_conf

        task(_get_rerun_conf(args.experimental_rerun, args.overrides))
        return
    _run_hydra(
        args=args,
        args_parser=parser,
        task_function=task,
        config_path=str(conf_dir()),
        config_name=config_name,
    )


def run_hydra_app(
    config_name: str, argv: list[str], task: Any, *, multirun: bool = False, prog: str = "muscale"
) -> int:
    """Run ``task(cfg)`` as a real Hydra app after validating the overrides.

    The overrides are first composed once with the compose API so that a bad value is one
    line and exit 2 (Hydra's own handler prints more and exits 1). Inside the job a
    :class:`UserError` is also turned into one line and exit 2.
    """
    overrides, _ = hydra_flags(argv)
    compose(
        config_name,
        [
            o
            for o in overrides
            if "," not in o.split("=", 1)[-1] or o.split("=", 1)[-1].startswith("[")
        ],
    )
    result: dict[str, Any] = {}

    def job(cfg: DictConfig) -> Any:
        try:
            out = task(cfg)
        except UserError as exc:
            sys.stderr.write(f"{prog}: error: {' '.join(str(exc).split())}\n")
            raise SystemExit(2) from None
        result["value"] = out
        return out

    args = list(argv)
    if multirun and "-m" not in args and "--multirun" not in args:
        args.insert(0, "--multirun")
    run_app(config_name, args, job)
    value = result.get("value")
    return int(value) if isinstance(value, int) else 0
