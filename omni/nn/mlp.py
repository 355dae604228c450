"""Feed-forward blocks and the activation table every block reads its `hidden_act` from."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .linear import Linear

# config.json activation names -> the function (the names the releases' configs use)
ACTIVATIONS = {
    "silu": F.silu,
    "gelu": F.gelu,  # exact (erf)
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
}


def activation(name: str, field: str = "hidden_act"):
    """The activation a config names; ConfigError naming the field for anything else."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"{field} {name!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """fc2(act(fc1(x))), both biased: the encoders' feed-forward, the Talker's resizing projections, the DiT's FFN
    and (with a norm in front) the patch mergers. (..., dim) -> (..., out or dim)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, act: str = "gelu", field: str = "hidden_act"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim if out is None else out)
        self.act = activation(act, field)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): the dense FFN of every Qwen decoder (and the Qwen2.5-Omni vision blocks)."""

    def __init__(self, dim: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_proj = Linear(dim, hidden, bias=bias)
        self.up_proj = Linear(dim, hidden, bias=bias)
        self.down_proj = Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
