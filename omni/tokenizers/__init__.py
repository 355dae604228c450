"""Modality tokenizers: preprocessing + encoders that turn images, video, audio and text into Thinker inputs."""

from .text import StreamDecoder, TextTokenizer  # noqa: F401
from .image import num_vision_tokens, preprocess_images, smart_resize  # noqa: F401
from .vision import VisionTokenizer  # noqa: F401
from .video import preprocess_videos  # noqa: F401
from .audio import AudioTokenizer, audio_token_count  # noqa: F401
from .audio_features import load_audio, log_mel_features, resample  # noqa: F401
