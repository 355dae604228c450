"""omni: the Qwen omni-modal models (Qwen3-Omni, Qwen2.5-Omni) as clean, readable, fast PyTorch modules."""

from . import models  # noqa: F401  (registers the releases: omni.release)
from .api import load, save
from .config import PRESETS, OmniConfig
from .errors import CheckpointError, ConfigError, InputError, MediaError, OmniError
from .media.audio import write_wav
from .media.processor import Processor
from .media.text import TextTokenizer
from .model import OmniModel
from .quant import quantize

__version__ = "0.1.0"

__all__ = [
    "OmniConfig", "OmniModel", "PRESETS", "load", "save", "quantize",
    "OmniError", "ConfigError", "CheckpointError", "InputError", "MediaError",
    "Processor", "TextTokenizer", "write_wav",
]
