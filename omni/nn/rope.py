"""Rotary position embeddings: 1-D, the multimodal 3-D variant (M-RoPE / TMRoPE), and the vision towers' 2-D one.

Every token carries three position ids (temporal, height, width); for text they are equal, which makes M-RoPE
ordinary 1-D RoPE. Each of the head_dim/2 frequency slots reads one of the three ids. Which one is the
*layout*:

    chunked     (Qwen2.5-Omni)  slots [t t t ... h h h ... w w w]       mrope_section = [n_t, n_h, n_w]
    interleaved (Qwen3-Omni)    slots [t h w t h w ... t h w t t t t]   h at 1,4,7..., w at 2,5,8...

The angles are duplicated to head_dim and applied rotate-half style (element k pairs with k + head_dim/2).
"""

from __future__ import annotations

import torch
from torch import nn


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))


def mrope_axis_of_slot(n_slots: int, section: list[int] | None, interleaved: bool) -> torch.Tensor:
    """For each frequency slot, which position row (0 = t, 1 = h, 2 = w) drives it."""
    axis = torch.zeros(n_slots, dtype=torch.long)
    if section is None:
        return axis
    if interleaved:
        for row, offset in ((1, 1), (2, 2)):
            axis[offset : section[row] * 3 : 3] = row
    else:
        axis[section[0] : section[0] + section[1]] = 1
        axis[section[0] + section[1] :] = 2
    return axis


class RotaryEmbedding(nn.Module):
    """Position ids -> (cos, sin) of shape (B, T, head_dim). Accepts ids (B, T) or multimodal ids (3, B, T)."""

    def __init__(self, head_dim: int, theta: float, mrope_section=None, interleaved: bool = True):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.mrope_section, self.interleaved = mrope_section, interleaved
        self.register_buffer("inv_freq", torch.empty(head_dim // 2), persistent=False)
        self.register_buffer("slot_rows", torch.empty(3, head_dim // 2), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """(Re)compute the tables, e.g. after a meta-device build."""
        device = self.inv_freq.device if not self.inv_freq.is_meta else None
        self.inv_freq = rope_inv_freq(self.head_dim, self.theta).to(device)
        axis = mrope_axis_of_slot(self.head_dim // 2, self.mrope_section, self.interleaved)
        # one-hot (3, head_dim/2): selecting a row by multiply-and-sum is exact and branch-free
        self.slot_rows = torch.nn.functional.one_hot(axis, 3).T.float().to(device)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32):
        if position_ids.dim() == 2:
            position_ids = position_ids[None].expand(3, -1, -1)
        freqs = position_ids[..., None].float() * self.inv_freq  # (3, B, T, Dh/2)
        freqs = (freqs * self.slot_rows[:, None, None, :]).sum(0)  # (B, T, Dh/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, Dh)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, Dh); cos/sin: (B, T, Dh), or (T, Dh) for packed (varlen) inputs with x (T, H, Dh)."""
    cos, sin = cos[:, None], sin[:, None]  # broadcast over the head axis in both layouts
    return x * cos + rotate_half(x) * sin


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
