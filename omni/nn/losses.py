"""Cross-entropy losses shared by the Thinker, both Talkers and the code predictor.

    token_loss(logits (..., V), targets (...))      targets already aligned with the logits; -100 = no target
    causal_lm_loss(logits (B, T, V), labels (B, T)) labels aligned with the *inputs*: position t is scored on
                                                    labels[t + 1] (the reference's `labels` convention)

Both average over the scored positions in fp32, as the reference's ForCausalLMLoss does (no `num_items_in_batch`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # a target that is not scored (padding, prompt positions)


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `logits` (..., V) against `targets` (...) over the targets that are not -100."""
    logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).to(logits.device),
                           ignore_index=IGNORE)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: the logits at t against labels[t + 1], skipping -100."""
    return token_loss(logits[:, :-1], labels[:, 1:])
