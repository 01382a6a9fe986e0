# CUDA image of muscale, installed from its wheel on an official PyTorch CUDA base (torch
# comes with the base image and satisfies muscale's torch>=2.5, so pip installs no other).
# The wheel holds the package, its Hydra configs (muscale.conf) and the sweeper plugin
# (hydra_plugins/muscale_sweeper); recipes/ is copied beside it for --config-dir recipes.
# Commands: docs/docker.md (tests/test_docker.py checks them against this file).
#
#   docker build -t muscale .
#   docker run --rm muscale                                  # muscale --help
#   docker run --rm muscale inspect model.width=1024         # a muscale subcommand
#   docker run --gpus all --ipc=host -v $PWD/runs:/workspace/runs muscale \
#     torchrun --nproc_per_node=8 -m muscale.train --config-dir recipes \
#     --config-name target_gpt_cuda hydra.run.dir=runs/big   # any other program runs as is

# 1. the wheel
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY muscale ./muscale
COPY conf ./conf
COPY hydra_plugins ./hydra_plugins
RUN pip wheel --no-cache-dir --no-deps -w /dist .

# 2. the image
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WANDB_MODE=offline

# microsoft/mup without its torchvision dependency (it would pull another torch)
RUN pip install --no-cache-dir --no-deps mup==1.0.0
COPY --from=wheel /dist /tmp/dist
RUN pip install --no-cache-dir "$(ls /tmp/dist/muscale-*.whl)[sweep,hf,wandb]" \
    && rm -rf /tmp/dist

WORKDIR /workspace
COPY recipes ./recipes
COPY tools/docker_entrypoint.sh /usr/local/bin/muscale-entrypoint

# `docker run IMAGE <muscale subcommand> ...` runs muscale; anything else (torchrun, python,
# bash) runs as given: see tools/docker_entrypoint.sh
ENTRYPOINT ["/usr/local/bin/muscale-entrypoint"]
CMD ["muscale", "--help"]
