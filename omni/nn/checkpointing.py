"""Gradient checkpointing: the one branch every stack of blocks (decoders, encoder towers) calls its blocks through."""

from __future__ import annotations

import torch.utils.checkpoint
from torch import nn


def call_block(stack: nn.Module, block: nn.Module, *args):
    """`block(*args)`; while `stack` trains with `stack.gradient_checkpointing` on, its activations are recomputed
    in the backward pass instead of stored (omni.training.set_gradient_checkpointing switches it)."""
    if stack.gradient_checkpointing and stack.training:
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)
