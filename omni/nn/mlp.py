"""Feed-forward blocks."""

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): the dense FFN of every Qwen decoder."""

    def __init__(self, dim: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_proj = Linear(dim, hidden, bias=bias)
        self.up_proj = Linear(dim, hidden, bias=bias)
        self.down_proj = Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
