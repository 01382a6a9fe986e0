"""Scaling laws: Chinchilla fits (Approaches 1, 2, 3), compute-optimal and inference-aware
allocation, and hyperparameter-vs-compute power laws.

Inputs are plain pandas DataFrames with columns ``N`` (parameters), ``D`` (tokens), ``C``
(training FLOPs) and ``loss`` (plus ``run``, ``lr``, ``batch_size`` where an approach needs
them); :mod:`muscale.scaling.io` reads CSV/parquet files into that shape, and a sweep-store
adapter only has to produce the same frame. See ``docs/scaling.md``.
"""
