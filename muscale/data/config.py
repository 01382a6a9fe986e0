"""Typed configs of the ``data`` config group: one dataclass per dataset, a common base.

Every dataset shares the batch layout fields of :class:`DataConfig`; each subclass adds its
own. The dataclasses double as Hydra structured-config schemas (:func:`data_schemas`), so
a typo or a wrong type fails at composition; the value checks live in ``__post_init__`` and
raise :class:`~muscale.errors.ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from muscale.errors import ConfigError, check_choice, check_positive


@dataclass(kw_only=True)
class DataConfig:
    """Fields every dataset has.

    ``batch_size`` is the *global* batch (sequences or samples per optimizer step, summed
    over ranks and micro-batches); each rank gets ``batch_size // world_size`` of it.
    ``eval_batches`` batches of ``batch_size`` make the held-out evaluation set. ``seed``
    picks the sample order (and, for generated data, the samples); it never changes which
    data exist.
    """

    name: str
    seq_len: int = 128
    batch_size: int = 32
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATASET_NAMES)
        for f in ("seq_len", "batch_size", "eval_batches"):
            check_positive(f"data.{f}", getattr(self, f))
        check_positive("data.seed", self.seed, allow_zero=True)


@dataclass(kw_only=True)
class SyntheticDataConfig(DataConfig):
    """A generated language: a mixture of sparse bigram, hashed trigram and copy rules.

    See :mod:`muscale.data.synthetic`. ``source_seed`` fixes the language (its rule tables);
    ``seed`` the documents drawn from it. ``branching`` successors per context, with
    Dirichlet(``alpha``) weights; ``n_contexts`` hash buckets of the trigram rule. The three
    ``*_weight`` are the mixture weights (they must sum to 1).
    """

    name: str = "synthetic"
    vocab_size: int = 256
    source_seed: int = 0
    branching: int = 8
    alpha: float = 0.5
    n_contexts: int = 1024
    bigram_weight: float = 0.5
    trigram_weight: float = 0.3
    copy_weight: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("data.name", self.name, ("synthetic",))
        if not 2 <= self.vocab_size <= 65536:
            raise ConfigError("data.vocab_size", self.vocab_size, "must be in [2, 65536]")
        if not 1 <= self.branching <= self.vocab_size:
            raise ConfigError("data.branching", self.branching, "must be in [1, vocab_size]")
        check_positive("data.alpha", self.alpha)
        check_positive("data.n_contexts", self.n_contexts)
        check_positive("data.source_seed", self.source_seed, allow_zero=True)
        weights = (self.bigram_weight, self.trigram_weight, self.copy_weight)
        for f, w in zip(("bigram_weight", "trigram_weight", "copy_weight"), weights, strict=True):
            check_positive(f"data.{f}", w, allow_zero=True)
        if abs(sum(weights) - 1.0) > 1e-6:
            raise ConfigError(
                "data.bigram_weight+trigram_weight+copy_weight",
                round(sum(weights), 9),
                "the mixture weights must sum to 1",
            )
        if self.bigram_weight <= 0:
            raise ConfigError("data.bigram_weight", self.bigram_weight, "must be > 0")


@dataclass(kw_only=True)
class PyTextDataConfig(DataConfig):
    """The Python standard library's ``.py`` files, byte-level (vocab 256).

    ``root``: the directory to read (``None``: ``sysconfig.get_paths()["stdlib"]``).
    ``max_bytes``: cap on the corpus (whole files, in a fixed pseudo-random file order).
    ``eval_fraction``: share of the bytes held out, by whole file. ``shuffle``: visit the
    packed training sequences in a seeded random order each epoch.
    """

    name: str = "pytext"
    root: str | None = None
    max_bytes: int = 4_000_000
    eval_fraction: float = 0.05
    shuffle: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("data.name", self.name, ("pytext",))
        check_positive("data.max_bytes", self.max_bytes)
        _check_fraction("data.eval_fraction", self.eval_fraction)


@dataclass(kw_only=True)
class HFDataConfig(DataConfig):
    """Text through HF ``datasets``, tokenized once into a memory-mapped cache.

    ``path``: a ``datasets`` builder (``text``, ``json``, ``parquet``, ``csv``), a local
    dataset directory or a hub name (``None``: inferred from the ``data_files`` suffix).
    ``data_files``: local files, directories or glob patterns. ``config_name``/``split``:
    the hub subset and split to read. ``text_field``: the column holding the text.
    ``tokenizer``: a local directory saved with ``save_pretrained`` (``None``: UTF-8 bytes,
    vocab 256, byte 0 as the separator). ``add_eos``: put the tokenizer's EOS token after
    every document. ``max_tokens``: stop tokenizing after this many tokens. ``cache_dir``:
    where the token cache lives (``None``: ``$MUSCALE_DATA_CACHE`` or
    ``~/.cache/muscale/data``).
    """

    name: str = "hf"
    path: str | None = None
    data_files: list[str] | None = None
    config_name: str | None = None
    split: str = "train"
    text_field: str = "text"
    tokenizer: str | None = None
    add_eos: bool = True
    eval_fraction: float = 0.05
    max_tokens: int | None = None
    cache_dir: str | None = None
    shuffle: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("data.name", self.name, ("hf",))
        _check_fraction("data.eval_fraction", self.eval_fraction)
        if self.max_tokens is not None:
            check_positive("data.max_tokens", self.max_tokens)


TASKS = ("regression", "classification")
TEACHER_ACTIVATIONS = ("tanh", "relu", "gelu")


@dataclass(kw_only=True)
class TeacherDataConfig(DataConfig):
    """Targets of a fixed random teacher MLP on Gaussian inputs (for the MLP family).

    ``teacher_seed`` fixes the teacher; ``seed`` the inputs. Regression targets are
    standardised to unit variance, then get ``noise_std`` Gaussian noise; classification
    labels are the argmax of the (noise-perturbed) centred teacher logits.
    """

    name: str = "teacher"
    task: str = "regression"
    in_dim: int = 32
    out_dim: int = 10
    teacher_width: int = 256
    teacher_depth: int = 2
    activation: str = "tanh"
    teacher_seed: int = 0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("data.name", self.name, ("teacher",))
        check_choice("data.task", self.task, TASKS)
        check_choice("data.activation", self.activation, TEACHER_ACTIVATIONS)
        for f in ("in_dim", "out_dim", "teacher_width"):
            check_positive(f"data.{f}", getattr(self, f))
        check_positive("data.teacher_depth", self.teacher_depth, allow_zero=True)
        check_positive("data.teacher_seed", self.teacher_seed, allow_zero=True)
        check_positive("data.noise_std", self.noise_std, allow_zero=True)
        if self.task == "classification" and self.out_dim < 2:
            raise ConfigError("data.out_dim", self.out_dim, "classification needs >= 2 classes")


def _check_fraction(field: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(field, value, "must be in (0, 1)")


#: ``data.name`` -> its config dataclass (the table :func:`data_config` dispatches on).
DATA_CONFIGS: dict[str, type[DataConfig]] = {
    "synthetic": SyntheticDataConfig,
    "pytext": PyTextDataConfig,
    "hf": HFDataConfig,
    "teacher": TeacherDataConfig,
}
DATASET_NAMES = tuple(DATA_CONFIGS)


def data_schemas() -> list[tuple[str, str, type]]:
    """``(group, name, dataclass)`` rows for Hydra's ConfigStore.

    Registered with the other schemas by :func:`muscale.hydra_app.register_configs`: the YAML file
    ``conf/data/<name>.yaml`` starts with ``defaults: [/schema/data/<name>@_here_, _self_]``.
    """
    return [("schema/data", name, cls) for name, cls in DATA_CONFIGS.items()]


def data_config(d: Any) -> DataConfig:
    """A validated, typed data config from a dataclass, dict or DictConfig.

    Dispatches on ``name``; an unknown name is a :class:`ConfigError` listing the choices.
    """
    if isinstance(d, DataConfig):
        return d
    from muscale.config import to_dict, typed_config

    fields = to_dict(d)
    name = fields.get("name", "synthetic")
    check_choice("data.name", name, DATASET_NAMES)
    return typed_config(DATA_CONFIGS[name], fields, "data", f"data={name}")  # type: ignore[return-value]
