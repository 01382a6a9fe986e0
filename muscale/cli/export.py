"""``muscale export``: write a trained muscale μP GPT for another ecosystem.

    muscale export checkpoint=runs/a format=hf out=exported/a [overwrite=true]

``format=hf`` writes a transformers ``GraniteForCausalLM`` (``config.json``,
``model.safetensors``) with the μP multipliers folded into Granite's config, loadable by
``AutoModelForCausalLM.from_pretrained(out)`` without muscale, plus ``muscale_optim.json``
(per-parameter μP learning rates). See :mod:`muscale.hf.export`.
"""

from __future__ import annotations

import sys

from muscale.cli.common import compose
from muscale.errors import UserError, check_choice

FORMATS = ("hf",)


def main(argv: list[str]) -> int:
    cfg = compose("export", argv)
    check_choice("format", cfg.format, FORMATS)
    if not cfg.checkpoint:
        raise UserError("checkpoint is required: checkpoint=<run dir or checkpoint dir>")
    if not cfg.out:
        raise UserError("out is required: out=<new directory>")
    from muscale.hf.export import export_checkpoint

    out = export_checkpoint(cfg.checkpoint, cfg.out, overwrite=bool(cfg.overwrite))
    sys.stdout.write(f"written: {out}\n")
    return 0
