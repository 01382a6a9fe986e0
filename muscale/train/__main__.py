"""``python -m muscale.train ...`` and ``torchrun -m muscale.train ...``: ``muscale train``."""

from __future__ import annotations

import sys

from muscale.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
