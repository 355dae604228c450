"""The Qwen3-Omni vision tokenizer: image / video patches -> Thinker-width embeddings (+ DeepStack features).

Input: patch rows in merge-block order and `grid_thw` per item (omni.nn.patches).

    pixels (N, C*T*P*P) ──patch_embed (Conv3d with kernel == stride, run as one matmul)──► (N, D)
        + learned absolute position table (side x side, bilinearly resized to each item's grid)
    blocks x depth: x += proj(attn(LN(x)))   x += fc2(gelu_tanh(fc1(LN(x))))
        attention with a 2-D rotary embedding (row, col), only among the patches of the same frame of the same item
        after the blocks in `deepstack_visual_indexes`: a DeepStack merger (norm after the m x m concat)
    merger: LN per patch, concat m x m patches, Linear -> GELU -> Linear        ──► (N / m², out_hidden_size)

The Thinker writes the merged rows into the image/video placeholder tokens and adds DeepStack feature k to the
hidden states after decoder layer k at those same positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...nn.attention import packed_attention, segment_groups
from ...nn.checkpointing import call_block
from ...nn.mlp import MLP
from ...nn.patches import PatchEmbed, PatchMerger, check_pixels, merge_block_order, vision_rotary
from .config import Qwen3VisionConfig


class VisionAttention(nn.Module):
    """Full (non-causal) attention inside each frame of each item; fused qkv (q, k, v order) with biases."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, groups: list) -> torch.Tensor:
        N, _ = x.shape
        q, k, v = self.qkv(x).view(N, 3, self.n_heads, self.head_dim).unbind(1)  # each (N, H, Dh)
        return self.proj(packed_attention(q, k, v, groups, cos, sin).reshape(N, -1))


class VisionBlock(nn.Module):
    def __init__(self, cfg: Qwen3VisionConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads)
        self.mlp_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, act=cfg.hidden_act, field="vision_config.hidden_act")

    def forward(self, x, cos, sin, groups):
        x = x + self.attn(self.attn_norm(x), cos, sin, groups)
        return x + self.mlp(self.mlp_norm(x))


class VisionTokenizer(nn.Module):
    """The vision tower. `forward(pixel_values, grid_thw) -> (embeds (N/m², out), [deepstack (N/m², out), ...])`."""

    def __init__(self, cfg: Qwen3VisionConfig):
        super().__init__()
        bad = [i for i in cfg.deepstack_visual_indexes if not 0 <= i < cfg.depth]
        if bad:
            raise ConfigError(f"vision_config.deepstack_visual_indexes {bad} are outside 0..depth-1 "
                              f"(depth {cfg.depth})")
        side = int(round(cfg.num_position_embeddings ** 0.5))
        if side * side != cfg.num_position_embeddings:
            raise ConfigError(f"vision_config.num_position_embeddings ({cfg.num_position_embeddings}) must be a "
                              "square number: it is a learned side x side grid")
        self.cfg, self.side, self.merge = cfg, side, cfg.spatial_merge_size
        self.patch_dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
        self.deepstack_indexes = list(cfg.deepstack_visual_indexes)

        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.hidden_size)
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, cfg.hidden_size)
        self.rotary = vision_rotary(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.gradient_checkpointing = False  # recompute each block in the backward pass (omni.training)
        self.merger = PatchMerger(cfg.hidden_size, self.merge, cfg.out_hidden_size, norm_after_concat=False)
        self.deepstack_mergers = nn.ModuleList(
            PatchMerger(cfg.hidden_size, self.merge, cfg.out_hidden_size, norm_after_concat=True)
            for _ in self.deepstack_indexes
        )

    def _position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The learned side x side table resized to (h, w), align-corners bilinear, in fp32: (h, w, D)."""
        table = self.pos_embed.weight.float().t().reshape(1, -1, self.side, self.side)  # (1, D, side, side)
        out = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=True)  # (1, D, h, w)
        return out[0].permute(1, 2, 0)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
        items = check_pixels(pixel_values, grid_thw, self.patch_dim, self.merge)
        device = pixel_values.device
        x = self.patch_embed(pixel_values)  # (N, D)

        pos, rows, cols = [], [], []
        per_size = {}  # (h, w) -> (rows, cols, position table in merge-block order), shared by same-sized items
        for t, h, w in items:
            if (h, w) not in per_size:
                r, c = merge_block_order(h, w, self.merge, device)
                per_size[h, w] = r, c, self._position_embedding(h, w)[r, c]  # (h*w,), (h*w,), (h*w, D)
            r, c, table = per_size[h, w]
            pos.append(table.repeat(t, 1))  # same table for every frame: (t*h*w, D)
            rows.append(r.repeat(t))
            cols.append(c.repeat(t))
        x = x + torch.cat(pos).to(x.dtype)
        cos, sin = self.rotary(torch.cat(rows), torch.cat(cols))  # (N, Dh) each
        groups = segment_groups([h * w for t, h, w in items for _ in range(t)], device)  # attention: per frame

        deepstack = []
        for i, block in enumerate(self.blocks):
            x = call_block(self, block, x, cos, sin, groups)
            if i in self.deepstack_indexes:
                deepstack.append(self.deepstack_mergers[self.deepstack_indexes.index(i)](x))
        return self.merger(x), deepstack
