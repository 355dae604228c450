"""Official checkpoints: the key-map engine (each release's table is its models/<release>/weights.py), safetensors
loading and saving, hub download."""

from .hub import resolve, shard_patterns
from .io import load_state, official_state_dict, save_state, weight_map

__all__ = ["resolve", "shard_patterns", "load_state", "official_state_dict", "save_state", "weight_map"]
