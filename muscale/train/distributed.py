"""torchrun integration: process groups, DDP / FSDP2 wrapping, full state dicts.

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without them the run is one
process and nothing here touches ``torch.distributed``. Backends: NCCL on CUDA, gloo on
CPU. Parallelism (``trainer.parallel``):

* ``ddp``: :class:`~torch.nn.parallel.DistributedDataParallel` (gradients all-reduced,
  averaged over ranks: with equal local batches this is the global-batch gradient);
* ``fsdp``: FSDP2, :func:`torch.distributed.fsdp.fully_shard` on every residual block and
  on the root (parameters, gradients and optimizer state sharded dim-0 over ranks).

Checkpoints use *full* state dicts gathered to rank 0 (``get_model_state_dict`` /
``get_optimizer_state_dict`` with ``full_state_dict=True, cpu_offload=True``) and are
broadcast and re-sharded on load, so any world size reads any checkpoint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from muscale.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    parallel: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (0, 1, 0 without)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local GPU under torchrun) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={name} but CUDA is not available: use device=cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
        dev = torch.device(name)
        torch.cuda.set_device(dev)
        return dev
    return torch.device(name)


def check_parallel(parallel: str, world: int) -> None:
    """``trainer.parallel=ddp|fsdp`` without torchrun would silently train one process."""
    if parallel != "none" and world == 1:
        raise UserError(
            f"trainer.parallel={parallel} needs torchrun (WORLD_SIZE is unset or 1): launch "
            "with `torchrun --nproc_per_node=N -m muscale.train ...` or set trainer.parallel=none"
        )


def setup(parallel: str, device: torch.device) -> DistInfo:
    """Join torchrun's process group (if any) and check the parallel mode fits."""
    import torch.distributed as dist

    rank, world, local = env_info()
    check_parallel(parallel, world)
    if world == 1:
        return DistInfo(parallel="none")
    if parallel == "none":
        raise UserError(
            f"running under torchrun with {world} processes: set trainer.parallel=ddp or fsdp"
        )
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local, parallel=parallel)


def teardown(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """The module to train: DDP around ``model``, or ``model`` itself sharded in place."""
    if info.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    if info.parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (info.world_size,))
        for block in getattr(model, "blocks", []):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under DDP and ``torch.compile`` wrappers."""
    inner = getattr(model, "_orig_mod", model)
    return getattr(inner, "module", inner)


@contextlib.contextmanager
def accumulating(model: nn.Module, info: DistInfo, last: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch."""
    if info.parallel == "ddp" and not last:
        with model.no_sync():  # type: ignore[operator]
            yield
        return
    if info.parallel == "fsdp":
        model.set_requires_gradient_sync(last)  # type: ignore[operator]
    yield


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo) -> tuple:
    """Full (unsharded, CPU) model and optimizer state dicts keyed by parameter name.

    Collective under torchrun (every rank must call it); rank 0 gets the dicts, the
    others empty dicts.
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = _options(cpu_offload=True)
    msd = get_model_state_dict(unwrap(model) if info.parallel != "fsdp" else model, options=opts)
    osd = get_optimizer_state_dict(
        unwrap(model) if info.parallel != "fsdp" else model, optimizer, options=opts
    )
    return msd, osd


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, msd: dict, osd: dict, info: DistInfo
) -> None:
    """Inverse of :func:`full_state`: rank 0 holds the dicts; they are broadcast and
    sharded to every rank (collective under torchrun)."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    from muscale.train.checkpoint import check_state_dict

    target = unwrap(model) if info.parallel != "fsdp" else model
    opts = _options(broadcast_from_rank0=True) if info.enabled else _options()
    if info.enabled and not info.is_main:
        msd, osd = {}, {}
    else:  # strict: torch's full-state loader skips missing keys and casts dtypes
        check_state_dict(unwrap(model).state_dict(), msd)
    set_model_state_dict(target, msd, options=opts)
    set_optimizer_state_dict(target, optimizer, osd, options=opts)


def all_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over ranks (``t`` itself in one process)."""
    if not info.enabled:
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size


def all_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
