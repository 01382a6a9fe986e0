"""Models written without muscale (plain PyTorch), for the tests of ``muscale.parametrize``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOCAB, SEQ = 64, 16


class PlainAttention(nn.Module):
    """Causal self-attention with a hand-written SDPA call (no scale attribute to reach):
    the number of heads grows with width, head_dim stays 16."""

    def __init__(self, d: int, head_dim: int = 16) -> None:
        super().__init__()
        self.n_heads, self.head_dim = d // head_dim, head_dim
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)  # (B,nh,T,hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class PlainBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = PlainAttention(d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class PlainTransformer(nn.Module):
    """A nanoGPT-like LM: token embedding, a raw learned position table, 2 blocks, head."""

    def __init__(self, d: int, depth: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Parameter(torch.zeros(SEQ, d))
        self.blocks = nn.ModuleList(PlainBlock(d) for _ in range(depth))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB, bias=False)

    def forward(self, idx: Tensor) -> Tensor:  # (B, T) -> (B, T, V)
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


#: the one tensor whose role shapes cannot decide (a raw (T, d) parameter)
TRANSFORMER_ROLES = {"pos": "input"}


class SmallCNN(nn.Module):
    def __init__(self, w: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, w, 3, padding=1)
        self.head = nn.Linear(w, 10)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 10)
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return self.head(h.mean((2, 3)))


def lm_batch(b: int = 4, t: int = SEQ, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, VOCAB, (b, t + 1), generator=g)
    return idx[:, :-1], idx[:, 1:]


def image_batch(b: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 8, 8, generator=g), torch.randint(0, 10, (b,), generator=g)
