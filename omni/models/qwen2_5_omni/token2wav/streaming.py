"""Streaming Token2Wav: codes in as the Talker says them, waveform pieces out long before the reply is finished.

The geometry is the release's own streaming decoder (the official Qwen2.5-Omni low-latency Token2Wav), in DiT
blocks of `block_size` mel frames (24 in the release, two mel frames per code):

    mel frames   .. | past (2 blocks) | chunk (3 blocks), kept | future (1 block) | ..
    DiT          solves the ODE on that window, starting from the noise the whole decode would start from at
                 those frames, and keeps the chunk; the next window starts `past` blocks before the next chunk
    BigVGAN      vocodes the kept mel with `vocoder_context` mel frames (20) of mel on each side and keeps the
                 middle: the last `vocoder_context` frames of a piece wait for the next chunk's mel

Why the default context: attention in the DiT is block-local. One velocity evaluation of a frame reads its own
block, one block back in each look-backward layer and one block ahead in each look-ahead layer. The default past
and future are exactly that reach (the number of look-backward / look-ahead layers: 2 and 1 in the release, the
official 48 and 24 mel frames), so each single evaluation is exact on the chunk given the window's state. The ODE
solve as a whole is not: the window's outer frames are solved without their own neighbours and their error reaches
the chunk one evaluation at a time; BigVGAN's receptive field is also wider than 20 frames (its far taps weigh
little). docs/generation.md reports the measured difference from the whole decode. A reply that never fills one
chunk and its future is decoded in a single window: then the streamed audio *is* the whole decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

from ....checks import integer
from ....errors import ConfigError, InputError

NOISE_PAGE = 16  # mel frames of starting noise drawn at a time (see Token2WavStream._noise)
MAX_VOCODER_CONTEXT = 1000  # mel frames (10 s): far beyond BigVGAN's receptive field


@dataclass(frozen=True)
class StreamPlan:
    """Chunk geometry: DiT blocks kept per chunk, blocks of context before / after it; vocoder context in mel
    frames on each side of the mel it vocodes."""

    chunk_blocks: int
    past_blocks: int
    future_blocks: int
    vocoder_context: int


def stream_plan(dit_cfg, chunk_blocks=3, past_blocks=None, future_blocks=None, vocoder_context=20) -> StreamPlan:
    """Checked chunk options; defaults are the release's streaming decoder (3 blocks per chunk, the DiT's one-
    evaluation reach as context, 20 mel frames of vocoder context). Out-of-range values raise InputError."""
    if dit_cfg.block_size % dit_cfg.repeats:
        raise ConfigError(
            f"streaming cuts the codes at DiT block edges: dit block_size ({dit_cfg.block_size}) must be a multiple "
            f"of repeats ({dit_cfg.repeats}); decode with Token2Wav(...) in one piece instead"
        )
    layers = range(dit_cfg.num_hidden_layers)
    reach_back = sum(i in dit_cfg.look_backward_layers for i in layers)  # blocks one evaluation reads behind
    reach_ahead = sum(i in dit_cfg.look_ahead_layers for i in layers)
    most = dit_cfg.max_position_embeddings // dit_cfg.block_size  # a window must fit the DiT's positions
    chunk_blocks = integer("chunk_blocks", chunk_blocks, 1, most, what=f"an integer in [1, {most}] (DiT blocks)")
    past = integer("past_blocks", reach_back if past_blocks is None else past_blocks, 0, most,
                   what=f"an integer in [0, {most}] (DiT blocks of left context)")
    future = integer("future_blocks", reach_ahead if future_blocks is None else future_blocks, 0, most,
                     what=f"an integer in [0, {most}] (DiT blocks of look-ahead)")
    if past + chunk_blocks + future > most:
        raise InputError(
            f"past_blocks + chunk_blocks + future_blocks = {past + chunk_blocks + future} blocks of "
            f"{dit_cfg.block_size} mel frames exceed the DiT's max_position_embeddings "
            f"({dit_cfg.max_position_embeddings}); use fewer blocks"
        )
    context = integer("vocoder_context", vocoder_context, 0, MAX_VOCODER_CONTEXT,
                      what=f"an integer in [0, {MAX_VOCODER_CONTEXT}] (mel frames)")
    return StreamPlan(chunk_blocks, past, future, context)


class Token2WavStream:
    """A stateful streaming decoder (module docstring): `push` codes as they come, `finish` at the end; each
    returns the waveform samples (B, n) that became final, n possibly 0. Concatenated, the pieces cover
    codes * samples_per_code samples, like `Token2Wav.forward`.

    conditioning (B, enc_emb_dim) and reference_mel (B, T, mel_dim): the voice, as Token2Wav.forward takes it.
    noise (B, >= frames, mel_dim): the ODE's starting point at every mel frame (default: drawn from `generator`,
    or torch's global generator, 16 frames at a time as frames are needed; for 16 values per frame or more the
    draws are those of one `torch.randn` over all frames, which is what the whole decode draws).
    sampling: num_steps, guidance_scale, sway_coefficient, as DiT.sample takes them.
    """

    def __init__(self, token2wav, conditioning, reference_mel, plan: StreamPlan, noise=None, generator=None,
                 **sampling):
        c = token2wav.cfg.dit_config
        self.token2wav, self.plan, self.sampling = token2wav, plan, sampling
        self.repeats, self.block = c.repeats, c.block_size
        self.cond, self.reference_mel = conditioning, reference_mel
        B, device, dtype = conditioning.shape[0], conditioning.device, conditioning.dtype
        self.batch, self.mel_dim, self.generator = B, c.mel_dim, generator
        if noise is not None and (noise.dim() != 3 or noise.shape[0] != B or noise.shape[2] != c.mel_dim):
            raise InputError(f"noise must be ({B}, frames, {c.mel_dim}), got {tuple(noise.shape)}")
        self.fixed_noise = noise
        # What is kept, each with the index of its first column: codes from the next window's start, noise from
        # the same frame, final mel from `vocoder_context` frames before the first sample not yet emitted.
        self.codes, self.codes_start = torch.zeros(B, 0, dtype=torch.long, device=device), 0
        self.noise, self.noise_start = torch.zeros(B, 0, c.mel_dim, dtype=dtype, device=device), 0
        self.mel, self.mel_start = torch.zeros(B, c.mel_dim, 0, dtype=dtype, device=device), 0
        self.done = 0  # mel frames the DiT has finished
        self.emitted = 0  # mel frames whose samples have been returned
        self.finished = False

    @property
    def known(self) -> int:
        """Mel frames the codes pushed so far determine."""
        return (self.codes_start + self.codes.shape[1]) * self.repeats

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n) long -> the newly final samples (B, m)."""
        if self.finished:
            raise InputError("this stream is finished; start a new one with token2wav.streamer(...)")
        if not torch.is_tensor(codes) or codes.dim() != 2 or codes.shape[0] != self.batch:
            shape = tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__
            raise InputError(f"push codes as a ({self.batch}, n) tensor, got {shape}")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise InputError(f"codes must be integer ids, got dtype {codes.dtype}")
        self.codes = torch.cat([self.codes, codes.to(self.codes.device, torch.long)], 1)
        p, pieces = self.plan, []
        chunk, future = p.chunk_blocks * self.block, p.future_blocks * self.block
        while self.known >= self.done + chunk + future:
            pieces.append(self._solve(self.done + chunk, self.done + chunk + future))
        return self._cat(pieces)

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        """The rest of the samples (B, m): the last window (up to the last code), then the held-back tail."""
        if self.finished:
            raise InputError("this stream is already finished")
        self.finished = True
        if self.done < self.known:
            return self._solve(self.known, self.known, final=True)
        return self._vocode(final=True)

    # -- internals ----------------------------------------------------------------------------------------------

    def _solve(self, end: int, window_end: int, final: bool = False) -> torch.Tensor:
        """Run the DiT on [done - past, window_end), keep mel frames [done, end), vocode what became final."""
        start = max(0, self.done - self.plan.past_blocks * self.block)  # a block edge: blocks stay aligned
        r, c0 = self.repeats, self.codes_start
        codes = self.codes[:, start // r - c0: window_end // r - c0]  # (B, window frames / r)
        mel = self.token2wav.dit.sample(codes, self.cond, self.reference_mel, noise=self._noise(start, window_end),
                                        **self.sampling)  # (B, mel_dim, window frames)
        self.mel = torch.cat([self.mel, mel[..., self.done - start: end - start]], -1)
        self.done = end
        # the next window starts `past` blocks before the next chunk: nothing before it is read again
        keep = max(0, end - self.plan.past_blocks * self.block)
        self.codes, self.codes_start = self.codes[:, keep // r - c0:], keep // r
        self.noise, self.noise_start = self.noise[:, keep - self.noise_start:], keep
        return self._vocode(final)

    def _noise(self, start: int, end: int) -> torch.Tensor:
        """The starting noise of mel frames [start, end) (B, end - start, mel_dim)."""
        if self.fixed_noise is not None:
            if end > self.fixed_noise.shape[1]:
                raise InputError(f"the noise covers {self.fixed_noise.shape[1]} mel frames; the codes need {end}")
            return self.fixed_noise[:, start:end].to(self.cond)
        while self.noise_start + self.noise.shape[1] < end:
            # pages of 16 frames: whole groups of 16 values, which torch's CPU normal sampler fills in order, so
            # for mel_dim >= 16 (80 in the release) the pages equal one draw over all frames
            page = torch.randn(self.batch, NOISE_PAGE, self.mel_dim, generator=self.generator,
                               dtype=self.noise.dtype, device=self.noise.device)
            self.noise = torch.cat([self.noise, page], 1)
        return self.noise[:, start - self.noise_start: end - self.noise_start]

    def _vocode(self, final: bool) -> torch.Tensor:
        """BigVGAN over the final mel not yet emitted plus `vocoder_context` frames each side -> samples (B, m)."""
        ctx = self.plan.vocoder_context
        end = self.done if final else self.done - ctx  # the last ctx frames wait for their right context
        if end <= self.emitted:
            return self._cat([])
        start = max(0, self.emitted - ctx)
        wave = self.token2wav.bigvgan(self.mel[..., start - self.mel_start: self.done - self.mel_start])
        hop = self.token2wav.bigvgan.hop_length
        out = wave[:, (self.emitted - start) * hop: (end - start) * hop]  # (B, (end - emitted) * hop)
        self.emitted = end
        drop = max(0, end - ctx) - self.mel_start  # frames no later call vocodes
        self.mel, self.mel_start = self.mel[..., drop:], self.mel_start + drop
        return out

    def _cat(self, pieces: list) -> torch.Tensor:
        return torch.cat(pieces, -1) if pieces else self.mel.new_zeros(self.batch, 0)


def stream_decode(stream: Token2WavStream, codes: torch.Tensor | Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Feed a whole (B, N) tensor or an iterable of (B, n) pieces through `stream`; yield the non-empty pieces."""
    for piece in [codes] if torch.is_tensor(codes) else codes:
        wave = stream.push(piece)
        if wave.shape[-1]:
            yield wave
    wave = stream.finish()
    if wave.shape[-1]:
        yield wave
