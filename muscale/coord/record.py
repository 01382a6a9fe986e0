r"""Forward hooks that reduce each hooked output to two numbers per step.

For a module output :math:`x_t` (after :math:`t` optimizer steps, on the fixed batch) the
coordinate check of TP5 (Yang et al. 2022, §D.1 and Fig. 5) records

* the **level** :math:`A_t = \operatorname{mean}|x_t|` and
* the **change** :math:`D_t = \operatorname{mean}|x_t - x_0|`.

The hooks run inside the training forward pass (no extra forward, no retracing); they keep
one tensor per module, :math:`x_0` (the change needs it element-wise), and write every
statistic into a preallocated tensor on the model's device, so there is no host sync per step.
Attention logits are never materialised by ``scaled_dot_product_attention``; the hook on
``attn.probe`` computes :math:`q k^\top \cdot \text{scale}` from its inputs and averages over
the causal (lower-triangular) entries only, the ones the softmax sees.

:class:`Taps` is the same hook without the preallocated tensor, for the seed-batched path
(:mod:`muscale.coord.batched`): inside ``torch.func.vmap`` nothing can be written into an
outside tensor, so the hooked values flow out of the vmapped function and :func:`level` /
:func:`change` reduce them there, with the same arithmetic as :class:`Recorder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from muscale.coord.points import Point
from muscale.errors import UserError


def attention_logits(q: Tensor, k: Tensor, scale: float) -> Tensor:
    """Causal attention logits ``(B, nh, T, T)``, zero above the diagonal.

    ``q`` is ``(B, nh, T, hs)``, ``k`` is ``(B, nkv, T, hs)`` with ``nh = g · nkv`` (GQA:
    query head ``j`` reads key head ``j // g``, as ``enable_gqa`` does).
    """
    b, nh, t, hs = q.shape
    nkv = k.shape[1]
    qg = q.reshape(b, nkv, nh // nkv, t, hs)  # (B, nkv, g, T, hs)
    logits = (qg @ k.unsqueeze(2).transpose(-1, -2)) * scale  # (B, nkv, g, T, T)
    return logits.reshape(b, nh, t, t).tril_()


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise UserError(
        f"coord-check: a hooked module returned {type(out).__name__}; hook a module whose "
        "output is a tensor (or a tuple whose first element is one)"
    )


def hooked_value(
    point: Point, module: nn.Module, args: tuple[Any, ...], out: Any
) -> tuple[Tensor, float, bool]:
    """What a point records from one forward: ``(x, n, fresh)``, the tensor to reduce, the
    number of entries its mean runs over, and whether ``x`` is a new tensor (the attention
    logits) rather than a module output that a later in-place op could change."""
    with torch.no_grad():
        if point.kind == "attn_logits":
            q, k = args[0].detach(), args[1].detach()
            x = attention_logits(q, k, float(module.scale))  # type: ignore[arg-type]
            t = q.shape[-2]
            return x, x.numel() / (t * t) * t * (t + 1) / 2, True  # causal entries
        x = _first_tensor(out).detach()
        return x, float(x.numel()), False


def level(x: Tensor, n: float) -> Tensor:
    r""":math:`A_t = \operatorname{mean}|x_t|` (float32 accumulation)."""
    return torch.linalg.vector_norm(x, 1, dtype=torch.float32) / n


def change(x: Tensor, x0: Tensor, n: float) -> Tensor:
    r""":math:`D_t = \operatorname{mean}|x_t - x_0|` (float32 accumulation)."""
    return torch.linalg.vector_norm(torch.sub(x, x0), 1, dtype=torch.float32) / n


class Taps:
    """Hooks on ``points`` of ``model`` that hand each point's :func:`hooked_value` to
    :meth:`take` at every forward; this class keeps them in :attr:`values` (the point's index
    -> ``(x, n, fresh)``) for the caller to reduce: forwards inside ``torch.func``
    transforms, where a hook cannot write into a tensor made outside."""

    def __init__(self, model: nn.Module, points: Sequence[Point]) -> None:
        self.model = model
        self.points = list(points)
        self.values: dict[int, tuple[Tensor, float, bool]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Taps:
        modules = dict(self.model.named_modules())
        for i, p in enumerate(self.points):
            self._handles.append(modules[p.name].register_forward_hook(self._hook(i, p)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, i: int, point: Point) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            self.take(i, *hooked_value(point, module, args, out))

        return hook

    def take(self, i: int, x: Tensor, n: float, fresh: bool) -> None:
        self.values[i] = (x, n, fresh)


class Recorder(Taps):
    """Hooks on ``points`` of ``model`` filling ``stats[point, t, (level, change)]``.

    Use as a context manager; set :attr:`t` before each forward. A forward with ``t == 0``
    stores :math:`x_0`; later ones compute the change against it. The statistics are
    reduced inside the hook, into a preallocated tensor on the model's device (no host sync
    per step, and no module output kept beyond :math:`x_0`).
    """

    def __init__(self, model: nn.Module, points: Sequence[Point], steps: int) -> None:
        super().__init__(model, points)
        self.t = 0
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.stats = torch.zeros(len(self.points), steps + 1, 2, device=device)
        self._x0: dict[int, Tensor] = {}

    def __enter__(self) -> Recorder:
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._x0.clear()

    @torch.no_grad()
    def take(self, i: int, x: Tensor, n: float, fresh: bool) -> None:
        t = self.t
        self.stats[i, t, 0] = level(x, n)
        if t == 0:
            # the one copy the change statistic needs (a module output could be modified in
            # place downstream; logits computed here are ours already)
            self._x0[i] = x if fresh else x.clone()
        else:
            self.stats[i, t, 1] = change(x, self._x0[i], n)
