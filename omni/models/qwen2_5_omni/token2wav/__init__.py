"""Qwen2.5-Omni Token2Wav: codec codes -> mel spectrogram (DiT flow matching) -> 24 kHz waveform (BigVGAN).

    codes (B, N) at 50 Hz --DiT.sample--> mel (B, 80, 2N) at 100 Hz --BigVGAN--> waveform (B, 2N * 240) at 24 kHz

The speaker (x-vector and reference mel) conditions the DiT only; see `speakers` for the voice presets.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
from torch import nn

from ....errors import InputError
from ..config import BigVGANConfig, DiTConfig, Token2WavConfig
from .bigvgan import BigVGAN
from .dit import DiT
from .speakers import Speaker, load_speakers, save_speakers
from .streaming import StreamPlan, Token2WavStream, stream_decode, stream_plan


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
        B = codes.shape[0]
        conditioning, reference_mel = self.voice(B, codes.device, speaker, conditioning, reference_mel)
        if codes.shape[1] == 0:  # nothing to say (the Talker stopped at once)
            return torch.zeros(B, 0, device=codes.device)
        mel = self.dit.sample(codes, conditioning, reference_mel, **sampling)
        return self.bigvgan(mel)

    def voice(self, batch: int, device, speaker=None, conditioning=None, reference_mel=None):
        """The voice as the DiT takes it: (conditioning (B, enc_emb_dim), reference_mel (B, T, mel_dim)) in the
        model's dtype, from a `Speaker` or the two tensors (each with a batch of 1 or B, or none)."""
        if speaker is not None:
            conditioning, reference_mel = speaker.cond, speaker.ref_mel
        if conditioning is None or reference_mel is None:
            raise InputError("give a speaker preset, or both conditioning and reference_mel")
        dtype = next(self.parameters()).dtype
        conditioning = conditioning.to(device, dtype).reshape(-1, conditioning.shape[-1]).expand(batch, -1)
        reference_mel = reference_mel.to(device, dtype)
        return conditioning, reference_mel.reshape(-1, *reference_mel.shape[-2:]).expand(batch, -1, -1)

    def streamer(self, speaker=None, *, batch: int = 1, device=None, conditioning=None, reference_mel=None,
                 noise=None, generator=None, chunk_blocks=3, past_blocks=None, future_blocks=None,
                 vocoder_context=20, **sampling) -> Token2WavStream:
        """A streaming decoder (see `streaming`): push codes (batch, n) as they come, then finish(). Chunk options
        (checked, InputError when out of range): chunk_blocks (3 DiT blocks kept per window), past_blocks /
        future_blocks (default: the DiT's one-evaluation reach, 2 / 1 in the release), vocoder_context (20 mel
        frames). noise / generator: the starting noise (see Token2WavStream); sampling: as `forward`."""
        plan = stream_plan(self.cfg.dit_config, chunk_blocks, past_blocks, future_blocks, vocoder_context)
        device = device if device is not None else next(self.parameters()).device
        conditioning, reference_mel = self.voice(batch, device, speaker, conditioning, reference_mel)
        return Token2WavStream(self, conditioning, reference_mel, plan, noise, generator, **sampling)

    @torch.no_grad()
    def stream_decode(self, codes, speaker=None, **options) -> Iterator[torch.Tensor]:
        """Yield waveform pieces (B, n) of codes given whole (B, N) or as an iterable of (B, n) pieces (e.g. as the
        Talker makes them); options: `streamer`'s. Concatenated: N * samples_per_code samples."""
        pieces = iter([codes] if torch.is_tensor(codes) else codes)
        head = next(pieces, None)
        if head is None:
            return
        batch = head.shape[0] if torch.is_tensor(head) and head.dim() == 2 else 1
        stream = self.streamer(speaker, batch=batch, **options)
        yield from stream_decode(stream, itertools.chain([head], pieces))


__all__ = [
    "BigVGAN", "BigVGANConfig", "DiT", "DiTConfig", "Speaker", "StreamPlan", "Token2Wav", "Token2WavConfig",
    "Token2WavStream", "load_speakers", "save_speakers",
]
