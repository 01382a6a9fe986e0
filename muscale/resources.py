"""Where muscale's shipped files are: the Hydra configs and the packaged data sets.

``conf/`` lives at the top of the repository (the project's layout) and is installed as the
package ``muscale.conf`` (``setup.py`` maps it; ``pyproject.toml`` lists its YAML files as
package data). The same code must find it in three situations:

===========================  ==============================  ==========================
how muscale is run           where the configs are           found by
===========================  ==============================  ==========================
``$MUSCALE_CONF_DIR`` set    that directory                  the variable
from a source checkout       ``<checkout>/conf``             ``muscale/../conf`` beside
(``PYTHONPATH``, editable)                                   ``pyproject.toml``
an installed wheel           ``site-packages/muscale/conf``  the module ``muscale.conf``
===========================  ==============================  ==========================

The checkout wins over an installed ``muscale.conf`` so that a ``PYTHONPATH`` run of one
clone never reads the configs of another clone that happens to be installed editable.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import resources
from pathlib import Path

from muscale.errors import UserError

#: the package that holds the configs in an installed wheel (Hydra: ``pkg://muscale.conf``)
CONF_PACKAGE = "muscale.conf"


def _checkout_conf() -> Path | None:
    """``<checkout>/conf`` when this ``muscale`` package was imported from a source tree."""
    root = Path(__file__).resolve().parents[1]
    conf = root / "conf"
    if (root / "pyproject.toml").is_file() and (conf / "train.yaml").is_file():
        return conf
    return None


def _package_conf() -> Path | None:
    """The directory of the installed package ``muscale.conf``, if there is one."""
    try:
        spec = importlib.util.find_spec(CONF_PACKAGE)
    except ImportError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        if (Path(loc) / "train.yaml").is_file():
            return Path(loc)
    return None


def conf_dir() -> Path:
    """The Hydra config directory, as a real directory on disk.

    ``$MUSCALE_CONF_DIR`` if set, else the source checkout's ``conf/``, else the installed
    package ``muscale.conf`` (wheels install unzipped, so it is a directory).
    """
    env = os.environ.get("MUSCALE_CONF_DIR")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise UserError(f"MUSCALE_CONF_DIR={env!r} is not a directory: unset it or fix it")
        return path
    found = _checkout_conf() or _package_conf()
    if found is None:
        raise UserError(
            "muscale's configs were not found: the installed package has no muscale.conf "
            "(reinstall muscale) and no source checkout is beside it; or set MUSCALE_CONF_DIR"
        )
    return found


def conf_search_path() -> str:
    """The configs as a Hydra search-path entry: ``pkg://muscale.conf`` when they come from
    the installed package, else ``file://<dir>`` (environment variable or checkout)."""
    path = conf_dir()
    if not os.environ.get("MUSCALE_CONF_DIR") and _checkout_conf() is None:
        return f"pkg://{CONF_PACKAGE}"
    return f"file://{path}"


def data_file(name: str) -> Path:
    """A data file shipped inside the package (``muscale/scaling/data/<name>``).

    See ``muscale/scaling/data/README.md`` for each file's source and licence.
    """
    path = Path(str(resources.files("muscale.scaling").joinpath("data", name)))
    if not path.is_file():
        raise UserError(f"packaged data file {name!r} not found in muscale/scaling/data/")
    return path
