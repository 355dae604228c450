"""Qwen2.5-Omni Token2Wav: codec codes -> mel spectrogram (DiT flow matching) -> 24 kHz waveform (BigVGAN).

    codes (B, N) at 50 Hz --DiT.sample--> mel (B, 80, 2N) at 100 Hz --BigVGAN--> waveform (B, 2N * 240) at 24 kHz

The speaker (x-vector and reference mel) conditions the DiT only; see `speakers` for the voice presets.
"""

from __future__ import annotations

import torch
from torch import nn

from ....errors import InputError
from ..config import BigVGANConfig, DiTConfig, Token2WavConfig
from .bigvgan import BigVGAN
from .dit import DiT
from .speakers import Speaker, load_speakers, save_speakers


class Token2Wav(nn.Module):
    """The DiT and the BigVGAN. Runs in fp32 (as the release does: the ODE and the vocoder are precision-sensitive)."""

    def __init__(self, cfg: Token2WavConfig):
        super().__init__()
        self.cfg = cfg
        self.dit = DiT(cfg.dit_config)
        self.bigvgan = BigVGAN(cfg.bigvgan_config)

    @property
    def samples_per_code(self) -> int:
        return self.cfg.dit_config.repeats * self.bigvgan.hop_length

    @torch.no_grad()
    def forward(
        self,
        codes: torch.Tensor,
        speaker: Speaker | None = None,
        *,
        conditioning: torch.Tensor | None = None,
        reference_mel: torch.Tensor | None = None,
        **sampling,
    ) -> torch.Tensor:
        """codes (B, N) -> waveform (B, N * samples_per_code) in [-1, 1].

        The voice is a `Speaker` preset, or its two tensors given directly: conditioning (B | 1, enc_emb_dim) and
        reference_mel (B | 1, T, mel_dim). `sampling` goes to DiT.sample: noise (B, 2N, mel_dim) fixes the starting
        point; num_steps (10), guidance_scale (0.5), sway_coefficient (-1), generator.
        """
        if codes.dim() != 2:
            raise InputError(f"codes must be (batch, n_codes), got shape {tuple(codes.shape)}")
        if speaker is not None:
            conditioning, reference_mel = speaker.cond, speaker.ref_mel
        if conditioning is None or reference_mel is None:
            raise InputError("give a speaker preset, or both conditioning and reference_mel")
        B = codes.shape[0]
        if codes.shape[1] == 0:  # nothing to say (the Talker stopped at once)
            return torch.zeros(B, 0, device=codes.device)
        dtype = next(self.parameters()).dtype
        conditioning = conditioning.to(codes.device, dtype).reshape(-1, conditioning.shape[-1]).expand(B, -1)
        reference_mel = reference_mel.to(codes.device, dtype)
        reference_mel = reference_mel.reshape(-1, *reference_mel.shape[-2:]).expand(B, -1, -1)
        mel = self.dit.sample(codes, conditioning, reference_mel, **sampling)
        return self.bigvgan(mel)


__all__ = [
    "BigVGAN", "BigVGANConfig", "DiT", "DiTConfig", "Speaker", "Token2Wav", "Token2WavConfig", "load_speakers",
    "save_speakers",
]
