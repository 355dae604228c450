"""The Qwen3-Omni audio tokenizer (the AuT encoder): log-mel frames -> Thinker-width audio tokens.

Input: padded mel frames (B, n_mels, T) and a frame mask (B, T) (omni.nn.audio_encoder).

    frames of each clip ──cut into chunks of 2*n_window frames (last one may be shorter)──► zero-padded chunks
    per chunk: (1, n_mels, t) ──3 x [Conv2d 3x3 stride 2 + GELU]──► (C, n_mels/8, t/8) ──flatten, conv_out──► (t/8, D)
        + sinusoidal positions that restart at 0 in every chunk
    keep the valid steps of every chunk, concatenate: one token sequence per clip, clips back to back
    layers: x += o_proj(attn(LN(x)))   x += fc2(gelu(fc1(LN(x))))
        attention is block-diagonal: each clip is cut into windows of
        (tokens of the longest chunk) * (n_window_infer // (2*n_window)) tokens, no attention across windows
    norm_out -> proj1 -> act -> proj2                                            ──► (total tokens, output_dim)

Two details follow the reference literally because they change numbers:
- all chunks of a batch are padded to the longest chunk *of the batch*. The conv stack's bias makes the padded
  steps non-zero, and the last valid step of a short chunk can see one of them, so a clip's tokens depend on
  whether another clip in the batch had a full chunk. We pad the same way.
- the attention window length is computed from the longest chunk of the batch (13 tokens as soon as any clip
  has a full chunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...nn.audio_encoder import AudioEncoderBase, AudioLayer, check_frame_count, sinusoid_table
from .config import Qwen3AudioConfig

STEM_GROUP_BYTES = 2 << 20  # the conv stem's first feature map per group of chunks (see AudioTokenizer._conv_stem)
_TOKENS_PER_FULL_CHUNK = 13  # a full chunk of 2 * n_window = 100 mel frames leaves the three stride-2 convs as 13


def _conv_len(n: int) -> int:
    """Length after one 3-wide, stride-2, padding-1 convolution."""
    return (n + 1) // 2


def audio_token_count(n_frames, n_window: int = 50):
    """Number of audio tokens the AuT encoder makes from `n_frames` mel frames (int or integer tensor).

    The encoder cuts the frames into chunks of 2 * n_window; each full chunk gives 13 tokens and the remainder r
    gives ceil(ceil(ceil(r / 2) / 2) / 2) (three stride-2 convolutions, each rounding up). E.g. 100 -> 13,
    250 -> 13 + 13 + 7 = 33.
    """
    check_frame_count(n_frames)
    chunk = 2 * n_window
    rest = n_frames % chunk
    for _ in range(3):  # three stride-2 convs, each ceil(x / 2)
        rest = (rest + 1) // 2
    return (n_frames // chunk) * _TOKENS_PER_FULL_CHUNK + rest


class AudioTokenizer(AudioEncoderBase):
    """The audio tower. `forward(input_features (B, n_mels, T), feature_attention_mask (B, T)) -> (N, output_dim)`."""

    def __init__(self, cfg: Qwen3AudioConfig):
        super().__init__(cfg)
        self.chunk_tokens = _conv_len(_conv_len(_conv_len(self.chunk)))
        if self.chunk_tokens != int(audio_token_count(self.chunk, cfg.n_window)):
            # the release's token-count formula (used for placeholder counts) writes 13 tokens per full chunk
            raise ConfigError(f"audio_config.n_window {cfg.n_window} makes {self.chunk_tokens} tokens per chunk, but "
                              "the Qwen3-Omni token count assumes 13 (n_window 50); keep n_window = 50")
        if cfg.n_window_infer < self.chunk:
            raise ConfigError(f"audio_config.n_window_infer ({cfg.n_window_infer}) must be at least one chunk "
                              f"(2 * n_window = {self.chunk} mel frames)")
        c = cfg.downsample_hidden_size
        freq = _conv_len(_conv_len(_conv_len(cfg.num_mel_bins)))  # mel bins left after three stride-2 convs
        self.conv1 = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.conv_out = nn.Linear(c * freq, cfg.d_model, bias=False)
        self.layers = nn.ModuleList(AudioLayer(cfg) for _ in range(cfg.encoder_layers))
        self.norm_out = nn.LayerNorm(cfg.d_model)
        self.proj1 = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj2 = nn.Linear(cfg.d_model, cfg.output_dim)
        self.register_buffer("positions", torch.empty(self.chunk_tokens, cfg.d_model), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """(Re)compute the per-chunk sinusoidal position table (after a meta-device build)."""
        device = None if self.positions.is_meta else self.positions.device
        self.positions = sinusoid_table(self.chunk_tokens, self.cfg.d_model).to(device)

    # -- forward -----------------------------------------------------------------------------------------------

    def _conv_stem(self, chunks: torch.Tensor) -> torch.Tensor:
        """(C, n_mels, t) chunks -> (C, t', D), in groups of at most conv_chunksize chunks whose first feature map
        fits in STEM_GROUP_BYTES: a stem over small groups stays in cache and reuses its buffers (measured on the
        CPU box: 10 s of audio 16 ms in groups of 2, 27-60 ms in one group). Every chunk is convolved on its own,
        so the grouping never changes the result."""
        C, n_mels, t = chunks.shape
        per_chunk = self.conv1.out_channels * _conv_len(n_mels) * _conv_len(t) * chunks.element_size()
        size = max(1, min(self.cfg.conv_chunksize, STEM_GROUP_BYTES // per_chunk))
        out = []
        for group in chunks.unsqueeze(1).split(size):  # (c, 1, n_mels, t)
            h = F.gelu(self.conv1(group))
            h = F.gelu(self.conv2(h))
            h = F.gelu(self.conv3(h))  # (c, C, F, t')
            c, ch, f, t = h.shape
            out.append(self.conv_out(h.permute(0, 3, 1, 2).reshape(c, t, ch * f)))
        return torch.cat(out)

    def forward(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        feature_attention_mask, lengths = self._check(input_features, feature_attention_mask)  # lengths (B,)
        dtype = self.conv1.weight.dtype
        frames = input_features.transpose(1, 2)[feature_attention_mask.bool()].to(dtype)  # (sum T_b, n_mels)

        # conv front-end over chunks of 2*n_window frames, all padded to the longest chunk of the batch
        chunks, _, chunk_len = self._pack(frames, lengths, self.chunk)  # (C, t, n_mels), (C,)
        x = self._conv_stem(chunks.transpose(1, 2))  # (C, t', D)
        x = x + self.positions[: x.shape[1]].to(x.dtype)  # positions restart in every chunk
        chunk_tokens = audio_token_count(chunk_len, self.cfg.n_window)  # (C,)
        keep = torch.arange(x.shape[1], device=x.device)[None] < chunk_tokens[:, None]
        x = x[keep]  # (N, D): every clip's tokens, clips back to back

        # block-diagonal attention: windows of a fixed token count inside each clip
        window = int(chunk_tokens.max()) * (self.cfg.n_window_infer // self.chunk)
        clip_tokens = audio_token_count(lengths, self.cfg.n_window)  # (B,)
        x = self.norm_out(self._run_layers(x, self.window_groups(clip_tokens, window)))  # (N, D)
        return self.proj2(self.act(self.proj1(x)))  # (N, output_dim)
