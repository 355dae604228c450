"""The pre-norm decoder stack shared by the Thinker LM, the Talker LM and the code predictor.

    x = x + attn(attn_norm(x))          grouped-query attention, q/k RMSNorm (Qwen3), (M-)RoPE
    x = x + ffn(ffn_norm(x))            SwiGLU, or MoE in the layers the config marks sparse
    ... n_layers ...
    norm(x)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import TextConfig
from .attention import Attention, causal_mask
from .checkpointing import call_block
from .kv_cache import DecoderCache, KVCache
from .mlp import SwiGLU
from .moe import MoE
from .norm import RMSNorm
from .rope import RotaryEmbedding


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, layer_idx: int, qk_norm: bool = True):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.dim_head,
            qkv_bias=cfg.qkv_bias,
            out_bias=cfg.o_proj_bias,
            qk_norm=qk_norm,
            norm_eps=cfg.rms_norm_eps,
        )
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if cfg.is_moe_layer(layer_idx):
            self.ffn = MoE(
                cfg.hidden_size,
                cfg.moe_intermediate_size,
                cfg.num_experts,
                cfg.num_experts_per_tok,
                cfg.norm_topk_prob,
                cfg.shared_expert_intermediate_size,
            )
        else:
            self.ffn = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        out = self.ffn(self.ffn_norm(x))
        if isinstance(out, tuple):  # MoE also returns its router logits
            out, router_logits = out
            return x + out, router_logits
        return x + out, None


@dataclass
class DecoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, D), after the final norm
    hidden_states: tuple | None = None  # embeddings, then each layer's output; the last one normed (as the reference)
    router_logits: tuple | None = None  # per MoE layer, (B*T, E)


class Decoder(nn.Module):
    def __init__(self, cfg: TextConfig, qk_norm: bool | None = None, mrope_interleaved: bool | None = None):
        """qk_norm / mrope_interleaved: None = what the config's release uses (`TextConfig.qk_norm`, ...)."""
        super().__init__()
        self.cfg = cfg
        qk_norm = cfg.qk_norm if qk_norm is None else qk_norm
        mrope_interleaved = cfg.mrope_interleaved if mrope_interleaved is None else mrope_interleaved
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, qk_norm) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rope = RotaryEmbedding(cfg.dim_head, cfg.theta, cfg.mrope_section, mrope_interleaved)
        self.gradient_checkpointing = False

    def new_cache(self, batch: int, max_len: int, dtype=None, device=None) -> DecoderCache:
        c = self.cfg
        p = next(self.parameters())
        return DecoderCache(
            [
                KVCache(batch, c.num_key_value_heads, c.dim_head, max_len, dtype or p.dtype, device or p.device)
                for _ in self.layers
            ]
        )

    def forward(
        self,
        h: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        visual_mask: torch.Tensor | None = None,
        deepstack: list[torch.Tensor] | None = None,
        output_hidden_states: bool = False,
    ) -> DecoderOutput:
        """h (B, T, D) input embeddings; position_ids (3, B, T) or (B, T), default: consecutive from the cache.

        attention_mask (B, S) marks real tokens (1) and padding (0) over everything seen so far incl. the cache.
        deepstack: features added at `visual_mask` positions after layers 0, 1, ... (Qwen3-Omni vision).
        """
        B, T, _ = h.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=h.device)[None].expand(B, -1)
        cos, sin = self.rope(position_ids, h.dtype)
        mask = causal_mask(attention_mask, T, past + T, h.device)
        states = [h] if output_hidden_states else None
        router_logits = []
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i] if cache is not None else None
            h, logits = call_block(self, layer, h, cos, sin, mask, layer_cache)
            if logits is not None:
                router_logits.append(logits)
            if states is not None:
                states.append(h)  # recorded before the deepstack addition, as the reference records them
            if deepstack is not None and i < len(deepstack):
                h = h.clone()
                h[visual_mask] = h[visual_mask] + deepstack[i].to(h.dtype)
        h = self.norm(h)
        if states is not None:
            states[-1] = h
        return DecoderOutput(h, tuple(states) if states is not None else None, tuple(router_logits))
