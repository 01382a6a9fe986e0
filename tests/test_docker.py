"""The Dockerfile and its documented ``docker run`` commands, checked without Docker.

The CI machines have no Docker engine, so the image is never built here. Instead: the
Dockerfile is parsed (every COPY source exists; the wheel stage copies all the build needs;
the image installs the wheel, not the source tree), ``docker run IMAGE ARGS`` is turned into
the argv Docker would exec (ENTRYPOINT + (ARGS or CMD)) and the real entrypoint script is run
with stand-in programs that record what they receive, and each documented command is then
parsed the way its program would: torchrun's own argument parser, muscale's subcommand
table, Hydra's override grammar and a composition of the named config.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCS = ROOT / "docs" / "docker.md"
WORKDIR = "/workspace"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str, bool]]:
    """(sources, destination, from another stage) of each COPY."""
    out = []
    for word, args in stage:
        if word == "COPY":
            parts = shlex.split(args)
            from_stage = any(p.startswith("--from=") for p in parts)
            parts = [p for p in parts if not p.startswith("--")]
            out.append((parts[:-1], parts[-1], from_stage))
    return out


def exec_form(word: str) -> list[str]:
    (args,) = [a for w, a in stages()[-1] if w == word]
    value = json.loads(args)  # exec form: a JSON list, no shell in between
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), word
    return value


def test_every_copy_source_exists():
    for stage in stages():
        for sources, _, from_stage in copies(stage):
            if not from_stage:
                for src in sources:
                    assert (ROOT / src).exists(), (
                        f"Dockerfile copies {src}, which is not in the repo"
                    )


def test_the_wheel_stage_copies_what_the_build_needs():
    """pyproject's readme, setup.py (the conf/ -> muscale.conf mapping) and every directory
    a package is built from."""
    copied = {src.rstrip("/") for s, _, _ in copies(stages()[0]) for src in s}
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    package_dirs = {"muscale", "hydra_plugins"}
    package_dirs |= set(re.findall(r'"muscale\.conf":\s*"(\w+)"', (ROOT / "setup.py").read_text()))
    assert "conf" in package_dirs
    need = {"pyproject.toml", "setup.py", readme, *package_dirs}
    assert need <= copied, f"the wheel stage does not copy {sorted(need - copied)}"
    assert any(w == "RUN" and "pip wheel" in a for w, a in stages()[0])


def test_the_image_installs_the_wheel_not_the_source():
    final = stages()[-1]
    runs = " ".join(a for w, a in final if w == "RUN")
    assert re.search(r"pip install [^&]*muscale-\*\.whl\)\[[^]]*sweep", runs), runs
    assert " -e " not in runs and "--editable" not in runs
    copied = {src for s, _, from_stage in copies(final) if not from_stage for src in s}
    assert not copied & {"muscale", "conf", "hydra_plugins"}, "the image must run the wheel"
    assert "recipes" in copied  # --config-dir recipes, relative to WORKDIR
    assert [a for w, a in final if w == "WORKDIR"][-1] == WORKDIR


def entrypoint_script() -> Path:
    """The repo file that the ENTRYPOINT path was copied from."""
    (path,) = exec_form("ENTRYPOINT")
    for sources, dest, _ in copies(stages()[-1]):
        if dest == path:
            (src,) = sources
            return ROOT / src
    raise AssertionError(f"ENTRYPOINT {path} is not a file the Dockerfile copies")


def docker_exec(args: list[str], tmp_path: Path) -> list[str]:
    """The argv that the container's entrypoint finally execs for ``docker run IMAGE args``:
    Docker appends ARGS (or CMD when there are none) to ENTRYPOINT; the entrypoint script
    runs with stand-ins for muscale, torchrun, python and bash that record their argv."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    record = tmp_path / "argv.json"
    for prog in ("muscale", "torchrun", "python", "bash"):
        stub = bindir / prog
        stub.write_text(
            "#!/usr/bin/env python3\nimport json, sys\n"
            f"json.dump([{prog!r}, *sys.argv[1:]], open({str(record)!r}, 'w'))\n"
        )
        stub.chmod(0o755)
    argv = [str(entrypoint_script()), *(args or exec_form("CMD"))]
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", *argv], env=env, check=True, timeout=30)
    return json.loads(record.read_text())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["muscale", "--help"]),
        (["train", "model.width=64"], ["muscale", "train", "model.width=64"]),
        (["coord-check", "widths=[64,128]"], ["muscale", "coord-check", "widths=[64,128]"]),
        (["muscale", "fit", "format=json"], ["muscale", "fit", "format=json"]),
        (
            ["torchrun", "--nproc_per_node=8", "-m", "muscale.train"],
            ["torchrun", "--nproc_per_node=8", "-m", "muscale.train"],
        ),
        (["python", "-c", "print(1)"], ["python", "-c", "print(1)"]),
        (["bash"], ["bash"]),
    ],
)
def test_entrypoint_dispatch(args, expected, tmp_path):
    assert docker_exec(args, tmp_path) == expected


def test_entrypoint_knows_every_muscale_subcommand():
    from muscale.cli.main import COMMANDS

    case = re.search(r"^\s*([\w|-]+)\)\s*$", entrypoint_script().read_text(), re.M)
    assert case is not None
    assert set(case.group(1).split("|")) == set(COMMANDS)


def documented_commands() -> list[list[str]]:
    """Every ``docker ...`` command of docs/docker.md and the Dockerfile's header."""
    text = (
        DOCS.read_text()
        + "\n"
        + "\n".join(
            line.lstrip("# ")
            for line in DOCKERFILE.read_text().splitlines()
            if line.startswith("#")
        )
    )
    text = text.replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith("docker "):
            cmds.append(shlex.split(line.replace("$PWD", "/home/me")))
    return cmds


#: docker run options that take a value (the rest used in the docs are flags)
VALUE_OPTS = {"-v", "--volume", "-e", "--env", "--gpus", "--shm-size", "--name", "-w"}


def split_run(cmd: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    opts: dict[str, list[str]] = {}
    i = 2
    while cmd[i].startswith("-"):
        key, eq, val = cmd[i].partition("=")
        if key in VALUE_OPTS and not eq:
            opts.setdefault(key, []).append(cmd[i + 1])
            i += 2
        else:
            opts.setdefault(key, []).append(val)
            i += 1
    return opts, cmd[i], cmd[i + 1 :]


def hydra_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Overrides and ``--flag value`` pairs of a Hydra app's command line."""
    overrides, flags, it = [], {}, iter(args)
    for a in it:
        if a in ("--config-dir", "--config-name", "-cd", "-cn"):
            flags[a] = next(it)
        elif a in ("-m", "--multirun"):
            flags[a] = ""
        else:
            overrides.append(a)
    return overrides, flags


#: subcommand -> its primary config in conf/
CONFIGS = {"inspect": "inspect", "coord-check": "coord_check", "sweep": "sweep", "train": "train"}


def check_muscale(args: list[str]) -> None:
    """A muscale subcommand with valid Hydra overrides that compose into its config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from muscale.cli.main import COMMANDS
    from muscale.hydra_app import register_configs
    from muscale.resources import conf_dir

    sub, rest = args[0], args[1:]
    assert sub in COMMANDS, f"muscale has no subcommand {sub!r}"
    overrides, flags = hydra_args(rest)
    OverridesParser.create().parse_overrides(overrides)  # Hydra's grammar
    name = flags.get("--config-name", CONFIGS.get(sub))
    if name is None:
        return
    primary, search = str(conf_dir()), []
    if "--config-dir" in flags:  # relative to WORKDIR, where the image copies recipes/
        assert (ROOT / flags["--config-dir"] / f"{name}.yaml").is_file(), name
        search = [f"hydra.searchpath=[file://{conf_dir()}]"]
        primary = str(ROOT / flags["--config-dir"])
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=primary, version_base="1.3"):
        compose(name, [*overrides, *search], return_hydra_config=True)
    GlobalHydra.instance().clear()


def test_documented_commands_parse(tmp_path):
    from torch.distributed.run import get_args_parser

    cmds = documented_commands()
    builds = [c for c in cmds if c[:2] == ["docker", "build"]]
    (tag,) = {b[b.index("-t") + 1] for b in builds}  # one image name everywhere
    assert all(b[-1] == "." for b in builds)  # built from the repository root
    runs = [c for c in cmds if c[:2] == ["docker", "run"]]
    assert len(runs) >= 5
    programs = set()
    for cmd in runs:
        opts, image, args = split_run(cmd)
        assert image == tag, cmd
        argv = docker_exec(args, tmp_path)
        programs.add(argv[0])
        if argv[0] == "muscale":
            if argv[1:] != ["--help"]:
                check_muscale(argv[1:])
        elif argv[0] == "torchrun":
            ns = get_args_parser().parse_args(argv[1:])
            assert ns.module and ns.training_script == "muscale.train", argv
            assert (ROOT / "muscale" / "train" / "__main__.py").is_file()
            check_muscale(["train", *ns.training_script_args])
            # the run directory lands in a mounted volume, not in the throw-away container
            (run_dir,) = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
            mounts = [v.split(":")[1] for v in opts.get("-v", [])]
            assert any(f"{WORKDIR}/{run_dir}".startswith(m + "/") for m in mounts), cmd
        else:
            assert argv[0] == "bash", argv
    assert programs == {"muscale", "torchrun", "bash"}
