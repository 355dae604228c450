"""Building blocks shared by every omni model: norms, rotary embeddings, attention, MLP, MoE, decoder stack."""

from .attention import Attention, causal_mask, sdpa
from .decoder import Decoder, DecoderLayer, DecoderOutput
from .kv_cache import DecoderCache, KVCache
from .linear import Linear, matvec
from .mlp import SwiGLU
from .moe import MoE, Experts
from .norm import RMSNorm
from .rope import RotaryEmbedding, apply_rope, rotate_half

__all__ = [
    "Attention", "causal_mask", "sdpa", "Decoder", "DecoderLayer", "DecoderOutput", "DecoderCache", "KVCache",
    "Linear", "matvec",
    "SwiGLU", "MoE", "Experts", "RMSNorm", "RotaryEmbedding", "apply_rope", "rotate_half",
]
