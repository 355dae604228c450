"""A video's own sound track inside the prompt (`use_audio_in_video`): how its audio tokens and its frames' tokens
are interleaved. The processor writes the placeholders in this order and the position walk (omni.positions)
assigns positions in the same order, so both sides live here, each in both releases' rule:

    by time      (Qwen3-Omni)    video grid g sits at time g * seconds_per_grid * position_id_per_seconds, audio
                                 token j at time j; merged by time, video first on ties
    by chunks    (Qwen2.5-Omni)  chunks of seconds_per_chunk: the video tokens of chunk 0, the audio tokens of
                                 chunk 0, the video tokens of chunk 1, ...

Which rule a release uses is one value of its `TimeRules` (`av_chunks`).
"""

from __future__ import annotations

import math

import torch


def interleave_tokens_by_time(grid_thw, n_audio: int, seconds_per_grid: float, per_second: float, merge: int,
                           video: str, audio: str) -> list[str]:
    """Placeholder order for a video with its sound track: each temporal grid's h·w/merge² video tokens sit at
    time t·seconds_per_grid·per_second (in position ids), audio token j sits at time j; a video grid goes before
    an audio token of the same time. Returns the token strings (without the surrounding audio start/end)."""
    t, h, w = (int(x) for x in grid_thw)
    per_grid = (h // merge) * (w // merge)
    out, emitted = [], 0
    for ti in range(t):
        start = ti * seconds_per_grid * per_second
        # audio tokens strictly earlier than this grid's time come first
        upto = min(n_audio, max(emitted, math.ceil(start)))
        out += [audio] * (upto - emitted)
        emitted = upto
        out += [video] * per_grid
    out += [audio] * (n_audio - emitted)
    return out


def interleave_tokens_by_chunks(grid_thw, n_audio: int, seconds_per_grid: float, per_second: float, merge: int,
                                  seconds_per_chunk: float, video: str, audio: str) -> list[str]:
    """Qwen2.5-Omni's placeholder order for a video with its sound track: the video tokens of chunk 0, the audio
    tokens of chunk 0, then chunk 1, ... (chunks of seconds_per_chunk, cut like the position ids are; see
    `chunk_slices`). Returns the token strings (without the surrounding audio start/end)."""
    t, h, w = (int(x) for x in grid_thw)
    per_grid = (h // merge) * (w // merge)
    units = int(per_second * seconds_per_chunk)
    video_times = torch.arange(t, dtype=torch.float64).repeat_interleave(per_grid) * seconds_per_grid * per_second
    video_chunks = chunk_slices(video_times, units)
    audio_chunks = chunk_slices(torch.arange(n_audio), units)
    out = []
    for j in range(max(len(video_chunks), len(audio_chunks))):
        if j < len(video_chunks):
            out += [video] * (video_chunks[j].stop - video_chunks[j].start)
        if j < len(audio_chunks):
            out += [audio] * (audio_chunks[j].stop - audio_chunks[j].start)
    return out


def chunk_slices(times: torch.Tensor, units: int, start=0) -> list[slice]:
    """Cut a time-sorted run into chunks of `units` position units from `start`, as the Qwen2.5 reference does
    (its processor lays the tokens out by these chunks, its position ids follow them).

    Chunk k closes at the first token at or past (k + 1) * units; one token can close only one chunk, so a jump
    across several chunk borders leaves one-token chunks behind (kept: the interleaving order depends on them).
    """
    out, first, k = [], 0, 1
    for i, value in enumerate((times - start).tolist()):
        if value >= k * units:
            out.append(slice(first, i))
            first, k = i, k + 1
    out.append(slice(first, len(times)))
    return out


def merge_positions_by_time(video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleave video (3, V) and audio (3, A) positions by their time row, video first on ties.

    Both runs are already sorted by time, so a stable sort of [video, audio] is exactly the two-way merge.
    Returns the merged (3, V + A) and its tail: the last stretch that came from one stream only, left over once
    the other stream ran out. The reference starts the end markers after the tail's largest id, not the block's
    (they differ when a frame's rows/columns outrun a short audio track), and so do we.
    """
    order = torch.argsort(torch.cat([video[0], audio[0]]), stable=True)
    merged = torch.cat([video, audio], dim=1)[:, order]
    from_audio = order >= video.shape[1]  # (V + A,) which stream each merged token came from
    switches = (from_audio != from_audio[-1]).nonzero()
    tail_start = int(switches[-1]) + 1 if len(switches) else 0
    return merged, merged[:, tail_start:]


def interleave_positions_by_chunks(video: torch.Tensor, audio: torch.Tensor, units: int, start):
    """Video chunk 0, audio chunk 0, video chunk 1, ...: (3, V + A) and the last piece taken (the tail)."""
    video_chunks, audio_chunks = chunk_slices(video[0], units, start), chunk_slices(audio[0], units, start)
    pieces = []
    for j in range(max(len(video_chunks), len(audio_chunks))):
        if j < len(video_chunks):
            pieces.append(video[:, video_chunks[j]])
        if j < len(audio_chunks):
            pieces.append(audio[:, audio_chunks[j]])
    return torch.cat(pieces, dim=1), pieces[-1]
