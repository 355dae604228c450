"""Preallocated key/value caches, and a static-shape decode step that `torch.compile(fullgraph=True)` accepts.

Eager decoding (`Decoder.forward(..., cache=...)`) appends through `KVCache.update` and attends over the filled
prefix. `static_decode_step` writes at tensor positions and attends over the whole buffer under a mask, so one
compiled graph serves every position.
"""

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


class _StaticSlot:
    """`KVCache.update` for a compiled step: write at tensor positions, return the whole buffers.

    The write position is a tensor, not the Python int `KVCache.length`, so a compiled step sees the same graph at
    every position (an int would be baked into the graph and force a recompile per step).
    """

    def __init__(self, cache: KVCache, write_pos: torch.Tensor):
        self.cache, self.write_pos = cache, write_pos

    def update(self, k: torch.Tensor, v: torch.Tensor):
        self.cache.k.index_copy_(2, self.write_pos, k.to(self.cache.k.dtype))  # (B, K, max_len, Dh)
        self.cache.v.index_copy_(2, self.write_pos, v.to(self.cache.v.dtype))
        return self.cache.k, self.cache.v


def static_decode_step(decoder, h, position_ids, write_pos, key_mask, cache: DecoderCache) -> torch.Tensor:
    """One decode step over a preallocated cache with static shapes (the body to `torch.compile(fullgraph=True)`).

    h (B, T, D) new embeddings; position_ids (3, B, T) or (B, T) rotary positions; write_pos (T,) long: the cache
    slots the new tokens go to; key_mask (B, 1, T, max_len) bool: which slots each new token may attend to (slots
    filled so far, real tokens only, causal). Returns the normed hidden states (B, T, D). The caller advances
    `cache` (see `advance`) outside the compiled region.
    """
    cos, sin = decoder.rope(position_ids, h.dtype)
    for layer, kv in zip(decoder.layers, cache.layers):
        h, _ = layer(h, cos, sin, key_mask, _StaticSlot(kv, write_pos))
    return decoder.norm(h)


def advance(cache: DecoderCache, n: int) -> None:
    """Record `n` tokens written by `static_decode_step` (keeps `length` right for the eager paths)."""
    for c in cache.layers:
        c.length += n
