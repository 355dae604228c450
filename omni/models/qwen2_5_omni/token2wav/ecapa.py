"""ECAPA-TDNN speaker encoder of the Qwen2.5-Omni DiT: a reference mel (B, T, mel) -> speaker vector (B, enc_dim).

    TDNN stem (conv k5 + ReLU)                                                        (B, C, T)
    -> SE-Res2Net blocks: 1x1 TDNN, Res2Net (channel groups, each conv also reads the previous group's output),
       1x1 TDNN, squeeze-excitation channel gating, residual                          (B, C, T) each
    -> concatenate the blocks' outputs, 1x1 TDNN ("multi-layer feature aggregation")  (B, C_cat, T)
    -> attentive statistics pooling: per-channel softmax attention over time; weighted mean and std
    -> 1x1 conv                                                                       (B, enc_dim)

Every convolution pads "same" with reflected samples (the layout of the released weights). Module names follow the
checkpoint's, so the key table maps this whole subtree with one row.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DiTConfig


def _same_conv(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding="same", padding_mode="reflect")


class TDNN(nn.Module):
    """relu(conv(x)), "same" reflect padding. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.conv = _same_conv(c_in, c_out, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class Res2Net(nn.Module):
    """Split channels into `scale` groups; group 0 passes through, group i >= 1 is TDNN(x_i + y_{i-1})."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TDNN(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(torch.chunk(x, self.scale, dim=1))
        y = parts[0]
        out = [y]
        for i, block in enumerate(self.blocks, start=1):
            y = block(parts[i] if i == 1 else parts[i] + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """x * sigmoid(conv2(relu(conv1(mean_t x)))): a per-channel gate from the clip's average."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.conv1 = _same_conv(channels, bottleneck, 1)
        self.conv2 = _same_conv(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.conv2(torch.relu(self.conv1(x.mean(dim=2, keepdim=True)))))  # (B, C, 1)
        return x * gate


class SERes2NetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, scale: int, se_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNN(c_in, c_out, 1)
        self.res2net_block = Res2Net(c_out, scale, kernel, dilation)
        self.tdnn2 = TDNN(c_out, c_out, 1)
        self.se_block = SqueezeExcitation(c_out, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def _mean_std(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12):
    """Weighted mean and standard deviation over time. x, weights (B, C, T) (weights sum to 1 over T)."""
    mean = (weights * x).sum(2)
    std = torch.sqrt((weights * (x - mean[..., None]).pow(2)).sum(2).clamp(eps))
    return mean, std  # (B, C) each


class AttentiveStatsPool(nn.Module):
    """Attention weights from [x, global mean, global std]; returns [weighted mean, weighted std] (B, 2C, 1)."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNN(3 * channels, attention_channels, 1)
        self.conv = _same_conv(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        T = x.shape[-1]
        uniform = torch.full_like(x, 1.0 / T)
        mean, std = _mean_std(x, uniform)
        context = torch.cat([x, mean[..., None].expand(-1, -1, T), std[..., None].expand(-1, -1, T)], dim=1)
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)  # (B, C, T)
        mean, std = _mean_std(x, attention)
        return torch.cat([mean, std], dim=1)[..., None]


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN. blocks[0] is the stem, blocks[1:] the SE-Res2Net blocks (the checkpoint's numbering)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        ch, ks, dil = cfg.enc_channels, cfg.enc_kernel_sizes, cfg.enc_dilations
        self.blocks = nn.ModuleList([TDNN(cfg.mel_dim, ch[0], ks[0], dil[0])])
        self.blocks.extend(
            SERes2NetBlock(ch[i - 1], ch[i], cfg.enc_res2net_scale, cfg.enc_se_channels, ks[i], dil[i])
            for i in range(1, len(ch) - 1)
        )
        self.mfa = TDNN(ch[-1], ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatsPool(ch[-1], cfg.enc_attention_channels)
        self.fc = _same_conv(2 * ch[-1], cfg.enc_dim, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T, mel_dim) -> (B, enc_dim)."""
        x = mel.transpose(1, 2)  # (B, mel, T)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))  # the stem's output is not aggregated
        return self.fc(self.asp(x)).squeeze(-1)
