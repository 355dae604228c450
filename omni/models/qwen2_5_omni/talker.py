"""The Qwen2.5-Omni Talker: a dense Qwen2 decoder that turns the Thinker's reply into codec codes (one stream).

Unlike the Qwen3-Omni Talker (MoE, code predictor, 16 codebooks) it emits one code per step, 50 per second, which
Token2Wav (omni.models.qwen2_5_omni.token2wav) turns into speech. Every input vector lives in the *Thinker's* width and is projected
once (`thinker_to_talker_proj`) before the decoder:

    prompt      one position per prompt token: Thinker hidden state + Thinker input embedding (the embedding is
                zeroed at audio/image/video placeholders, whose hidden state stays)
    + 2         the speaker's text-BOS embedding (+ codec pad), then the first reply token's hidden + embedding
                (+ codec bos)
    decode j    codec_embedding(code j-1) + reply[j]: the reply's remaining tokens (hidden + embedding) one per step,
                then the tts text-end embedding, then the tts text-pad embedding for ever ("dual track")

Positions are the Thinker's multimodal ones (TMRoPE) over [prompt ids, speaker bos, first reply token]; decoding
continues from the rope deltas. Codes are sampled until codec pad or codec end (speech.py builds the inputs and
runs the loop).
"""

from __future__ import annotations

import torch
from torch import nn

from ...nn import Decoder, DecoderCache
from ...nn.entry import Entry
from ...nn.losses import causal_lm_loss
from ...speech import TalkerOutput
from .config import Qwen25TalkerConfig


class Qwen25Talker(Entry):
    def __init__(self, cfg: Qwen25TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_size)  # in the Thinker's width
        self.thinker_to_talker_proj = nn.Linear(cfg.embedding_size, cfg.hidden_size)
        self.decoder = Decoder(cfg)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        labels: torch.Tensor | None = None,
    ) -> TalkerOutput:
        """inputs_embeds (B, T, embedding_size) in the Thinker's width; position_ids (3, B, T) (default: consecutive
        from the cache); attention_mask (B, S) over everything seen so far. -> logits (B, T, vocab) in fp32.

        labels (B, T): the code that follows each position (-100: none) -> next-code cross-entropy. (The
        reference's Talker takes no labels; this is its causal-LM loss on the same logits.)"""
        h = self.thinker_to_talker_proj(inputs_embeds)
        h = self.decoder(h, position_ids, attention_mask, cache=cache).last_hidden_state
        logits = self.codec_head(h).float()
        return TalkerOutput(logits, h, loss=causal_lm_loss(logits, labels) if labels is not None else None)
