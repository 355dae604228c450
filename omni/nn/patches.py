"""The patch side of both vision towers: patch cubes in, one embedding per patch, m x m patches merged out.

Input (what omni.media.image / .video produce): one row per patch, each row a flattened (C, temporal_patch, P, P)
cube, the patches of each frame in *merge-block order* (the m x m patches that become one Thinker token are
consecutive), and `grid_thw` = (frames, patch rows, patch cols) per image or video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .mlp import MLP
from .rope import VisionRotary

DEFAULT_ROPE_THETA = 10000.0  # the releases' vision configs carry no theta; this is what the reference uses


class PatchEmbed(nn.Module):
    """Conv3d with kernel == stride over one patch cube each: exactly a linear map of the flattened cube."""

    def __init__(self, in_channels: int, temporal: int, patch: int, dim: int, bias: bool = True):
        super().__init__()
        k = (temporal, patch, patch)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=k, stride=k, bias=bias)  # weight (D, C, T, P, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C*T*P*P) -> (N, D)
        w = self.proj.weight
        return F.linear(x.to(w.dtype), w.view(w.shape[0], -1), self.proj.bias)


def merge_block_order(h: int, w: int, merge: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every patch of one h x w frame, in merge-block order: (h*w,), (h*w,)."""
    m = merge
    rows = torch.arange(h, device=device).view(h // m, m, 1, 1).expand(h // m, m, w // m, m)
    cols = torch.arange(w, device=device).view(1, 1, w // m, m).expand(h // m, m, w // m, m)
    # (block_row, in_row, block_col, in_col) -> (block_row, block_col, in_row, in_col)
    return rows.permute(0, 2, 1, 3).reshape(-1), cols.permute(0, 2, 1, 3).reshape(-1)


def check_pixels(pixel_values, grid_thw, patch_dim: int, merge: int) -> list[tuple[int, int, int]]:
    """Validate a vision tower's inputs; returns the (t, h, w) grid of every item."""
    if not torch.is_tensor(pixel_values) or pixel_values.dim() != 2 or pixel_values.shape[1] != patch_dim:
        shape = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values).__name__
        raise InputError(f"pixel_values must be (num_patches, {patch_dim}) = (N, C*T*P*P), got {shape}; "
                         "use omni.media.image.preprocess_images / video.preprocess_videos")
    grid = torch.as_tensor(grid_thw)
    if grid.dim() != 2 or grid.shape[1] != 3 or grid.shape[0] == 0:
        raise InputError(f"grid_thw must be (num_items, 3) = (t, h, w) per item, got shape {tuple(grid.shape)}")
    items = [tuple(int(v) for v in row) for row in grid.tolist()]
    for t, h, w in items:
        if t <= 0 or h <= 0 or w <= 0 or h % merge or w % merge:
            raise InputError(f"grid_thw row {(t, h, w)}: all sizes must be positive and h, w multiples of "
                             f"spatial_merge_size {merge}")
    total = sum(t * h * w for t, h, w in items)
    if total != pixel_values.shape[0]:
        raise InputError(f"grid_thw describes {total} patches but pixel_values has {pixel_values.shape[0]} rows")
    return items


class PatchMerger(MLP):
    """m x m neighbouring patches -> one Thinker token: norm, concat, fc2(gelu(fc1(.))) (exact GELU). The final
    merger normalises each patch before the concat (norm width D); Qwen3-Omni's DeepStack mergers normalise the
    concatenated vector (norm width m²·D). `norm`: LayerNorm (Qwen3-Omni) or RMSNorm (Qwen2.5-Omni)."""

    def __init__(self, dim: int, merge: int, out_dim: int, norm_after_concat: bool, norm=nn.LayerNorm):
        width = dim * merge * merge
        super().__init__(width, width, out_dim, act="gelu")
        self.width, self.norm_after_concat = width, norm_after_concat
        self.norm = norm(width if norm_after_concat else dim, 1e-6)  # (width, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N / m², out_dim)
        if self.norm_after_concat:
            return super().forward(self.norm(x.reshape(-1, self.width)))
        return super().forward(self.norm(x).reshape(-1, self.width))


def vision_rotary(cfg) -> VisionRotary:
    """The 2-D rotary embedding of a vision tower (head_dim = hidden_size / num_heads, a multiple of 4)."""
    head_dim = cfg.hidden_size // cfg.num_heads
    if head_dim % 4:
        raise ConfigError(f"vision head_dim ({head_dim}) must be a multiple of 4 for the 2-D rotary embedding")
    rope = cfg.extra.get("rope_parameters") or {}
    return VisionRotary(head_dim, float(rope.get("rope_theta", DEFAULT_ROPE_THETA)))
