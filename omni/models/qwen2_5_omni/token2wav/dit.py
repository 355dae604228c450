"""The Qwen2.5-Omni DiT: a flow-matching mel generator conditioned on codec codes and a speaker.

A velocity field v(x, t) moves Gaussian noise (t = 0) to a mel spectrogram (t = 1); `sample` integrates it with a
fixed-step Runge-Kutta (3/8 rule) solver. One evaluation of v:

    input  [x (mel) | ECAPA(reference mel) | codec embedding (each code repeated `repeats` times) | x-vector]
           -> input_proj                                                                    (B, T, D)
    blocks x depth, each modulated by the time embedding (adaptive LayerNorm, "AdaLN-Zero"):
           x += gate_a * attn(LN(x) * (1 + scale_a) + shift_a)
           x += gate_f * ffn(LN(x) * (1 + scale_f) + shift_f)
    out    LN(x) * (1 + scale) + shift -> proj_out                                          (B, T, mel)

Attention is block-local: frames are grouped in blocks of `block_size`; a frame sees its own block, plus the
previous block in the `look_backward_layers` and the next one in the `look_ahead_layers` (what makes chunked
streaming possible). Rotary positions are applied to the *first head only*, on adjacent element pairs (2j, 2j+1):
that is how the released weights were trained.

Classifier-free guidance: the unconditional branch sees no speaker (zero x-vector and zero reference mel) and
code 0 everywhere; v = v_cond + guidance_scale * (v_cond - v_uncond). Both branches run as one batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ....errors import InputError
from ....nn import RotaryEmbedding, apply_rope, sdpa
from ....nn.mlp import MLP
from ..config import DiTConfig
from .ecapa import SpeakerEncoder


class TimestepEmbedding(nn.Module):
    """t in [0, 1] (B,) -> (B, D): sinusoids of 1000 t (256 of them), then fc2(silu(fc1(.)))."""

    FREQS = 256
    SCALE = 1000.0

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(self.FREQS, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.FREQS // 2
        freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
        angles = self.SCALE * t[:, None].float() * freqs[None]  # (B, half)
        emb = torch.cat((angles.sin(), angles.cos()), dim=-1).to(t.dtype)
        return self.fc2(F.silu(self.fc1(emb)))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine weights, then a per-row affine from the time embedding. x (B, T, D), shift (B, D)."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def pairs_to_halves(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (x0, x2, ..., x1, x3, ...): adjacent-pair rotary becomes rotate-half rotary."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


class DiTAttention(nn.Module):
    """Biased q/k/v/o projections, rotary on head 0 only, non-causal attention under a block mask."""

    def __init__(self, dim: int, n_heads: int, head_dim: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim)
        self.k_proj = nn.Linear(dim, n_heads * head_dim)
        self.v_proj = nn.Linear(dim, n_heads * head_dim)
        self.o_proj = nn.Linear(n_heads * head_dim, dim)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q, k, v = (p(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, T, Dh)
        # head 0 is rotated after regrouping its pairs; q and k are permuted alike, so their dot products are those
        # of pairwise rotation in the original layout
        q0 = apply_rope(pairs_to_halves(q[:, :1]), cos, sin)
        k0 = apply_rope(pairs_to_halves(k[:, :1]), cos, sin)
        q, k = torch.cat((q0, q[:, 1:]), dim=1), torch.cat((k0, k[:, 1:]), dim=1)
        out = sdpa(q, k, v, mask)  # (B, H, T, Dh)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig, look_backward: int, look_ahead: int):
        super().__init__()
        d = cfg.hidden_size
        self.look_backward, self.look_ahead = look_backward, look_ahead  # blocks seen beyond a frame's own
        self.attn_modulation = nn.Linear(d, 6 * d)  # -> shift, scale, gate (attention), shift, scale, gate (ffn)
        self.attn = DiTAttention(d, cfg.num_attention_heads, cfg.head_dim)
        self.ffn = MLP(d, d * cfg.ff_mult, act="gelu_pytorch_tanh")

    def forward(self, x, t_emb, cos, sin, block_diff):
        """x (B, T, D); t_emb (B, D); block_diff (T, T): key block minus query block."""
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.attn_modulation(F.silu(t_emb)).chunk(6, dim=1)
        mask = (block_diff >= -self.look_backward) & (block_diff <= self.look_ahead)  # (T, T), True = may attend
        x = x + gate_a[:, None] * self.attn(modulate(x, shift_a, scale_a), cos, sin, mask)
        return x + gate_f[:, None] * self.ffn(modulate(x, shift_f, scale_f))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.time_embed = TimestepEmbedding(d)
        self.codec_embed = nn.Embedding(cfg.num_embeds + 1, cfg.emb_dim)  # row 0 doubles as "no code" (guidance)
        self.speaker_encoder = SpeakerEncoder(cfg)
        self.input_proj = nn.Linear(cfg.mel_dim + cfg.enc_dim + cfg.emb_dim + cfg.enc_emb_dim, d)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.theta)
        self.blocks = nn.ModuleList(
            DiTBlock(cfg, int(i in cfg.look_backward_layers), int(i in cfg.look_ahead_layers))
            for i in range(cfg.num_hidden_layers)
        )
        self.final_modulation = nn.Linear(d, 2 * d)  # -> scale, shift
        self.proj_out = nn.Linear(d, cfg.mel_dim)

    def condition(self, codes, speaker, reference_mel, guidance: bool) -> torch.Tensor:
        """The time-invariant part of every input vector, computed once per `sample`.

        codes (B, N) long; speaker (B, enc_emb_dim) x-vector; reference_mel (B, T_ref, mel_dim).
        Returns (B', N * repeats, enc_dim + emb_dim + enc_emb_dim); B' = 2B with guidance (conditional rows first).
        """
        T = codes.shape[1] * self.cfg.repeats
        code_emb = self.codec_embed(codes).repeat_interleave(self.cfg.repeats, dim=1)  # (B, T, emb_dim)
        if guidance:  # unconditional rows: no speaker, no reference mel, code 0 everywhere
            code_emb = torch.cat([code_emb, self.codec_embed(torch.zeros_like(codes)).repeat_interleave(
                self.cfg.repeats, dim=1)])
            speaker = torch.cat([speaker, torch.zeros_like(speaker)])
            reference_mel = torch.cat([reference_mel, torch.zeros_like(reference_mel)])
        voice = self.speaker_encoder(reference_mel)  # (B', enc_dim)
        return torch.cat([voice[:, None].expand(-1, T, -1), code_emb, speaker[:, None].expand(-1, T, -1)], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Velocity. x (B', T, mel) noisy mel; t (B',) or a scalar; cond from `condition` (B', T, C). -> (B', T, mel)."""
        B, T, _ = x.shape
        t_emb = self.time_embed(t.reshape(-1).expand(B))  # (B', D)
        h = self.input_proj(torch.cat([x, cond], dim=-1))
        positions = torch.arange(T, device=x.device)[None]  # (1, T)
        cos, sin = self.rope(positions, h.dtype)
        block = torch.arange(T, device=x.device) // self.cfg.block_size
        block_diff = block[None, :] - block[:, None]  # (T, T)
        for blk in self.blocks:
            h = blk(h, t_emb, cos, sin, block_diff)
        scale, shift = self.final_modulation(F.silu(t_emb)).chunk(2, dim=1)
        return self.proj_out(modulate(h, shift, scale))

    @torch.no_grad()
    def sample(
        self,
        codes: torch.Tensor,
        speaker: torch.Tensor,
        reference_mel: torch.Tensor,
        noise: torch.Tensor | None = None,
        num_steps: int = 10,
        guidance_scale: float = 0.5,
        sway_coefficient: float | None = -1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """codes (B, N) -> mel (B, mel_dim, N * repeats), natural-log amplitude.

        speaker (B, enc_emb_dim) x-vector; reference_mel (B, T_ref, mel_dim); noise (B, N * repeats, mel_dim): the
        starting point (default: a standard normal draw from `generator`). The solver steps between `num_steps` time
        points from 0 to 1, which `sway_coefficient` (-1: t -> 1 - cos(pi t / 2)) bunches near t = 0, where the
        velocity changes fastest.
        """
        c = self.cfg
        B, N = codes.shape
        T = N * c.repeats
        if T > c.max_position_embeddings:
            raise InputError(
                f"{N} codes make {T} mel frames, more than dit max_position_embeddings "
                f"({c.max_position_embeddings}); decode the codes in shorter pieces"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > c.num_embeds):
            raise InputError(
                f"codes must lie in 0..{c.num_embeds} (the DiT's codec table), got {int(codes.min())}.."
                f"{int(codes.max())}; cut Talker output at its first control code (codec pad / end)"
            )
        if speaker.shape != (B, c.enc_emb_dim) or reference_mel.dim() != 3 or reference_mel.shape[::2] != (
                B, c.mel_dim):
            raise InputError(
                f"speaker must be ({B}, {c.enc_emb_dim}) and reference_mel ({B}, frames, {c.mel_dim}); got "
                f"{tuple(speaker.shape)} and {tuple(reference_mel.shape)}"
            )
        if num_steps < 2:
            raise InputError(f"num_steps must be >= 2 (time points from 0 to 1), got {num_steps}")
        dtype = reference_mel.dtype
        if noise is None:
            noise = torch.randn(B, T, c.mel_dim, generator=generator, dtype=dtype, device=codes.device)
        if noise.shape != (B, T, c.mel_dim):
            raise InputError(f"noise must have shape {(B, T, c.mel_dim)}, got {tuple(noise.shape)}")
        guidance = guidance_scale >= 1e-5
        cond = self.condition(codes, speaker, reference_mel, guidance)

        def velocity(t, x):
            if not guidance:
                return self(x, t, cond)
            v_cond, v_uncond = self(torch.cat([x, x]), t, cond).chunk(2)
            return v_cond + (v_cond - v_uncond) * guidance_scale

        times = torch.linspace(0, 1, num_steps, device=codes.device, dtype=dtype)
        if sway_coefficient is not None:
            times = times + sway_coefficient * (torch.cos(torch.pi / 2 * times) - 1 + times)
        x = noise
        for t0, t1 in zip(times[:-1], times[1:]):
            x = x + rk38_step(velocity, t0, t1, x)
        return x.transpose(1, 2)


def rk38_step(f, t0: torch.Tensor, t1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The increment of one Runge-Kutta step by Kutta's 3/8 rule (4 evaluations, 4th order)."""
    dt = t1 - t0
    k1 = f(t0, x)
    k2 = f(t0 + dt * (1 / 3), x + dt * k1 * (1 / 3))
    k3 = f(t0 + dt * (2 / 3), x + dt * (k2 - k1 * (1 / 3)))
    k4 = f(t1, x + dt * (k1 - k2 + k3))
    return (k1 + 3 * (k2 + k3) + k4) * dt / 8
