"""Qwen2.5-Omni Token2Wav: codec codes -> mel spectrogram (DiT flow matching) -> 24 kHz waveform (BigVGAN)."""

from .bigvgan import BigVGAN
from .config import BigVGANConfig, DiTConfig, Token2WavConfig

__all__ = ["BigVGAN", "BigVGANConfig", "DiTConfig", "Token2WavConfig"]
