"""Modality tokenizers: preprocessing + encoders that turn images, video, audio and text into Thinker inputs."""

from .text import StreamDecoder, TextTokenizer  # noqa: F401
