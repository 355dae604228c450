"""The Qwen2.5-Omni vision tokenizer (a Qwen2.5-VL-style tower): image / video patches -> Thinker-width embeddings.

Input: patch rows in merge-block order and `grid_thw` per item (omni.nn.patches); the same patch embedding, 2-D
rotary and merger as Qwen3-Omni's tower. What differs:

    pixels (N, C*T*P*P) ──patch_embed (bias-free)──► (N, D)      no absolute position table
    reorder the m x m merge groups into *window order*: each frame's merged grid is tiled into windows of
        window_size / patch_size / m merged tokens per side (partial windows at the right / bottom edges)
    blocks x depth: x += proj(attn(RMSNorm(x)))   x += SwiGLU(RMSNorm(x))      (q, k, v separate, all biased)
        attention inside each window, except the `fullatt_block_indexes` blocks: inside each frame
    merger: RMSNorm per patch, concat m x m patches, Linear -> GELU -> Linear   ──► (N / m², out_hidden_size)
    undo the window order

Full attention within a frame does not care about the order of the frame's patches, so the whole tower can run
in window order and only the merged output is put back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...nn.attention import packed_attention, segment_groups
from ...nn.checkpointing import call_block
from ...nn.mlp import SwiGLU
from ...nn.norm import RMSNorm
from ...nn.patches import PatchEmbed, PatchMerger, check_pixels, merge_block_order, vision_rotary
from .config import Qwen25VisionConfig


class Qwen25VisionAttention(nn.Module):
    """Attention with separate biased q / k / v projections, rotary, inside the given segments."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, groups: list) -> torch.Tensor:
        N, _ = x.shape
        q, k, v = (p(x).view(N, self.n_heads, self.head_dim) for p in (self.q, self.k, self.v))  # (N, H, Dh)
        return self.proj(packed_attention(q, k, v, groups, cos, sin).reshape(N, -1))


class Qwen25VisionBlock(nn.Module):
    def __init__(self, cfg: Qwen25VisionConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, 1e-6)
        self.attn = Qwen25VisionAttention(cfg.hidden_size, cfg.num_heads)
        self.mlp_norm = RMSNorm(cfg.hidden_size, 1e-6)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size, bias=True)

    def forward(self, x, cos, sin, groups):
        x = x + self.attn(self.attn_norm(x), cos, sin, groups)
        return x + self.mlp(self.mlp_norm(x))


def window_order(t: int, h: int, w: int, side: int) -> tuple[torch.Tensor, list[int]]:
    """Merged tokens of one item (t frames of an h x w merged grid) in window order.

    Returns (index (t*h*w,) into the raster order, merged tokens per non-empty window, in window order). Windows
    of `side` x `side` tokens tile each frame row-major; those at the right / bottom edges may be smaller.
    """
    nh, nw = math.ceil(h / side), math.ceil(w / side)
    index = torch.arange(t * h * w).view(t, h, w)
    index = F.pad(index, (0, nw * side - w, 0, nh * side - h), value=-1)  # (t, nh*side, nw*side)
    index = index.view(t, nh, side, nw, side).permute(0, 1, 3, 2, 4).reshape(t * nh * nw, side * side)
    sizes = (index >= 0).sum(-1)  # (windows,)
    return index[index >= 0], sizes.tolist()


class Qwen25VisionTokenizer(nn.Module):
    """The vision tower. `forward(pixel_values, grid_thw) -> (embeds (N/m², out), [])` (no DeepStack features)."""

    def __init__(self, cfg: Qwen25VisionConfig):
        super().__init__()
        if cfg.hidden_act != "silu":
            raise ConfigError(f"vision_config.hidden_act {cfg.hidden_act!r} is not supported; the SwiGLU blocks "
                              "use 'silu'")
        bad = [i for i in cfg.fullatt_block_indexes if not 0 <= i < cfg.depth]
        if bad:
            raise ConfigError(f"vision_config.fullatt_block_indexes {bad} are outside 0..depth-1 (depth {cfg.depth})")
        self.cfg, self.merge = cfg, cfg.spatial_merge_size
        self.patch_dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
        self.window_side = cfg.window_size // cfg.patch_size // cfg.spatial_merge_size  # merged tokens
        self.full_attention = set(cfg.fullatt_block_indexes)

        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.hidden_size,
                                      bias=False)
        self.rotary = vision_rotary(cfg)
        self.blocks = nn.ModuleList(Qwen25VisionBlock(cfg) for _ in range(cfg.depth))
        self.gradient_checkpointing = False  # recompute each block in the backward pass (omni.training)
        self.merger = PatchMerger(cfg.hidden_size, self.merge, cfg.out_hidden_size, norm_after_concat=False,
                                  norm=RMSNorm)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
        items = check_pixels(pixel_values, grid_thw, self.patch_dim, self.merge)
        device = pixel_values.device
        unit = self.merge * self.merge  # patches per merged token
        x = self.patch_embed(pixel_values)  # (N, D)

        rows, cols, order, windows, frames = [], [], [], [], []
        offset = 0  # merged tokens of the items before this one
        for t, h, w in items:
            r, c = merge_block_order(h, w, self.merge, device)
            rows.append(r.repeat(t))
            cols.append(c.repeat(t))
            index, sizes = window_order(t, h // self.merge, w // self.merge, self.window_side)
            order.append(index + offset)
            windows += [n * unit for n in sizes]
            frames += [h * w] * t
            offset += t * (h // self.merge) * (w // self.merge)
        order = torch.cat(order).to(device)  # (N / m²,) merged token at each window-order slot
        cos, sin = self.rotary(torch.cat(rows), torch.cat(cols))  # (N, Dh) each

        def to_windows(a: torch.Tensor) -> torch.Tensor:  # (N, X) raster order -> window order, m² rows per token
            return a.view(-1, unit, a.shape[-1])[order].view(a.shape)

        x, cos, sin = to_windows(x), to_windows(cos), to_windows(sin)
        in_windows, in_frames = segment_groups(windows, device), segment_groups(frames, device)
        for i, block in enumerate(self.blocks):
            x = call_block(self, block, x, cos, sin, in_frames if i in self.full_attention else in_windows)
        merged = self.merger(x)  # (N / m², out) in window order
        return merged[torch.argsort(order)], []
