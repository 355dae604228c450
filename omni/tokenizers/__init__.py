"""Modality tokenizers: preprocessing + encoders that turn images, video, audio and text into Thinker inputs."""
