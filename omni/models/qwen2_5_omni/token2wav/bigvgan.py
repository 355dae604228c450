"""BigVGAN: the Qwen2.5-Omni vocoder. Mel spectrogram (B, 80, L) -> 24 kHz waveform (B, L * 240).

    mel (natural-log amplitude) -> dB, mapped to [-1, 1]
      -> conv_pre (k7)                                                                 (B, C, L)
      -> per stage s: ConvTranspose1d (stride r_s, channels halved), then the mean of
         AMP residual blocks (one per kernel size; each 3 x [act, dilated conv, act, conv] + skip)
      -> anti-aliased SnakeBeta, conv_post (k7, 1 channel, no bias), clamp to [-1, 1]   (B, 1, L * prod(r))

Every activation is *anti-aliased*: the signal is upsampled 2x with a Kaiser-windowed sinc low-pass filter, passed
through SnakeBeta (whose harmonics would otherwise fold back into the band), and low-pass downsampled 2x again.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import InputError
from ....nn.conv import SnakeBeta
from ..config import BigVGANConfig

# Decibel range of the DiT's mel as the vocoder was trained on it.
MIN_DB = -115.0
REF_DB = 20.0


def kaiser_sinc_lowpass(cutoff: float, half_width: float, taps: int) -> torch.Tensor:
    """Low-pass FIR filter (taps,): a sinc at `cutoff` (cycles/sample) under a Kaiser window, summing to 1.

    The Kaiser beta follows Kaiser's empirical design formula for the stop-band attenuation that a transition
    band of `half_width` allows with this many taps.
    """
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, periodic=False, beta=beta, dtype=torch.float32)
    # tap times centred on the filter's middle (between two taps for an even length)
    t = torch.arange(-half, half) + 0.5 if taps % 2 == 0 else torch.arange(taps) - half
    h = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return h / h.sum()


class AntiAliasedSnakeBeta(nn.Module):
    """2x upsample (sinc filter) -> SnakeBeta -> 2x downsample (same filter). (B, C, L) -> (B, C, L)."""

    RATIO = 2
    TAPS = 12

    def __init__(self, channels: int):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.register_buffer("lowpass", torch.empty(self.TAPS), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """(Re)compute the filter, e.g. after a meta-device build."""
        device = self.lowpass.device if not self.lowpass.is_meta else None
        self.lowpass = kaiser_sinc_lowpass(0.5 / self.RATIO, 0.6 / self.RATIO, self.TAPS).to(device)

    def _filter(self, channels: int, dtype) -> torch.Tensor:
        return self.lowpass.to(dtype).view(1, 1, -1).expand(channels, 1, -1)  # depthwise (C, 1, taps)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        r, k, c = self.RATIO, self.TAPS, x.shape[1]
        pad = k // r - 1  # input samples of edge context, replicated
        x = F.pad(x, (pad, pad), mode="replicate")
        y = r * F.conv_transpose1d(x, self._filter(c, x.dtype), stride=r, groups=c)  # (B, C, r * (L + 2 pad) + k - r)
        # drop what the padding produced: the output keeps r * L samples aligned with the input
        left = pad * r + (k - r) // 2
        right = pad * r + (k - r + 1) // 2
        return y[..., left : y.shape[-1] - right]

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        r, k, c = self.RATIO, self.TAPS, x.shape[1]
        x = F.pad(x, (k // 2 - (k % 2 == 0), k // 2), mode="replicate")
        return F.conv1d(x, self._filter(c, x.dtype), stride=r, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock(nn.Module):
    """Anti-aliased multi-periodicity residual block: three x += conv2(act(conv1_d(act(x)))), d = dilations."""

    def __init__(self, channels: int, kernel: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel - 1) * d // 2) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )
        # interleaved: activations[2i] precedes convs1[i], activations[2i + 1] precedes convs2[i]
        self.activations = nn.ModuleList(AntiAliasedSnakeBeta(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            h = conv1(self.activations[2 * i](x))
            x = x + conv2(self.activations[2 * i + 1](h))
        return x


class BigVGAN(nn.Module):
    def __init__(self, cfg: BigVGANConfig):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.upsample_initial_channel
        widths = [c0 // 2**i for i in range(len(cfg.upsample_rates) + 1)]  # channels entering each stage, then out
        self.conv_pre = nn.Conv1d(cfg.mel_dim, c0, 7, padding=3)
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose1d(widths[i], widths[i + 1], k, stride=r, padding=(k - r) // 2)
            for i, (r, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        # stage-major: resblocks[s * n + j] is residual block j of stage s
        self.resblocks = nn.ModuleList(
            AMPBlock(widths[i + 1], k, d)
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        self.activation_post = AntiAliasedSnakeBeta(widths[-1])
        self.conv_post = nn.Conv1d(widths[-1], 1, 7, padding=3, bias=False)

    @property
    def hop_length(self) -> int:
        """Waveform samples per mel frame."""
        return math.prod(self.cfg.upsample_rates)

    @staticmethod
    def normalize_mel(mel: torch.Tensor) -> torch.Tensor:
        """Natural-log amplitude mel -> dB (floored at MIN_DB, minus REF_DB) -> linear map of [MIN_DB, 0] to [-1, 1]."""
        floor = torch.exp(torch.tensor(MIN_DB / 20.0 * math.log(10), dtype=mel.dtype, device=mel.device))
        db = 20 * torch.log10(torch.clamp(torch.exp(mel), min=floor)) - REF_DB
        return torch.clamp(2 * ((db - MIN_DB) / -MIN_DB) - 1, -1.0, 1.0)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, mel_dim, L) in natural-log amplitude (the DiT's output) -> waveform (B, L * hop_length)."""
        if mel.dim() != 3 or mel.shape[1] != self.cfg.mel_dim:
            raise InputError(
                f"BigVGAN expects a mel spectrogram (batch, {self.cfg.mel_dim}, frames), got shape "
                f"{tuple(mel.shape)}; transpose a (batch, frames, mel) tensor first"
            )
        x = self.conv_pre(self.normalize_mel(mel))
        n = len(self.cfg.resblock_kernel_sizes)
        for s, up in enumerate(self.upsamples):
            x = up(x)
            x = sum(self.resblocks[s * n + j](x) for j in range(n)) / n
        x = self.conv_post(self.activation_post(x))  # (B, 1, samples)
        return torch.clamp(x, -1.0, 1.0).squeeze(1)
