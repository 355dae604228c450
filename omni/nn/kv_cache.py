"""A preallocated key/value cache for one attention layer."""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """Keys and values of the tokens seen so far, (B, K, max_len, Dh), filled left to right.

    `update(k, v)` appends the new tokens and returns every cached key/value so far. The buffers grow (doubling)
    when a sequence outlives `max_len`, so callers may size it from the expected length without risk.
    """

    def __init__(self, batch: int, n_kv_heads: int, head_dim: int, max_len: int, dtype=None, device=None):
        super().__init__()
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.length = 0

    def update(self, k: torch.Tensor, v: torch.Tensor):
        n = k.shape[2]
        end = self.length + n
        if end > self.k.shape[2]:
            grow = max(end, 2 * self.k.shape[2]) - self.k.shape[2]
            pad = (0, 0, 0, grow)
            self.k = torch.nn.functional.pad(self.k, pad)
            self.v = torch.nn.functional.pad(self.v, pad)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reset(self):
        self.length = 0


class DecoderCache(nn.Module):
    """One KVCache per decoder layer, plus the number of tokens already processed."""

    def __init__(self, layers: list[KVCache]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reset(self):
        for c in self.layers:
            c.reset()
