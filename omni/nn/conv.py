"""1-D convolution blocks of the vocoders: causal convolutions (Code2Wav) and the SnakeBeta activation (Code2Wav
and BigVGAN). Shapes: (B, C, L), L the time axis at that stage's rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Module):
    """Conv1d (stride 1) padded on the left only, so output t reads inputs t - (k-1)*dilation .. t."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
        self.pad = (kernel - 1) * dilation  # how far back output t reaches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0)))


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d with `kernel - stride` samples trimmed from both ends: length n -> n*stride + stride - kernel.

    With kernel == stride (the upsample stages) this is a plain repeat-and-mix; with kernel == 2*stride (decoder)
    output t reads inputs t // stride and t // stride + 1, i.e. one input step of lookahead.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel, stride=stride)
        self.stride, self.trim = stride, kernel - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x[..., self.trim : x.shape[-1] - self.trim]


class SnakeBeta(nn.Module):
    """x + sin^2(a x) / b per channel, with a = exp(alpha), b = exp(beta) stored in log space."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        a = self.alpha.exp()[None, :, None]
        b = self.beta.exp()[None, :, None]
        return x + torch.sin(x * a).pow(2) / (b + 1e-9)  # 1e-9 as the release: b can underflow in low precision
