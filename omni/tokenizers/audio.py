"""The Qwen3-Omni audio tokenizer (the AuT encoder): log-mel frames -> Thinker-width audio tokens.

Input is what `omni.tokenizers.audio_features.log_mel_features` produces: padded mel frames (B, n_mels, T) and a
frame mask (B, T). Only the masked-in frames of each clip are used.

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

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AudioConfig
from ..errors import ConfigError, InputError
from ..nn import sdpa
from ..positions import audio_token_count

__all__ = ["AudioTokenizer", "audio_token_count"]

STEM_GROUP_BYTES = 2 << 20  # the conv stem's first feature map per group of chunks (see AudioTokenizer._conv_stem)
_ACTIVATIONS = {"gelu": "none", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh"}  # -> F.gelu(approximate=...)


def _conv_len(n: int) -> int:
    """Length after one 3-wide, stride-2, padding-1 convolution."""
    return (n + 1) // 2


def sinusoid_table(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """(length, channels) table: sin in the first half, cos in the second, geometric timescales 1..max_timescale."""
    half = channels // 2
    step = math.log(max_timescale) / (half - 1)
    inv = torch.exp(-step * torch.arange(half, dtype=torch.float32))  # (half,)
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]  # (length, half)
    return torch.cat([t.sin(), t.cos()], dim=1)


class AudioAttention(nn.Module):
    """Multi-head self-attention with biased projections, inside windows of packed tokens: x (N, D).

    k_bias: Qwen3-Omni's key projection has a bias, Qwen2.5-Omni's (Whisper-style) has none.
    """

    def __init__(self, dim: int, n_heads: int, k_bias: bool = True):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=k_bias)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        """windows: one (n, l) index per window length l, the token rows of n windows (see `window_groups`)."""
        N, _ = x.shape
        q, k, v = (p(x).view(N, self.n_heads, self.head_dim) for p in (self.q_proj, self.k_proj, self.v_proj))
        if len(windows) == 1 and windows[0].shape[0] == 1:  # one window (a short clip): attend over all, no gather
            out = sdpa(*(t.transpose(0, 1)[None] for t in (q, k, v)))[0].transpose(0, 1)  # (N, H, Dh)
        else:
            out = torch.empty_like(q)
            for index in windows:  # equal-length windows as one batch: no padding, no mask
                n, l = index.shape
                rows = index.flatten()
                o = sdpa(*(t[rows].view(n, l, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v)))
                out[rows] = o.transpose(1, 2).reshape(n * l, self.n_heads, self.head_dim)
        return self.o_proj(out.reshape(N, -1))


class AudioMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class AudioLayer(nn.Module):
    """Pre-LayerNorm transformer layer."""

    def __init__(self, cfg: AudioConfig, approximate: str, k_bias: bool = True):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = AudioAttention(cfg.d_model, cfg.encoder_attention_heads, k_bias)
        self.mlp_norm = nn.LayerNorm(cfg.d_model)
        self.mlp = AudioMLP(cfg.d_model, cfg.encoder_ffn_dim, approximate)

    def forward(self, x: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), windows)
        x = x + self.mlp(self.mlp_norm(x))
        if x.dtype == torch.float16:  # as the reference: keep fp16 activations finite
            limit = torch.finfo(x.dtype).max - 1000
            x = x.clamp(-limit, limit)
        return x


class AudioEncoderBase(nn.Module):
    """What both releases' audio towers share: input checks, packing runs of frames / tokens into padded pieces,
    and the transformer layers over those pieces (subclasses add the conv stem, `layers` and the projection)."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        if cfg.activation_function not in _ACTIVATIONS:
            raise ConfigError(f"audio_config.activation_function {cfg.activation_function!r} is not supported; "
                              f"use one of {sorted(_ACTIVATIONS)}")
        self.cfg = cfg
        self.chunk = 2 * cfg.n_window  # mel frames per conv chunk
        self.approximate = _ACTIVATIONS[cfg.activation_function]
        self.gradient_checkpointing = False  # recompute each layer in the backward pass (omni.training)

    def _check(self, feats: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the inputs; returns the mask (all frames valid when None) and the valid frames per clip (B,)."""
        n_mels = self.cfg.num_mel_bins
        if not torch.is_tensor(feats) or feats.dim() != 3 or feats.shape[1] != n_mels:
            shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
            raise InputError(f"input_features must be (batch, {n_mels} mel bins, frames), got {shape}; "
                             "make them with omni.tokenizers.audio_features.log_mel_features")
        if mask is None:  # no mask: every frame of every clip is real
            mask = feats.new_ones(feats.shape[0], feats.shape[2], dtype=torch.long)
        if not torch.is_tensor(mask) or tuple(mask.shape) != (feats.shape[0], feats.shape[2]):
            shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
            raise InputError(f"feature_attention_mask must be (batch, frames) = {(feats.shape[0], feats.shape[2])}, "
                             f"got {shape}")
        lengths = mask.bool().sum(-1)  # (B,)
        if bool((lengths == 0).any()):
            raise InputError(f"audio clip(s) {(lengths == 0).nonzero().flatten().tolist()} have no valid mel frame "
                             "in feature_attention_mask; drop empty clips before encoding")
        return mask, lengths

    @staticmethod
    def _pieces(lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs of `lengths` rows, back to back, cut into pieces of `size` (the last of a run may be shorter).
        Returns (piece lengths (P,), first row of each piece (P,))."""
        device = lengths.device
        count = (lengths + size - 1) // size  # pieces per run
        run = torch.repeat_interleave(torch.arange(len(lengths), device=device), count)  # (P,)
        first = torch.cumsum(count, 0) - count  # index of each run's first piece
        k = torch.arange(len(run), device=device) - first[run]  # piece number inside its run
        piece = torch.clamp(lengths[run] - k * size, max=size)
        return piece, (torch.cumsum(lengths, 0) - lengths)[run] + k * size

    @classmethod
    def _pack(cls, flat: torch.Tensor, lengths: torch.Tensor, size: int):
        """Cut each run of `lengths` rows of `flat` (N, ...) into pieces of `size`, pad them into a batch.

        Returns (packed (P, L, ...), valid (P, L) bool, piece lengths (P,)) with L the longest piece.
        """
        device = flat.device
        piece, start = cls._pieces(lengths, size)
        width = int(piece.max())
        steps = torch.arange(width, device=device)
        valid = steps[None] < piece[:, None]  # (P, L)
        index = (start[:, None] + steps[None]).clamp(max=flat.shape[0] - 1)
        packed = flat[index] * valid.view(*valid.shape, *([1] * (flat.dim() - 1))).to(flat.dtype)
        return packed, valid, piece

    @classmethod
    def window_groups(cls, lengths: torch.Tensor, size: int) -> list[torch.Tensor]:
        """Attention windows of runs of `lengths` tokens (back to back), each run cut into windows of `size`,
        grouped by length: one (n, l) index of token rows per window length l. Attention then runs on each group as
        a batch: no padded rows in the linear layers and no mask (varlen attention by grouping equal lengths)."""
        piece, start = cls._pieces(lengths, size)
        groups = []
        for l in piece.unique().tolist():
            first = start[piece == l]  # (n,)
            groups.append(first[:, None] + torch.arange(l, device=first.device))
        return groups

    def _run_layers(self, x: torch.Tensor, windows: list[torch.Tensor]) -> torch.Tensor:
        """The layers over packed tokens x (N, D), attention only inside `windows` (`window_groups`)."""
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, windows, use_reentrant=False)
            else:
                x = layer(x, windows)
        return x


class AudioTokenizer(AudioEncoderBase):
    """The audio tower. `forward(input_features (B, n_mels, T), feature_attention_mask (B, T)) -> (N, output_dim)`."""

    def __init__(self, cfg: AudioConfig):
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
        self.layers = nn.ModuleList(AudioLayer(cfg, self.approximate) for _ in range(cfg.encoder_layers))
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
        return self.proj2(F.gelu(self.proj1(x), approximate=self.approximate))  # (N, output_dim)
