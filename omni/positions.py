"""Position ids for the Thinker and Talker decoders (the one source of truth for position arithmetic)."""

from __future__ import annotations

import torch


def text_position_ids(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-only prompts: consecutive positions over the real tokens of each row.

    Returns position ids (3, B, T) and the rope delta (B, 1) that continues them during generation
    (next position = cache length + delta). Padding positions get 1, as in the reference.
    """
    pos = attention_mask.float().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    delta = pos.max(-1, keepdim=True).values + 1 - attention_mask.sum(-1, keepdim=True)
    return pos[None].expand(3, -1, -1), delta
