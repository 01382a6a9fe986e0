"""The ``muscale`` command: a table of subcommands, each a plain function ``main(argv)``.

Every error the user can cause ends in one line on stderr and exit status 2; a failed
check (coordinate check, transfer verdict) is exit status 1; an inconclusive coordinate
check (the data cannot decide) is exit status 3.
"""

from __future__ import annotations

import importlib
import sys

from muscale.errors import UserError

#: subcommand -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("muscale.cli.pipeline", "the whole muTransfer pipeline on embedded data"),
    "inspect": ("muscale.cli.inspect", "print the per-parameter parametrization plan"),
    "train": ("muscale.cli.train", "train one model (Hydra app)"),
    "coord-check": ("muscale.cli.coord_check", "coordinate check over widths or depths"),
    "sweep": ("muscale.cli.sweep", "sweep proxy widths x hyperparameters into a store"),
    "fit": ("muscale.cli.fit", "fit optimal hyperparameters per width from a store"),
    "transfer": ("muscale.cli.transfer", "write the large run's config from a fit"),
    "scaling": ("muscale.cli.scaling", "scaling-law fits and compute-optimal plans"),
    "diagnose": ("muscale.cli.diagnose", "spectra, Hessian, NTK, Jacobian of a checkpoint"),
    "export": ("muscale.cli.export", "write a trained μP GPT as a transformers model"),
}


#: exceptions that mean "bad input" when raised while composing or validating config
def _user_error_types() -> tuple[type[BaseException], ...]:
    import sqlite3

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from sqlalchemy.exc import DBAPIError

    # OSError: unreadable inputs, read-only outputs (PermissionError, IsADirectoryError,
    # FileNotFoundError...); database errors: a store that is garbage, locked or foreign
    return (
        UserError,
        HydraException,
        OmegaConfBaseException,
        OSError,
        sqlite3.DatabaseError,
        DBAPIError,
    )


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return f"usage: muscale <command> [key=value ...]\n\ncommands:\n{rows}\n"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Hydra's messages span several), with its cause
    when that says more (Hydra wraps OmegaConf's "could not be converted" errors)."""
    text = str(exc).split("Config search path:")[0]
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause).split("\n")[0] not in text:
        text += ": " + str(cause).split("\n")[0]
    return " ".join(text.split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        sys.stderr.write(
            f"muscale: error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}\n"
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except _user_error_types() as exc:
        sys.stderr.write(f"muscale {name}: error: {one_line(exc)}\n")
        return 2


def entry() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
