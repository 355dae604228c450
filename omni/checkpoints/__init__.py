"""Official checkpoints: key maps per release, safetensors loading and saving, hub download."""

from .hub import resolve, shard_patterns
from .io import load_state, official_state_dict, save_state, weight_map

__all__ = ["resolve", "shard_patterns", "load_state", "official_state_dict", "save_state", "weight_map"]
