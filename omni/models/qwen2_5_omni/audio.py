"""The Qwen2.5-Omni audio tokenizer (a Whisper-large-v3-style encoder): log-mel frames -> Thinker-width tokens.

Input: padded mel frames (B, n_mels, T) and a frame mask (B, T) (omni.nn.audio_encoder).

    frames of each clip ──cut into chunks of 2*n_window frames (2 s; the last one may be shorter)──► padded chunks
    per chunk: Conv1d(n_mels -> D, k3) + GELU, padded frames zeroed, Conv1d(D -> D, k3, stride 2) + GELU
        + sinusoidal positions that restart at 0 in every chunk
    layers: x += o_proj(attn(LN(x)))   x += fc2(gelu(fc1(LN(x))))     attention only inside each chunk
    per clip: 2x average pooling over time (whole pairs; an odd last step is dropped)
    norm_out -> proj                                                  ──► (total tokens, output_dim)

25 tokens per second of audio (40 ms each): `pooled_audio_token_count` gives the count.
"""

from __future__ import annotations

import torch
from torch import nn

from ...nn.audio_encoder import AudioEncoderBase, AudioLayer, check_frame_count, sinusoid_table
from .config import Qwen25AudioConfig


def _conv_steps(n):
    """Steps left by the stride-2, padding-1, width-3 convolution."""
    return (n - 1) // 2 + 1


def pooled_audio_token_count(n_frames, n_window: int | None = None):
    """Number of audio tokens this encoder makes from `n_frames` mel frames (int or integer tensor).

    A stride-2 convolution keeps (n - 1) // 2 + 1 steps, then 2x average pooling keeps whole pairs only:
    100 frames (1 s) -> 50 steps -> 25 tokens; 101 frames -> 51 steps -> 25 tokens. The chunking (n_window, an
    even number of frames per chunk) does not change the count.
    """
    check_frame_count(n_frames)
    return (_conv_steps(n_frames) - 2) // 2 + 1


class Qwen25AudioTokenizer(AudioEncoderBase):
    """`forward(input_features (B, n_mels, T), feature_attention_mask (B, T)) -> (N, output_dim)`."""

    def __init__(self, cfg: Qwen25AudioConfig):
        super().__init__(cfg)  # checks, chunk = 2 * n_window mel frames (2 s), activation
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(AudioLayer(cfg, k_bias=False) for _ in range(cfg.encoder_layers))
        self.norm_out = nn.LayerNorm(d)
        self.proj = nn.Linear(d, cfg.output_dim)
        self.audio_bos_eos_token = nn.Embedding(2, cfg.output_dim)  # in the checkpoint; unused by the forward pass
        self.register_buffer("positions", torch.empty(_conv_steps(self.chunk), d), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """(Re)compute the per-chunk sinusoidal position table (after a meta-device build)."""
        device = None if self.positions.is_meta else self.positions.device
        self.positions = sinusoid_table(_conv_steps(self.chunk), self.cfg.d_model).to(device)

    def forward(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        feature_attention_mask, lengths = self._check(input_features, feature_attention_mask)  # lengths (B,)
        dtype = self.conv1.weight.dtype
        frames = input_features.transpose(1, 2)[feature_attention_mask.bool()].to(dtype)  # (sum T_b, n_mels)

        chunks, valid, chunk_len = self._pack(frames, lengths, self.chunk)  # (C, t, n_mels), (C, t), (C,)
        x = self.act(self.conv1(chunks.transpose(1, 2)))  # (C, D, t)
        x = x * valid[:, None, :].to(x.dtype)  # zero the padded frames so the strided conv reads zeros there
        x = self.act(self.conv2(x)).transpose(1, 2)  # (C, t', D)
        x = x + self.positions[: x.shape[1]].to(x.dtype)  # positions restart in every chunk
        steps = torch.arange(x.shape[1], device=x.device)[None] < _conv_steps(chunk_len)[:, None]  # (C, t')
        # attention inside each chunk: (N, D), every clip's steps back to back
        x = self._run_layers(x[steps], self.window_groups(_conv_steps(chunk_len), x.shape[1]))

        # 2x average pooling inside each clip: pairs (0, 1), (2, 3), ... of its steps
        clip_steps = _conv_steps(lengths)  # (B,)
        pairs = clip_steps // 2
        first = torch.repeat_interleave(torch.cumsum(clip_steps, 0) - clip_steps, pairs)  # clip offset per pair
        k = torch.arange(int(pairs.sum()), device=x.device) - torch.repeat_interleave(torch.cumsum(pairs, 0) - pairs,
                                                                                         pairs)
        left = first + 2 * k
        x = (x[left] + x[left + 1]) / 2  # (N', D)
        return self.proj(self.norm_out(x))  # (N', output_dim)
