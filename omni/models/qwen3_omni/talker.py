"""The Qwen3-Omni Talker: a small MoE decoder that turns the Thinker's text into codec frames.

Each codec frame (80 ms of audio) is `num_code_groups` codes, one per codebook of a residual quantiser. They are
made in two nested stages:

    Talker        (B, T, D) input vectors --MoE decoder (M-RoPE)--> codec_head --> code 0 of the frame
    CodePredictor [talker hidden, embed(code 0)] --dense decoder (1-D RoPE)--> code 1, then code 2, ... code G-1

The Talker reads the Thinker through two resizing MLPs (Thinker width -> Talker width):
`text_projection` for token embeddings and `hidden_projection` for hidden states at media positions (see
speech.py for how the input sequence is assembled and omni.speech for the decode loop).

Code k of a frame is embedded by the Talker's `codec_embedding` for k = 0 and by the code predictor's
`codec_embedding[k - 1]` for k >= 1; the next Talker input is the sum of those G embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ...nn import Decoder, DecoderCache
from ...nn.entry import Entry
from ...nn.linear import Linear
from ...nn.losses import causal_lm_loss, token_loss
from ...nn.mlp import MLP
from ...nn.moe import load_balancing_loss
from ...speech import TalkerOutput
from .config import Qwen3TalkerConfig, Qwen3TextConfig


class CodePredictor(nn.Module):
    """Predicts codes 1..G-1 of a frame from the Talker's hidden state and code 0 (a tiny dense decoder).

    The sequence for one frame is [talker hidden, embed(code 0), embed(code 1), ...]; the output at position k
    (k >= 1) goes through `lm_heads[k - 1]` to give code k. Positions restart at 0 for every frame.
    """

    def __init__(self, cfg: Qwen3TextConfig, num_code_groups: int):
        super().__init__()
        if num_code_groups < 2:
            raise ConfigError(f"talker num_code_groups must be >= 2, got {num_code_groups}")
        self.cfg = cfg
        self.num_code_groups = num_code_groups
        n = num_code_groups - 1
        self.codec_embedding = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.hidden_size) for _ in range(n))
        self.decoder = Decoder(cfg)  # no mrope_section in its config: plain 1-D rotary
        self.lm_heads = nn.ModuleList(Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(n))

    def embed(self, k: int, codes: torch.Tensor) -> torch.Tensor:
        """Embedding of code k (1..G-1) of a frame: codes (B, ...) -> (B, ..., D)."""
        return self.codec_embedding[k - 1](codes)

    def forward(self, h: torch.Tensor, cache: DecoderCache | None = None) -> torch.Tensor:
        """h (B, T, D) input vectors -> (B, T, D) normed hidden states (positions continue from the cache)."""
        return self.decoder(h, cache=cache).last_hidden_state

    def logits(self, k: int, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of code k (1..G-1) from the hidden state one position before it: (B, ..., D) -> (B, ..., V)."""
        return self.lm_heads[k - 1](hidden)

    def new_cache(self, batch: int) -> DecoderCache:
        return self.decoder.new_cache(batch, self.num_code_groups)

    def frame_logits(self, hidden: torch.Tensor, code0_embed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of codes 1..G-1 for N frames whose codes are known: the same causal pass that
        decoding makes one code at a time, in one call. hidden (N, D) the Talker's state that chose code 0,
        code0_embed (N, D) its embedding, codes (N, G) -> logits (N, G - 1, V)."""
        G = self.num_code_groups
        rest = [self.embed(k, codes[:, k]) for k in range(1, G - 1)]  # codes 1..G-2 feed positions 2..G-1
        h = self(torch.stack([hidden, code0_embed, *rest], dim=1))  # (N, G, D), positions 0..G-1
        return torch.stack([self.logits(k, h[:, k]) for k in range(1, G)], dim=1)

    def loss(self, hidden: torch.Tensor, code0_embed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of codes 1..G-1 over N frames (arguments as `frame_logits`)."""
        return token_loss(self.frame_logits(hidden, code0_embed, codes), codes[:, 1:])


class Talker(Entry):
    """Talker decoder (MoE with a sigmoid-gated shared expert, interleaved M-RoPE) + its code predictor."""

    def __init__(self, cfg: Qwen3TalkerConfig):
        super().__init__()
        self.cfg = cfg
        t = cfg.text_config
        if t.num_experts and not t.shared_expert_intermediate_size:
            raise ConfigError(
                "talker text_config.shared_expert_intermediate_size must be > 0 (the Talker's MoE layers all have "
                "a shared expert); add it to config.json (768 in Qwen3-Omni-30B-A3B)"
            )
        if not all(t.is_moe_layer(i) for i in range(t.num_hidden_layers)):
            raise ConfigError(
                "every Talker layer is a MoE layer (num_experts > 0, decoder_sparse_step 1, no mlp_only_layers); "
                "fix talker_config.text_config"
            )
        cp = cfg.code_predictor_config
        if cp.num_code_groups is not None and cp.num_code_groups != cfg.num_code_groups:
            raise ConfigError(
                f"talker num_code_groups ({cfg.num_code_groups}) and code_predictor_config.num_code_groups "
                f"({cp.num_code_groups}) disagree; they must be equal"
            )
        if cp.hidden_size != t.hidden_size:
            raise ConfigError(
                f"code predictor hidden_size ({cp.hidden_size}) must equal the talker's ({t.hidden_size}): it reads "
                "the talker's hidden state directly"
            )
        self.codec_embedding = nn.Embedding(t.vocab_size, t.hidden_size)
        self.decoder = Decoder(t)
        self.codec_head = Linear(t.hidden_size, t.vocab_size, bias=False)
        # fc2(silu(fc1(x))) from the Thinker's width to the Talker's, `intermediate_size` wide (the Talker has no
        # dense FFN layers of its own)
        self.text_projection = MLP(cfg.thinker_hidden_size, t.intermediate_size, t.hidden_size, act="silu")
        self.hidden_projection = MLP(cfg.thinker_hidden_size, t.intermediate_size, t.hidden_size, act="silu")
        self.code_predictor = CodePredictor(cp, cfg.num_code_groups)
        # voices learned after the release (omni.training.voices): name -> speaker vector (D,). Not parameters:
        # they live in their own small files, never in the checkpoint
        self.learned_voices: dict[str, torch.Tensor] = {}

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        output_router_logits: bool = False,
        labels: torch.Tensor | None = None,
    ) -> TalkerOutput:
        """inputs_embeds (B, T, D); position_ids (3, B, T) M-RoPE ids (default: consecutive from the cache);
        attention_mask (B, S) over everything seen so far, including the cache.

        labels (B, T): code 0 of the frame each position is followed by (-100: none); the loss is the
        reference's: next-code cross-entropy of the codec head, plus `router_aux_loss_coef` x the router
        load-balancing loss when `output_router_logits`."""
        out = self.decoder(inputs_embeds, position_ids, attention_mask, cache=cache)
        h = out.last_hidden_state
        logits = self.codec_head(h)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        aux = None
        if output_router_logits:
            t = self.cfg.text_config
            aux = load_balancing_loss(out.router_logits, t.num_experts, t.num_experts_per_tok, attention_mask)
            loss = loss + t.router_aux_loss_coef * aux if loss is not None else None
        return TalkerOutput(logits, h, out.router_logits if output_router_logits else None, loss, aux)

    def frame_embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the G codebook embeddings of each frame: codes (B, G) -> (B, D)."""
        parts = [self.codec_embedding(codes[:, 0])]
        parts += [self.code_predictor.embed(k, codes[:, k]) for k in range(1, codes.shape[1])]
        return torch.stack(parts, dim=1).sum(1)  # one reduction, as the reference sums them
