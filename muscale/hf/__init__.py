"""Hugging Face transformers under muscale: μP builds, export to GraniteForCausalLM, import.

``muscale.hf.build(config_or_name, width=..., base_width=..., scheme="mup")``;
``muscale.hf.export.export_checkpoint(...)``; ``muscale.hf.load.load_hf_into(...)``.
transformers is imported only when a function needs it.
"""

from muscale.hf.config import ARCHS, HFModelConfig
from muscale.hf.model import HFCausalLM, build, coord_points, scaled_config

__all__ = ["ARCHS", "HFCausalLM", "HFModelConfig", "build", "coord_points", "scaled_config"]
