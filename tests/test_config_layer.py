"""The config layer's shape: no import cycles, no library module importing the CLI, config
modules at the bottom of the graph, and YAML files that hold only what differs from their
dataclass (one source of defaults)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "muscale"
CONF = ROOT / "conf"

#: the bottom of the graph: what a config module may import
CONFIG_MODULES = (
    "muscale.config",
    "muscale.models.configs",
    "muscale.param.config",
    "muscale.optim.config",
    "muscale.data.config",
    "muscale.train.config",
    "muscale.sweep.config",
)
BOTTOM = {
    "muscale.errors",
    "muscale.config",
    "muscale.param",  # an __init__ that imports nothing (asserted below)
    "muscale.param.rules",
    "muscale.param.roles",
    "muscale.param.guards",  # validation rules that import only muscale.errors
    "muscale.optim",
    "muscale.optim.guards",
    "muscale.sweep.guards",  # sweep-name rule, imports only muscale.errors
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every muscale module ``name`` imports, lazily (inside functions) or not, with the
    packages whose ``__init__`` that import runs."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
    out: set[str] = set()
    for mod in found:
        while mod.startswith("muscale.") and mod != name:
            if mod in MODULES and not name.startswith(mod + "."):
                out.add(mod)
            mod = mod.rpartition(".")[0]
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_no_library_module_imports_the_cli():
    upward = [
        (m, d)
        for m, deps in GRAPH.items()
        if not m.startswith("muscale.cli") and not m.endswith("__main__")
        for d in deps
        if d == "muscale.cli" or d.startswith("muscale.cli.")
    ]
    assert upward == []


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_config_modules_sit_at_the_bottom(module):
    assert GRAPH[module] - BOTTOM == set()
    assert all(GRAPH[m] - BOTTOM == set() for m in BOTTOM)


def test_import_muscale_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys, muscale; heavy = [m for m in ('hydra', 'transformers', 'optuna', "
        "'matplotlib', 'datasets') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def _group_files() -> list[tuple[Path, type]]:
    from muscale.data.config import DATA_CONFIGS
    from muscale.models.configs import GPTConfig, MLPConfig
    from muscale.optim.config import OptimConfig
    from muscale.param.config import ParamConfig
    from muscale.train.config import LoggerConfig, TrainerConfig

    rows = [(CONF / "data" / f"{n}.yaml", c) for n, c in DATA_CONFIGS.items()]
    rows += [(CONF / "model" / "gpt.yaml", GPTConfig), (CONF / "model" / "mlp.yaml", MLPConfig)]
    rows += [(p, ParamConfig) for p in sorted((CONF / "param").glob("*.yaml"))]
    rows += [(p, OptimConfig) for p in sorted((CONF / "optim").glob("*.yaml"))]
    rows += [(CONF / "trainer" / "default.yaml", TrainerConfig)]
    rows += [(CONF / "logger" / "default.yaml", LoggerConfig)]
    return rows


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    value = f.default_factory()  # type: ignore[misc]
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _restated(yaml_value: object, default: object) -> list[str]:
    """Keys of ``yaml_value`` equal to the default (recursing into mappings)."""
    if isinstance(yaml_value, dict) and isinstance(default, dict):
        return [
            k
            for k, v in yaml_value.items()
            if k in default and (_restated(v, default[k]) or v == default[k])
        ]
    return []


@pytest.mark.parametrize("path,cls", _group_files(), ids=lambda x: getattr(x, "name", ""))
def test_yaml_holds_only_what_differs_from_its_dataclass(path, cls):
    """One source of defaults: a value equal to the dataclass default is not repeated
    (``name``/``scheme`` select the option and stay)."""
    data = yaml.safe_load(path.read_text()) or {}
    data.pop("defaults", None)
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
    restated = [k for k in _restated(data, defaults) if k not in ("name", "scheme")]
    assert restated == [], f"{path.relative_to(ROOT)} repeats dataclass defaults: {restated}"


def test_public_api_resolves_from_one_import():
    import muscale

    for name in muscale.__all__:
        assert getattr(muscale, name) is not None, name
    assert (
        muscale.train_model.__name__ == "run" and muscale.build_model.__module__ == "muscale.build"
    )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = muscale.nope
