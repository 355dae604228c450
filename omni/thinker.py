"""The Thinker: modality tokenizers feeding one MoE decoder that writes text.

    input_ids ──embed──┐
    pixel_values ──VisionTokenizer──► scattered into the image/video placeholder positions (+ deepstack)
    input_features ──AudioTokenizer──► scattered into the audio placeholder positions
                       └──► Decoder (M-RoPE positions) ──► lm_head ──► logits
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ThinkerConfig
from .nn import Decoder
from .positions import text_position_ids


@dataclass
class ThinkerOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    hidden_states: tuple | None = None  # embeddings, then each layer's output (last one after the final norm)
    router_logits: tuple | None = None
    rope_deltas: torch.Tensor | None = None  # (B, 1): next position = cache length + delta


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labels that are not -100."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


class Thinker(nn.Module):
    def __init__(self, cfg: ThinkerConfig):
        super().__init__()
        self.cfg = cfg
        t = cfg.text_config
        self.embed_tokens = nn.Embedding(t.vocab_size, t.hidden_size)
        self.decoder = Decoder(t)
        self.lm_head = nn.Linear(t.hidden_size, t.vocab_size, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache=None,
        output_hidden_states: bool = False,
        output_router_logits: bool = False,
        **media,
    ) -> ThinkerOutput:
        if media and any(v is not None for k, v in media.items() if k != "use_audio_in_video"):
            raise NotImplementedError("multimodal inputs need the vision/audio tokenizers")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        rope_deltas = None
        if position_ids is None and attention_mask is not None and (cache is None or cache.length == 0):
            position_ids, rope_deltas = text_position_ids(attention_mask)
        out = self.decoder(
            h, position_ids, attention_mask, cache=cache, output_hidden_states=output_hidden_states
        )
        logits = self.lm_head(out.last_hidden_state)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return ThinkerOutput(
            logits=logits,
            loss=loss,
            hidden_states=out.hidden_states,
            router_logits=out.router_logits if output_router_logits else None,
            rope_deltas=rope_deltas,
        )
