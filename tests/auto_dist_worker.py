"""Worker for tests/test_auto_survival.py: train parametrized models (a plain PyTorch
transformer, a HF Llama) for 3 Adam steps, alone or under torchrun (DDP / FSDP2, gloo),
and write the global losses as JSON. Usage: ``auto_dist_worker.py none|ddp|fsdp OUT``."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))

from anymodels import TRANSFORMER_ROLES, PlainTransformer, lm_batch

from muscale.auto import parametrize
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer


def models():
    yield (
        "plain",
        parametrize(PlainTransformer, width=64, base_width=32, roles=TRANSFORMER_ROLES, seed=0),
    )
    import transformers
    from transformers import LlamaConfig

    from muscale.hf import build

    transformers.logging.set_verbosity_error()
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    yield "llama", build(cfg, width=64, base_width=32, head_scaling="head_dim", seed=0)


def main(parallel: str, out: str) -> None:
    torch.manual_seed(0)
    world, rank = 1, 0
    if parallel != "none":
        import torch.distributed as dist

        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
    x, y = lm_batch(b=8)
    per = 8 // world
    x, y = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
    losses = {}
    for name, (model, plan) in models():
        fwd = model
        if parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            fwd = DDP(model)
        elif parallel == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in getattr(model, "blocks", []):
                fully_shard(block)
            fully_shard(model)
        opt, _ = make_optimizer(model, plan, OptimConfig(name="adam", lr=1e-2))
        got = []
        for _ in range(4):
            loss = F.cross_entropy(fwd(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            g = loss.detach().clone()
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(g)
                g /= world
            got.append(float(g))
        losses[name] = got
    if rank == 0:
        with open(out, "w") as f:
            json.dump(losses, f)
    if parallel != "none":
        import torch.distributed as dist

        dist.barrier()  # no rank tears gloo down while the other still talks to it
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown: about 1 run in 5 a gloo helper thread still joinable at
    # exit aborts the process ("terminate called without an active exception") after all
    # work is done and written
    os._exit(0)
