"""muscale: muP scaling and hyperparameter transfer for PyTorch.

Kept light on import: heavy or optional dependencies are imported where used.
"""

__version__ = "0.1.0"
