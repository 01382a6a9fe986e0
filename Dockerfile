# CUDA image of muscale on an official PyTorch CUDA base (torch comes with the base image;
# `pip install -e .` sees it satisfied and installs no other torch).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WANDB_MODE=offline
WORKDIR /workspace/muscale

# microsoft/mup without its torchvision dependency (it would pull another torch)
RUN pip install --no-cache-dir --no-deps mup==1.0.0

COPY pyproject.toml README.md ./
COPY muscale ./muscale
COPY conf ./conf
COPY recipes ./recipes
COPY tools ./tools
RUN pip install --no-cache-dir -e ".[sweep,hf,wandb]"

# e.g. docker run --gpus all -v $PWD/runs:/workspace/muscale/runs IMAGE \
#        torchrun --nproc_per_node=8 -m muscale.train --config-dir recipes ...
ENTRYPOINT ["muscale"]
CMD ["--help"]
