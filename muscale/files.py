"""Writing an output file safely: all or nothing, never over a file the user did not offer.

A temporary sibling is written and flushed, then published with ``os.link`` (fails if the
target exists: no clobbering, even against a concurrent writer) or, with ``overwrite``,
``os.replace``; the temporary is removed on every path, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from muscale.errors import UserError


def write_text_new(path: Path, text: str, *, overwrite: bool = False, field: str = "out") -> Path:
    """Write ``text`` to ``path`` atomically; refuse a directory, and an existing file unless
    ``overwrite``. Raises :class:`UserError` (one line) for every failure."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{field}={path} is a directory: give a file path inside it")
    if path.exists() and not overwrite:
        raise UserError(f"{field}={path} exists: pass overwrite=true to replace it")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as an ordinary open() would (mkstemp makes 0600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails if someone created path meanwhile
    except FileExistsError:
        raise UserError(f"{field}={path} exists: pass overwrite=true to replace it") from None
    except OSError as exc:
        raise UserError(f"{field}={path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path
