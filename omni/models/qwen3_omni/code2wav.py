"""Code2Wav: the Qwen3-Omni codec decoder (vocoder). Speech codes -> 24 kHz waveform.

The Talker emits one frame every 80 ms: `num_quantizers` (16) codes, one per codebook. Code2Wav turns them into
audio in three stages:

    codes (B, Q, T)
      -> embed each code (codebook q owns rows q*codebook_size ...), mean over the Q codebooks    (B, T, D)
      -> transformer: causal sliding-window attention (RoPE) + SwiGLU, both residual branches
         multiplied by a learnt per-channel layer scale; final RMSNorm                            (B, T, D)
      -> upsample stages: ConvTranspose1d (kernel = stride) + ConvNeXt block, x2 x2               (B, D, 4T)
      -> decoder: causal conv, then per rate r a block [SnakeBeta, ConvTranspose1d(2r, stride r),
         three dilated residual units (1, 3, 9)], SnakeBeta, causal conv to 1 channel, clamp      (B, 1, samples)

Every convolution is causal (zero padding on the left only), but the decoder's transposed convolutions
(kernel 2r, stride r, r samples trimmed on *both* sides) make each output sample also read the next input step:
a frame's last samples need the following frame. So `forward` returns `wave_length(T) = T * samples_per_frame -
deficit` samples, and decoding a prefix of the frames gives exactly a prefix of the full waveform. Streaming
(`Code2WavStream`, `stream_decode`) relies on that: the transformer keeps a sliding-window key/value cache, the
convolutional part re-decodes just the few frames of its left receptive field (computed from the module
structure), and each step emits the samples the frames seen so far fully determine. Concatenated, the pieces
equal `forward` on the whole sequence.

`chunked_decode` reproduces the reference's fixed-context chunking (300 frames, 25 frames of left context) for
parity; it is *not* equal to `forward` (25 frames cover neither the transformer's reach nor the lookahead).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ...checks import integer
from ...errors import InputError
from ...nn import Attention, RMSNorm, RotaryEmbedding, SwiGLU, causal_mask
from ...nn.conv import CausalConv1d, CausalConvTranspose1d, SnakeBeta
from .config import Code2WavConfig

# ------------------------------------------------------------------------------------------------------------------
# Convolutional building blocks. Shapes: (B, C, L) with L the time axis at that stage's rate.


class ConvNeXtBlock(nn.Module):
    """x + gamma * pw2(gelu(pw1(layernorm(causal depthwise conv7(x))))), channels-last in the middle."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, L)
        h = self.dwconv(x).transpose(1, 2)  # (B, L, D)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    """x + conv1x1(snake(dilated causal conv7(snake(x))))."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class DecoderBlock(nn.Module):
    """Halve the channels and multiply the rate by r: [SnakeBeta, ConvTranspose(2r, r), 3 residual units]."""

    def __init__(self, c_in: int, c_out: int, rate: int):
        super().__init__()
        self.block = nn.ModuleList(
            [SnakeBeta(c_in), CausalConvTranspose1d(c_in, c_out, 2 * rate, rate)]
            + [ResidualUnit(c_out, d) for d in (1, 3, 9)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.block:
            x = m(x)
        return x


# ------------------------------------------------------------------------------------------------------------------
# The pre-transformer.


class WindowCache:
    """Keys/values of the last `window - 1` positions of one layer: all a sliding-window query can still see."""

    def __init__(self, window: int):
        self.keep = window - 1
        self.k = self.v = None
        self.length = 0  # positions currently held

    def update(self, k: torch.Tensor, v: torch.Tensor):  # (B, K, T, Dh) each
        if self.k is not None:
            k, v = torch.cat((self.k, k), dim=2), torch.cat((self.v, v), dim=2)
        drop = max(0, k.shape[2] - self.keep)  # (a negative start would count from the end)
        self.k, self.v = k[:, :, drop:], v[:, :, drop:]
        self.length = self.k.shape[2]
        return k, v


class Code2WavLayer(nn.Module):
    """x += attn_scale * attn(norm(x)); x += ffn_scale * ffn(norm(x))."""

    def __init__(self, cfg: Code2WavConfig):
        super().__init__()
        d = cfg.hidden_size
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.attn = Attention(d, cfg.num_attention_heads, cfg.num_key_value_heads, d // cfg.num_attention_heads,
                              qkv_bias=cfg.attention_bias, out_bias=cfg.attention_bias)
        self.attn_scale = nn.Parameter(torch.full((d,), cfg.layer_scale_initial_scale))
        self.ffn_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.ffn = SwiGLU(d, cfg.intermediate_size)
        self.ffn_scale = nn.Parameter(torch.full((d,), cfg.layer_scale_initial_scale))

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.attn_scale * self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.ffn_scale * self.ffn(self.ffn_norm(x))


class Code2WavTransformer(nn.Module):
    """Causal sliding-window transformer over frames; `start` and `caches` let it run chunk by chunk."""

    def __init__(self, cfg: Code2WavConfig):
        super().__init__()
        self.window = cfg.sliding_window
        self.layers = nn.ModuleList(Code2WavLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rope = RotaryEmbedding(cfg.hidden_size // cfg.num_attention_heads, cfg.theta)

    def forward(self, x: torch.Tensor, start: int = 0, caches: list[WindowCache] | None = None) -> torch.Tensor:
        T = x.shape[1]  # x (B, T, D): frames start .. start + T - 1
        positions = torch.arange(start, start + T, device=x.device)[None]  # (1, T): same rotation for every row
        cos, sin = self.rope(positions, x.dtype)
        past = caches[0].length if caches else 0
        mask = causal_mask(None, T, past + T, x.device, sliding_window=self.window)  # (1, 1, T, past + T)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, caches[i] if caches else None)
        return self.norm(x)


# ------------------------------------------------------------------------------------------------------------------
# The whole vocoder.


class Code2Wav(nn.Module):
    def __init__(self, cfg: Code2WavConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.code_embedding = nn.Embedding(cfg.codebook_size * cfg.num_quantizers, d)
        self.transformer = Code2WavTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalConvTranspose1d(d, d, f, f), ConvNeXtBlock(d)]) for f in cfg.upsampling_ratios
        )
        dims = [cfg.decoder_dim // 2**i for i in range(len(cfg.upsample_rates) + 1)]  # channels halve per block
        self.decoder = nn.ModuleList(
            [CausalConv1d(d, dims[0], 7)]
            + [DecoderBlock(dims[i], dims[i + 1], r) for i, r in enumerate(cfg.upsample_rates)]
            + [SnakeBeta(dims[-1]), CausalConv1d(dims[-1], 1, 7)]
        )

    @property
    def samples_per_frame(self) -> int:
        """Total upsampling factor: waveform samples per code frame (1920 = 80 ms at 24 kHz for the release)."""
        return math.prod(self.cfg.upsampling_ratios) * math.prod(self.cfg.upsample_rates)

    def _conv_layers(self) -> list[nn.Module]:
        """The convolutional part as a flat, ordered list of the modules that change time alignment."""
        out = []
        for stage in self.upsample:
            out += list(stage)
        for m in self.decoder:
            out += list(m.block) if isinstance(m, DecoderBlock) else [m]
        return out

    def wave_length(self, frames: int) -> int:
        """Samples `forward` returns for `frames` frames (frames * samples_per_frame minus the lookahead trims)."""
        n = frames
        for m in self._conv_layers():
            if isinstance(m, CausalConvTranspose1d):
                n = n * m.stride - m.trim
        return n

    def chunked_length(self, frames: int, chunk_size: int = 300) -> int:
        """Samples `chunked_decode` returns for `frames` frames: each chunk loses the lookahead trim once."""
        return sum(self.wave_length(min(chunk_size, frames - s)) for s in range(0, frames, chunk_size))

    def first_frame_needed(self, sample: int) -> int:
        """The earliest frame that waveform sample `sample` depends on (may be negative: left zero padding)."""
        i = sample
        for m in reversed(self._conv_layers()):  # walk the dependency back to the frame axis
            if isinstance(m, CausalConv1d):
                i -= m.pad
            elif isinstance(m, ConvNeXtBlock):
                i -= m.dwconv.pad
            elif isinstance(m, ResidualUnit):
                i -= m.conv1.pad + m.conv2.pad
            elif isinstance(m, CausalConvTranspose1d):
                i = i // m.stride  # output t (after the trim) reads inputs t // stride (and later ones)
        return i

    # -- decoding ------------------------------------------------------------------------------------------------

    def check_codes(self, codes) -> torch.Tensor:
        """Validate a (B, num_quantizers, frames) integer tensor; raise InputError saying what is wrong."""
        c = self.cfg
        if not isinstance(codes, torch.Tensor):
            raise InputError(f"codes must be a torch.Tensor (B, {c.num_quantizers}, frames), got {type(codes).__name__}")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise InputError(f"codes must be an integer tensor (torch.long), got {codes.dtype}")
        if codes.dim() != 3:
            raise InputError(
                f"codes must have shape (batch, {c.num_quantizers}, frames), got {tuple(codes.shape)}; "
                "add a batch axis with codes[None] for a single sequence"
            )
        if codes.shape[1] != c.num_quantizers:
            raise InputError(
                f"codes have {codes.shape[1]} codebooks on axis 1, this Code2Wav expects {c.num_quantizers} "
                f"(shape (batch, {c.num_quantizers}, frames)); transpose if frames came first"
            )
        if codes.shape[0] == 0:
            raise InputError("codes hold no sequence (batch size 0)")
        codes = codes.long()  # small integer dtypes would overflow in the range test below
        if codes.numel() and (codes.min() < 0 or codes.max() >= c.codebook_size):
            raise InputError(
                f"codes must lie in [0, {c.codebook_size}), got values in [{int(codes.min())}, {int(codes.max())}]; "
                "strip the Talker's special tokens (pad/bos/eos) before decoding"
            )
        return codes

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, Q, T) codes -> (B, T, D): each codebook has its own block of rows; average the Q embeddings."""
        offsets = torch.arange(self.cfg.num_quantizers, device=codes.device)[None, :, None] * self.cfg.codebook_size
        return self.code_embedding(codes + offsets).mean(1)

    def vocode(self, hidden: torch.Tensor) -> torch.Tensor:
        """Transformer output (B, D, T) -> waveform (B, 1, wave_length(T)), clamped to [-1, 1]."""
        for stage in self.upsample:
            for m in stage:
                hidden = m(hidden)
        for m in self.decoder:
            hidden = m(hidden)
        return hidden.clamp(-1.0, 1.0)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, num_quantizers, T) -> waveform (B, 1, wave_length(T)) at 24 kHz."""
        codes = self.check_codes(codes)
        if self.wave_length(codes.shape[-1]) <= 0:
            raise InputError(f"{codes.shape[-1]} frame(s) are too few to decode; pass at least {self._min_frames()}")
        hidden = self.transformer(self.embed(codes))  # (B, T, D)
        return self.vocode(hidden.transpose(1, 2))

    def _min_frames(self) -> int:
        n = 1
        while self.wave_length(n) <= 0:
            n += 1
        return n

    def chunked_decode(self, codes: torch.Tensor, chunk_size: int = 300, left_context: int = 25) -> torch.Tensor:
        """The reference's chunking: decode `chunk_size` frames at a time, each with up to `left_context` frames
        before it re-decoded and cut away. Bounded memory, but not equal to `forward` (see the module docstring).
        """
        codes = self.check_codes(codes)
        chunk_size = integer("chunk_size", chunk_size, 1, what="a positive number of frames")
        left_context = integer("left_context", left_context, 0, what="a non-negative number of frames")
        pieces, start, T = [], 0, codes.shape[-1]
        while start < T:
            end = min(start + chunk_size, T)
            context = min(left_context, start)
            wav = self(codes[..., start - context : end])
            pieces.append(wav[..., context * self.samples_per_frame :])
            start = end
        return torch.cat(pieces, dim=-1)

    def streamer(self) -> "Code2WavStream":
        """A fresh stateful decoder: push frames as they come, get the waveform samples they determine."""
        return Code2WavStream(self)

    def stream_decode(
        self, codes: torch.Tensor | Iterable[torch.Tensor], chunk_size: int = 25
    ) -> Iterator[torch.Tensor]:
        """Yield waveform pieces (B, 1, n) whose concatenation equals `forward` on all the frames.

        `codes` is a whole (B, Q, T) tensor or an iterable of (B, Q, t) pieces (e.g. frames as the Talker makes
        them); frames are decoded `chunk_size` at a time (the last group may be shorter).
        """
        chunk_size = integer("chunk_size", chunk_size, 1, what="a positive number of frames")
        pieces = [codes] if isinstance(codes, torch.Tensor) else codes
        stream, pending, held = self.streamer(), [], 0
        for piece in pieces:
            piece = self.check_codes(piece)
            pending.append(piece)
            held += piece.shape[-1]
            while held >= chunk_size:
                block = torch.cat(pending, dim=-1)
                wav = stream.push(block[..., :chunk_size])
                pending, held = [block[..., chunk_size:]], held - chunk_size
                if wav.shape[-1]:
                    yield wav
        if held:
            wav = stream.push(torch.cat(pending, dim=-1))
            if wav.shape[-1]:
                yield wav


class Code2WavStream:
    """Incremental Code2Wav for one batch of sequences; `push(codes)` returns the newly determined samples.

    State: a sliding-window key/value cache per transformer layer, and the transformer outputs of the last few
    frames that the convolutional part still needs (its left receptive field).
    """

    def __init__(self, model: Code2Wav):
        self.model = model
        self.caches = [WindowCache(model.cfg.sliding_window) for _ in model.transformer.layers]
        self.frames = 0  # frames pushed so far
        self.emitted = 0  # samples returned so far
        self.hidden = None  # (B, D, frames - first) transformer outputs kept for the convolutions
        self.first = 0  # frame index of hidden[..., 0]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        m = self.model
        codes = m.check_codes(codes)
        if self.hidden is not None and codes.shape[0] != self.hidden.shape[0]:
            raise InputError(f"this stream decodes a batch of {self.hidden.shape[0]}, got codes for {codes.shape[0]}")
        if codes.shape[-1] == 0:
            return self._empty(codes)
        new = m.transformer(m.embed(codes), start=self.frames, caches=self.caches).transpose(1, 2)  # (B, D, t)
        self.hidden = new if self.hidden is None else torch.cat((self.hidden, new), dim=-1)
        self.frames += codes.shape[-1]
        end = m.wave_length(self.frames)  # every sample before `end` is final
        if end <= self.emitted:
            return self._empty(codes)
        # re-decode from the earliest frame the next sample depends on; left zero padding before that frame
        # then cannot reach any sample we keep
        start = max(0, m.first_frame_needed(self.emitted))
        hidden = self.hidden[..., start - self.first :]
        wav = m.vocode(hidden)[..., self.emitted - start * m.samples_per_frame :]  # (B, 1, end - emitted)
        self.emitted = end
        # drop what no future sample can need
        keep_from = max(0, m.first_frame_needed(end))
        self.hidden, self.first = self.hidden[..., keep_from - self.first :], keep_from
        return wav

    def _empty(self, codes):
        return torch.zeros(codes.shape[0], 1, 0, dtype=self.model.code_embedding.weight.dtype, device=codes.device)
