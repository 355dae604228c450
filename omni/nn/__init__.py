"""Building blocks shared by every omni model and both releases.

    norm.py rope.py attention.py linear.py mlp.py moe.py kv_cache.py decoder.py   the Qwen decoder stack
    patches.py       patch embedding and merging of the vision towers (+ their 2-D rotary, in rope.py)
    audio_encoder.py the Whisper-style audio encoder base of both audio towers
    conv.py          causal convolutions and SnakeBeta of the vocoders
    checkpointing.py the one gradient-checkpointing branch every stack calls its blocks through

Shape letters, the same everywhere in omni:
    B batch            T tokens (queries)      S keys (cache length)     D model width
    H query heads      K key/value heads       Dh head dim               V vocabulary
    E experts          A active experts/token  F FFN / expert width      N rows of a packed tensor (all items')
    C channels         L time steps of a conv  G code groups             P prompt length
"""

from .attention import Attention, causal_mask, packed_attention, sdpa, segment_groups
from .decoder import Decoder, DecoderLayer, DecoderOutput
from .kv_cache import DecoderCache, KVCache
from .linear import Linear, matvec
from .mlp import MLP, SwiGLU, activation
from .moe import Experts, MoE
from .norm import RMSNorm
from .rope import RotaryEmbedding, VisionRotary, apply_rope, rotate_half

__all__ = [
    "Attention", "causal_mask", "packed_attention", "sdpa", "segment_groups", "Decoder", "DecoderLayer",
    "DecoderOutput", "DecoderCache", "KVCache", "Linear", "matvec", "MLP", "SwiGLU", "activation", "MoE", "Experts",
    "RMSNorm", "RotaryEmbedding", "VisionRotary", "apply_rope", "rotate_half",
]
