"""What both releases' audio towers share: a Whisper-style encoder over packed tokens.

Input (omni.media.audio.log_mel_features): padded mel frames (B, n_mels, T) and a frame mask (B, T); only the
masked-in frames of each clip are used. A release's tower adds its conv stem, its pooling and its projection; the
base checks the inputs, packs runs of frames / tokens into padded pieces for the stem, and runs the layers

    x += o_proj(attn(LN(x)))    x += fc2(act(fc1(LN(x))))

over packed tokens (N, D), attention only inside windows (`window_groups`). Positions are sinusoids that restart
in every conv chunk (`sinusoid_table`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import AudioConfig
from ..errors import InputError
from .attention import packed_attention, segment_groups
from .checkpointing import call_block
from .mlp import MLP, activation

ACT_FIELD = "audio_config.activation_function"


def check_frame_count(n_frames) -> None:
    """Mel frame counts (an int or an integer tensor) must be non-negative integers."""
    if isinstance(n_frames, torch.Tensor):
        if n_frames.is_floating_point() or bool((n_frames < 0).any()):
            raise InputError(f"audio feature lengths must be non-negative integers, got {n_frames.tolist()}")
    elif not isinstance(n_frames, int) or n_frames < 0:
        raise InputError(f"audio feature length must be a non-negative integer, got {n_frames!r}")


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

    def forward(self, x: torch.Tensor, windows: list) -> torch.Tensor:
        """windows: the attention windows as `segment_groups` of the token rows (see `window_groups`)."""
        N, _ = x.shape
        q, k, v = (p(x).view(N, self.n_heads, self.head_dim) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.o_proj(packed_attention(q, k, v, windows).reshape(N, -1))


class AudioLayer(nn.Module):
    """Pre-LayerNorm transformer layer."""

    def __init__(self, cfg: AudioConfig, k_bias: bool = True):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = AudioAttention(cfg.d_model, cfg.encoder_attention_heads, k_bias)
        self.mlp_norm = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg.d_model, cfg.encoder_ffn_dim, act=cfg.activation_function, field=ACT_FIELD)

    def forward(self, x: torch.Tensor, windows: list) -> torch.Tensor:
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
        self.cfg = cfg
        self.chunk = 2 * cfg.n_window  # mel frames per conv chunk
        self.act = activation(cfg.activation_function, ACT_FIELD)
        self.gradient_checkpointing = False  # recompute each layer in the backward pass (omni.training)

    def _check(self, feats: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the inputs; returns the mask (all frames valid when None) and the valid frames per clip (B,)."""
        n_mels = self.cfg.num_mel_bins
        if not torch.is_tensor(feats) or feats.dim() != 3 or feats.shape[1] != n_mels:
            shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
            raise InputError(f"input_features must be (batch, {n_mels} mel bins, frames), got {shape}; "
                             "make them with omni.media.audio.log_mel_features")
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
    def window_groups(cls, lengths: torch.Tensor, size: int) -> list:
        """Attention windows of runs of `lengths` tokens (back to back), each run cut into windows of `size`, as
        `segment_groups`: attention then runs on each group of equal-length windows as one batch, with no padded
        rows in the linear layers and no mask."""
        piece, _ = cls._pieces(lengths, size)
        return segment_groups(piece, lengths.device)

    def _run_layers(self, x: torch.Tensor, windows: list) -> torch.Tensor:
        """The layers over packed tokens x (N, D), attention only inside `windows` (`window_groups`)."""
        for layer in self.layers:
            x = call_block(self, layer, x, windows)
        return x
