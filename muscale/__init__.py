"""muscale: muP scaling and hyperparameter transfer for PyTorch.

Kept light on import: heavy or optional dependencies are imported where used.
"""

__version__ = "0.1.0"


def parametrize(build, **kwargs):  # type: ignore[no-untyped-def]  # see muscale.auto
    """:func:`muscale.auto.parametrize.parametrize` (imported on first call: keeps
    ``import muscale`` free of torch)."""
    from muscale.auto.parametrize import parametrize as _parametrize

    return _parametrize(build, **kwargs)
