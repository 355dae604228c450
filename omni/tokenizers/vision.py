"""The Qwen3-Omni vision tokenizer: image / video patches -> Thinker-width embeddings (+ DeepStack features).

Input is what `omni.tokenizers.image` / `.video` produce: one row per patch, each row a flattened
(C, temporal_patch, P, P) cube, patches of each frame in *merge-block order* (the m x m patches that will be
merged into one LLM token are consecutive), and `grid_thw` = (frames, patch rows, patch cols) per item.

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

from ..config import VisionConfig
from ..errors import ConfigError, InputError
from ..nn import sdpa
from ..nn.rope import apply_rope, rope_inv_freq

_ACTIVATIONS = {"gelu_pytorch_tanh": "tanh", "gelu_new": "tanh", "gelu": "none"}  # -> F.gelu(approximate=...)
DEFAULT_ROPE_THETA = 10000.0  # the release's vision config carries no theta; this is what the reference uses


class PatchEmbed(nn.Module):
    """Conv3d with kernel == stride over one patch cube each: exactly a linear map of the flattened cube."""

    def __init__(self, in_channels: int, temporal: int, patch: int, dim: int, bias: bool = True):
        super().__init__()
        k = (temporal, patch, patch)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=k, stride=k, bias=bias)  # weight (D, C, T, P, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C*T*P*P) -> (N, D)
        w = self.proj.weight
        return F.linear(x.to(w.dtype), w.view(w.shape[0], -1), self.proj.bias)


class VisionRotary(nn.Module):
    """2-D rotary angles: head_dim/4 frequencies read the patch row, the next head_dim/4 the patch column.

    The head_dim/2 angles [rows..., cols...] are duplicated to head_dim and applied rotate-half style.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", torch.empty(head_dim // 4), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """(Re)compute the frequency table, e.g. after a meta-device build."""
        device = None if self.inv_freq.is_meta else self.inv_freq.device
        self.inv_freq = rope_inv_freq(self.head_dim // 2, self.theta).to(device)

    def forward(self, rows: torch.Tensor, cols: torch.Tensor):  # (N,), (N,) -> cos, sin (N, head_dim) fp32
        freqs = torch.cat((rows[:, None].float() * self.inv_freq, cols[:, None].float() * self.inv_freq), dim=-1)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def segment_attention(q, k, v, cos, sin, segments: list[tuple[int, int]]) -> torch.Tensor:
    """Rotary + full attention inside consecutive segments of packed patches: q, k, v (N, H, Dh) -> (N, H*Dh).

    segments: runs of (count, length), `count` back-to-back segments of `length` patches each, attended to in one
    batched call (frames of one item, same-sized windows, ...). No patch attends outside its own segment.
    """
    N, H, Dh = q.shape
    # rotary in fp32 (the reference does), then back to the activation dtype
    q = apply_rope(q.float(), cos, sin).to(v.dtype)
    k = apply_rope(k.float(), cos, sin).to(v.dtype)
    out = torch.empty_like(q)
    start = 0
    for count, length in segments:
        end = start + count * length
        qi, ki, vi = (t[start:end].view(count, length, H, Dh).transpose(1, 2) for t in (q, k, v))  # (count, H, L, Dh)
        out[start:end] = sdpa(qi, ki, vi).transpose(1, 2).reshape(end - start, H, Dh)
        start = end
    return out.view(N, H * Dh)


def runs(lengths) -> list[tuple[int, int]]:
    """Segment lengths [4, 4, 4, 2, 4] -> runs of equal lengths [(3, 4), (1, 2), (1, 4)] for `segment_attention`."""
    out: list[tuple[int, int]] = []
    for n in lengths:
        if out and out[-1][1] == n:
            out[-1] = (out[-1][0] + 1, n)
        else:
            out.append((1, n))
    return out


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
                         "use omni.tokenizers.image.preprocess_images / video.preprocess_videos")
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


class VisionAttention(nn.Module):
    """Full (non-causal) attention inside each frame of each item; fused qkv (q, k, v order) with biases."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, segments: list[tuple[int, int]]):
        N, _ = x.shape
        q, k, v = self.qkv(x).view(N, 3, self.n_heads, self.head_dim).unbind(1)  # each (N, H, Dh)
        return self.proj(segment_attention(q, k, v, cos, sin, segments))


class VisionMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.fc2 = nn.Linear(hidden, dim, bias=True)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig, approximate: str):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads)
        self.mlp_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.mlp = VisionMLP(cfg.hidden_size, cfg.intermediate_size, approximate)

    def forward(self, x, cos, sin, segments):
        x = x + self.attn(self.attn_norm(x), cos, sin, segments)
        return x + self.mlp(self.mlp_norm(x))


class PatchMerger(nn.Module):
    """m x m neighbouring patches -> one LLM token. The final merger normalises each patch before the concat
    (norm width D); the DeepStack mergers normalise the concatenated vector (norm width m²·D)."""

    def __init__(self, dim: int, merge: int, out_dim: int, norm_after_concat: bool, norm=nn.LayerNorm):
        super().__init__()
        self.width = dim * merge * merge
        self.norm_after_concat = norm_after_concat
        self.norm = norm(self.width if norm_after_concat else dim, 1e-6)  # (width, eps): LayerNorm or RMSNorm
        self.fc1 = nn.Linear(self.width, self.width, bias=True)
        self.fc2 = nn.Linear(self.width, out_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N / m², out_dim)
        if self.norm_after_concat:
            x = self.norm(x.reshape(-1, self.width))
        else:
            x = self.norm(x).reshape(-1, self.width)
        return self.fc2(F.gelu(self.fc1(x)))  # exact GELU here (unlike the blocks)


class VisionTokenizer(nn.Module):
    """The vision tower. `forward(pixel_values, grid_thw) -> (embeds (N/m², out), [deepstack (N/m², out), ...])`."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        if cfg.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"vision_config.hidden_act {cfg.hidden_act!r} is not supported; "
                              f"use one of {sorted(_ACTIVATIONS)}")
        bad = [i for i in cfg.deepstack_visual_indexes if not 0 <= i < cfg.depth]
        if bad:
            raise ConfigError(f"vision_config.deepstack_visual_indexes {bad} are outside 0..depth-1 "
                              f"(depth {cfg.depth})")
        side = int(round(cfg.num_position_embeddings ** 0.5))
        if side * side != cfg.num_position_embeddings:
            raise ConfigError(f"vision_config.num_position_embeddings ({cfg.num_position_embeddings}) must be a "
                              "square number: it is a learned side x side grid")
        head_dim = cfg.hidden_size // cfg.num_heads
        if head_dim % 4:
            raise ConfigError(f"vision head_dim ({head_dim}) must be a multiple of 4 for the 2-D rotary embedding")
        rope = cfg.extra.get("rope_parameters") or {}
        self.cfg, self.side, self.merge = cfg, side, cfg.spatial_merge_size
        self.patch_dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2
        self.deepstack_indexes = list(cfg.deepstack_visual_indexes)
        approximate = _ACTIVATIONS[cfg.hidden_act]

        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.hidden_size)
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, cfg.hidden_size)
        self.rotary = VisionRotary(head_dim, float(rope.get("rope_theta", DEFAULT_ROPE_THETA)))
        self.blocks = nn.ModuleList(VisionBlock(cfg, approximate) for _ in range(cfg.depth))
        self.gradient_checkpointing = False  # recompute each block in the backward pass (omni.training)
        self.merger = PatchMerger(cfg.hidden_size, self.merge, cfg.out_hidden_size, norm_after_concat=False)
        self.deepstack_mergers = nn.ModuleList(
            PatchMerger(cfg.hidden_size, self.merge, cfg.out_hidden_size, norm_after_concat=True)
            for _ in self.deepstack_indexes
        )

    # -- per-item layout ---------------------------------------------------------------------------------------

    def _position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The learned side x side table resized to (h, w), align-corners bilinear, in fp32: (h, w, D)."""
        table = self.pos_embed.weight.float().t().reshape(1, -1, self.side, self.side)  # (1, D, side, side)
        out = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=True)  # (1, D, h, w)
        return out[0].permute(1, 2, 0)

    # -- forward ------------------------------------------------------------------------------------------------

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
        # attention segments: runs of equal-length frames (consecutive items of one size share one batched call)
        segments = runs([h * w for t, h, w in items for _ in range(t)])

        deepstack = []
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, segments, use_reentrant=False)
            else:
                x = block(x, cos, sin, segments)
            if i in self.deepstack_indexes:
                deepstack.append(self.deepstack_mergers[self.deepstack_indexes.index(i)](x))
        return self.merger(x), deepstack
