"""Checkpoints: safetensors for every tensor, JSON for the rest, written atomically.

A checkpoint is a directory ``<run>/checkpoints/step_0000100/`` holding

============================ ==========================================================
``model.safetensors``         the model's full state dict (tied tensors stored once)
``optim.safetensors``         optimizer state tensors, keyed ``<param name>/<slot>``
``rng.safetensors``           torch CPU (and CUDA) generator states
``train_state.json``          step (= data position), tokens, scheduler state, optimizer
                              param groups and non-tensor slots, loss bookkeeping
``meta.json``                 ``config`` (model/param/optim/data/trainer), ``plan``
                              (:meth:`Plan.to_dict`), ``step``, and size + SHA-256 of
                              every file above
============================ ==========================================================

Nothing is ever unpickled: a checkpoint from an untrusted source can at worst fail to
load. Writes go to a temporary sibling directory that is renamed into place when complete,
so a crash leaves either the previous checkpoints or the new one, never half of one; the
last ``keep`` are kept. The state dicts are *full* (unsharded) and keyed by parameter name,
so a checkpoint written by N processes (DDP or FSDP2) loads in any number of processes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muscale.errors import UserError
from muscale.hashing import file_sha256
from muscale.param.plan import Plan

FORMAT = "muscale-checkpoint/1"
FILES = ("model.safetensors", "optim.safetensors", "rng.safetensors", "train_state.json")
#: config sections that must match for a resume (the trainer section may change: more
#: steps, other eval cadence, other world size)
RESUME_SECTIONS = ("model", "param", "optim", "data")
#: keys allowed to differ inside those sections (machine-local or evaluation-only)
RESUME_IGNORED = ("data.cache_dir", "data.eval_batches")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


# --------------------------------------------------------------------------- writing


def save_checkpoint(
    root: Path,
    *,
    step: int,
    model_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    train_state: dict[str, Any],
    config: dict[str, Any],
    plan: Plan,
    keep: int,
) -> Path:
    """Write checkpoint ``root/step_<step>`` atomically; delete all but the newest ``keep``.

    ``optim_state`` is a full optimizer state dict keyed by parameter name (as
    ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` returns it).
    """
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per writer
    tmp.mkdir()
    tensors, aliases = _dedupe(model_state)
    save_file(tensors, str(tmp / "model.safetensors"))
    opt_tensors, opt_json = flatten_optim_state(optim_state)
    save_file(opt_tensors, str(tmp / "optim.safetensors"))
    save_file(rng_state(), str(tmp / "rng.safetensors"))
    state = {**train_state, "optim": opt_json, "step": step}
    _write_json(tmp / "train_state.json", state)
    meta = {
        "format": FORMAT,
        "step": step,
        "config": config,
        "plan": plan.to_dict(),
        "aliases": aliases,
        "torch": torch.__version__,
        "files": {name: _file_info(tmp / name) for name in FILES},
    }
    _write_json(tmp / "meta.json", meta)
    _fsync_dir(tmp)
    _publish(tmp, final)
    _fsync_dir(root)
    for stale in list_checkpoints(root)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``, race-free with other writers.

    ``rename`` onto a non-empty directory fails atomically, so of two writers of one step
    exactly one lands; a writer that finds ``final`` taken moves it aside under a unique
    name (a re-save, e.g. a resumed run stopping where it started) and tries again. Every
    loser removes its own temporary directory: nothing half-written stays behind.
    """
    for _ in range(10):
        try:
            tmp.rename(final)
            return
        except OSError:
            if not final.exists():
                continue  # another writer moved it aside just now: try again
        aside = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        try:
            final.rename(aside)
        except OSError:
            continue  # another writer moved or replaced it first
        shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)  # others kept publishing this step: theirs stands


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Contiguous CPU tensors with shared storage stored once (tied embeddings)."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().to("cpu").contiguous().clone()
    return out, aliases


def flatten_optim_state(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``{"state": {name: {slot: value}}, "param_groups": [...]}`` into tensors
    (``"<name>/<slot>"``) and a JSON-able rest (non-tensor slots, param groups)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, slots in osd.get("state", {}).items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{slot}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(name), {})[slot] = _encode(value)
    groups = [{k: _encode(v) for k, v in g.items()} for g in osd.get("param_groups", [])]
    return tensors, {"scalars": scalars, "param_groups": groups}


def unflatten_optim_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten_optim_state`."""
    state: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        name, _, slot = key.rpartition("/")
        state.setdefault(name, {})[slot] = t
    for name, slots in rest.get("scalars", {}).items():
        for slot, value in slots.items():
            state.setdefault(name, {})[slot] = _decode(value)
    groups = [{k: _decode(v) for k, v in g.items()} for g in rest.get("param_groups", [])]
    return {"state": state, "param_groups": groups}


def _encode(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return tuple(_decode(v) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def rng_state() -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"torch_cuda_{i}"] = s
    return out


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    try:
        torch.set_rng_state(state["torch_cpu"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise UserError(f"checkpoint RNG state is not a torch generator state: {exc}") from None
    if torch.cuda.is_available():
        cuda = [
            state[f"torch_cuda_{i}"]
            for i in range(torch.cuda.device_count())
            if f"torch_cuda_{i}" in state
        ]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())


def _file_info(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- finding


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` (``step_*`` dirs with a meta.json), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / "meta.json").exists()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run directory, or None."""
    found = list_checkpoints(Path(run_dir) / "checkpoints")
    return found[-1] if found else None


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir from a checkpoint dir, a run dir or a run's ``checkpoints`` dir."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"checkpoint {p}: no such file or directory")
    if not p.is_dir():
        raise UserError(f"checkpoint {p}: not a directory (give a checkpoint or run directory)")
    if (p / "meta.json").exists():
        return p
    for root in (p / "checkpoints", p):
        found = list_checkpoints(root)
        if found:
            return found[-1]
    if any(p.glob("step_*")) or any((p / "checkpoints").glob("step_*")):
        raise UserError(f"checkpoint {p}: its step_* directories have no meta.json (corrupt)")
    raise UserError(f"checkpoint {p}: no meta.json and no checkpoints/step_* inside")


# --------------------------------------------------------------------------- reading


def read_meta(ckpt: Path, *, verify: bool = True) -> dict[str, Any]:
    """``meta.json`` of a checkpoint, after checking every file's size and SHA-256."""
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except FileNotFoundError:
        raise UserError(f"checkpoint {ckpt}: meta.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"checkpoint {ckpt} is corrupt: meta.json is not valid JSON ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(
            f"checkpoint {ckpt}: not a {FORMAT} checkpoint (format={meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"checkpoint {ckpt} is corrupt: meta.json is not an object"
        )
    for key in ("config", "plan", "step", "files"):
        if key not in meta:
            raise UserError(f"checkpoint {ckpt} is corrupt: meta.json has no {key!r}")
    if verify:
        for name, info in meta["files"].items():
            f = ckpt / name
            if not f.exists():
                raise UserError(f"checkpoint {ckpt} is incomplete: {name} is missing")
            if f.stat().st_size != info["bytes"] or file_sha256(f) != info["sha256"]:
                raise UserError(
                    f"checkpoint {ckpt} is corrupt: {name} does not match the size/SHA-256 "
                    "recorded in meta.json"
                )
    return meta


def _load_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt: {exc}") from None


def read_model_state(ckpt: Path, meta: dict[str, Any], device: str = "cpu") -> dict:
    state = _load_safetensors(ckpt / "model.safetensors", device)
    for alias, target in meta.get("aliases", {}).items():
        state[alias] = state[target]
    return state


def read_train_state(
    ckpt: Path, *, optim: bool = True
) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """``(train_state, full optimizer state dict, rng states)`` of a checkpoint (the
    optimizer state is ``{}`` with ``optim=False``: ranks other than 0 never need it)."""
    state = _read_train_json(ckpt)
    osd: dict[str, Any] = {}
    if optim:
        osd = unflatten_optim_state(_load_safetensors(ckpt / "optim.safetensors"), state["optim"])
    rng = _load_safetensors(ckpt / "rng.safetensors")
    return state, osd, rng


# --------------------------------------------------------------------------- checking


def check_compatible(ckpt: Path, meta: dict[str, Any], config: dict[str, Any], plan: Plan) -> None:
    """Raise :class:`UserError` unless the checkpoint was written by this configuration.

    The model, parametrization, optimizer and data sections must be equal (a different
    width or scheme would load wrong shapes or, worse, right shapes with wrong scales),
    and so must the plan (same rules, same per-tensor scales); then the files' contents
    must fit the plan (:func:`check_contents`): the SHA-256 check only proves the files are
    the ones meta.json names, not that meta.json tells the truth.
    """
    old = meta["config"]
    for section in RESUME_SECTIONS:
        diff = _first_difference(old.get(section, {}), config.get(section, {}), section)
        if diff is not None:
            key, there, here = diff
            raise UserError(
                f"checkpoint {ckpt} does not match this run: {key} is {there!r} there and "
                f"{here!r} here; resume with the checkpoint's config or use a new run dir"
            )
    if _canonical(meta["plan"]) != _canonical(plan.to_dict()):
        names = {p["name"]: p for p in meta["plan"].get("params", [])}
        for p in plan.to_dict()["params"]:
            q = names.get(p["name"])
            if _canonical(q) != _canonical(p):
                raise UserError(
                    f"checkpoint {ckpt} does not match this run: the plan of {p['name']} "
                    f"differs ({q} there, {p} here)"
                )
        raise UserError(f"checkpoint {ckpt} does not match this run: the plans differ")
    check_contents(ckpt, meta, plan)


#: dtypes a checkpointed weight or optimizer slot may have (all weights share one)
FLOAT_DTYPES = ("F32", "BF16", "F16")


def _header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``name -> (dtype, shape)`` of a safetensors file, read from its header only."""
    from safetensors import SafetensorError, safe_open

    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a dict
                sl = f.get_slice(name)
                out[name] = (str(sl.get_dtype()), tuple(sl.get_shape()))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt: {exc}") from None
    return out


def check_contents(ckpt: Path, meta: dict[str, Any], plan: Plan) -> None:
    """Raise :class:`UserError` unless every tensor the plan names is in the checkpoint with
    the plan's shape and a float dtype, nothing else is, the optimizer slots sit on known
    parameters with their shapes, the RNG state is a torch generator state and the train
    state's step is the checkpoint's step. Reads headers only (no tensor is loaded)."""
    where = f"checkpoint {ckpt} does not fit this run"
    shapes = {p.name: tuple(p.shape) for p in plan.params}
    model = _header(ckpt / "model.safetensors")
    aliases = meta.get("aliases", {})
    if not isinstance(aliases, dict) or any(t not in model for t in aliases.values()):
        raise UserError(f"{where}: meta.json aliases name tensors that are not stored")
    for name, shape in shapes.items():
        if name in aliases:
            name = aliases[name]
        if name not in model:
            raise UserError(f"{where}: model tensor {name} is missing")
        dtype, got = model[name]
        if got != shape:
            raise UserError(
                f"{where}: model tensor {name} has shape {list(got)}, the plan says {list(shape)}"
            )
        if dtype not in FLOAT_DTYPES:
            raise UserError(f"{where}: model tensor {name} has dtype {dtype}; expected float")
    dtypes = {dtype for dtype, _ in model.values()}
    if len(dtypes) > 1:
        raise UserError(f"{where}: model tensors mix dtypes {', '.join(sorted(dtypes))}")
    extra = sorted(set(model) - set(shapes) - set(aliases.values()))
    if extra:
        raise UserError(f"{where}: unexpected model tensors {', '.join(extra[:5])}")
    for key, (dtype, got) in _header(ckpt / "optim.safetensors").items():
        name = key.rpartition("/")[0]
        if name not in shapes:
            raise UserError(f"{where}: optimizer state {key} is for unknown parameter {name}")
        if got not in ((), (1,), shapes[name]) or dtype not in (*FLOAT_DTYPES, "I64"):
            raise UserError(
                f"{where}: optimizer state {key} has shape {list(got)} and "
                f"dtype {dtype}; parameter {name} has shape {list(shapes[name])}"
            )
    rng = _header(ckpt / "rng.safetensors")
    cpu_state = ("U8", tuple(torch.get_rng_state().shape))
    if rng.get("torch_cpu") != cpu_state:
        raise UserError(f"{where}: rng.safetensors holds no valid torch CPU generator state")
    state = _read_train_json(ckpt)
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step != meta["step"] or step < 0:
        raise UserError(f"{where}: train_state.json step={step!r}, meta.json step={meta['step']!r}")
    for key, kind in (("scheduler", dict), ("optim", dict)):
        if not isinstance(state.get(key), kind):
            raise UserError(f"{where}: train_state.json has no valid {key!r} section")


def _read_train_json(ckpt: Path) -> dict[str, Any]:
    try:
        state = json.loads((ckpt / "train_state.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"checkpoint {ckpt} is corrupt: train_state.json: {exc}") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {ckpt} is corrupt: train_state.json is not an object")
    return state


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> None:
    """Strict load: the same names, shapes and dtypes as the model's own state dict (torch's
    full-state loader skips missing keys and casts dtypes silently)."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        raise UserError(
            f"checkpoint weights do not fit the model: missing {missing[:5]}, unexpected "
            f"{extra[:5]}"
        )
    for name, t in expected.items():
        g = given[name]
        if tuple(g.shape) != tuple(t.shape) or g.dtype != t.dtype:
            raise UserError(
                f"checkpoint weight {name} is {g.dtype} {list(g.shape)}; the model has "
                f"{t.dtype} {list(t.shape)}"
            )


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _first_difference(a: Any, b: Any, prefix: str) -> tuple[str, Any, Any] | None:
    if prefix in RESUME_IGNORED:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            diff = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}")
            if diff is not None:
                return diff
        return None
    if _same_number(a, b):
        return None
    if _canonical(a) != _canonical(b):
        return prefix, a, b
    return None


def _same_number(a: Any, b: Any) -> bool:
    """Floats equal to 1e-12 relative: a value recomputed on another path (an LR grid from
    2**x, a YAML round trip) may differ in the last bit without being another setting."""
    real = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    numbers = isinstance(a, real) and isinstance(b, real)
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return False


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint: module, resolved config, plan and step."""

    model: nn.Module
    config: dict[str, Any]
    plan: Plan
    step: int
    path: Path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of a checkpoint (or of a run dir's latest checkpoint).

    The model is built from the stored config and must reproduce the stored plan; its
    weights are loaded strictly (every tensor, matching shapes), in eval mode.
    """
    from muscale.build import build_model

    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    config = meta["config"]
    plan = Plan.from_dict(meta["plan"])
    try:
        model, built = build_model(
            config["model"], config["param"], optim_family=plan.optim_family, device=device
        )
    except (KeyError, TypeError) as exc:
        raise UserError(
            f"checkpoint {ckpt}: meta.json config has no valid model: {exc!r}"
        ) from None
    if _canonical(built.to_dict()) != _canonical(meta["plan"]):
        raise UserError(
            f"checkpoint {ckpt}: its stored plan differs from the one this muscale builds "
            "from its config (written by another version of the rules?)"
        )
    state = read_model_state(ckpt, meta, str(device))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {ckpt}: weights do not fit the model: {exc}") from None
    model.eval()
    return LoadedModel(model=model, config=config, plan=plan, step=int(meta["step"]), path=ckpt)
