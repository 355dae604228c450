"""omni: the Qwen omni-modal models (Qwen3-Omni, Qwen2.5-Omni) as clean, readable, fast PyTorch modules."""

from .api import load, save
from .config import PRESETS, OmniConfig
from .errors import CheckpointError, ConfigError, InputError, MediaError, OmniError
from .model import OmniModel
from .processor import Processor
from .speech_io import write_wav
from .tokenizers.text import TextTokenizer

__version__ = "0.1.0"

__all__ = [
    "OmniConfig", "OmniModel", "PRESETS", "load", "save",
    "OmniError", "ConfigError", "CheckpointError", "InputError", "MediaError",
    "Processor", "TextTokenizer", "write_wav",
]
