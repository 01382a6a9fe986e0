"""The trainer: ``run(cfg, run_dir)`` (:mod:`.loop`), checkpoints (:mod:`.checkpoint`),
metrics (:mod:`.logging`), torchrun DDP/FSDP2 (:mod:`.distributed`), MFU (:mod:`.mfu`).

Submodules are imported where used, so ``import muscale.train`` stays light.
"""
