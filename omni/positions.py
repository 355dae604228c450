"""Position ids for the Thinker and Talker decoders (the one source of truth for position arithmetic).

Qwen3-Omni rotates queries and keys with three position rows (t, h, w) per token: "TMRoPE", time-aligned
multimodal rotary embedding. A prompt is walked left to right and every token gets a (t, h, w) triple:

- text and special tokens: one new position each, the same on all three rows;
- an image: a grid of (H/m) x (W/m) merged patches, all at time `start`, row/column `start + r`, `start + c`;
- a video: like an image per temporal grid, its time row advanced by
  `frame * second_per_grid * position_id_per_seconds` (kept as a float: 13 position units per second);
- an audio clip: one new position per audio token (a token covers 80 ms of sound);
- a video with its audio track inside (`use_audio_in_video`): the video grid and the audio run both start at the
  same position and their tokens are merged by time (video first on ties), so sound and picture line up.

After an item, the next token continues at (largest id of the item's last run) + 1, so positions can be fractional
and can run "ahead" of the token count. `rope_deltas = (largest id + 1) - real token count` carries that lead into
decoding: the token after `n` real tokens sits at `n + delta` on all three rows.

Token layout, as the official processor writes it (`<vs>`/`<ve>` vision start/end, `<as>`/`<ae>` audio start/end):

    image:            <vs> <image>*N <ve>
    video:            <vs> <video>*N <ve>
    audio:            <as> <audio>*N <ae>
    audio-in-video:   <vs> <as> (<video>|<audio>)* merged by time <ae> <ve>

Qwen2.5-Omni (its `Release.time_rules`, a `TimeRules` value) differs in four details: video times are truncated to whole
position units (25 per second); its audio tokens are 40 ms each; audio-in-video is interleaved in *chunks* of
`seconds_per_chunk` (the video tokens of chunk j, then the audio tokens of chunk j, ...), with the two start
markers sharing one position and the two end markers another; padding gets position 1 in the multimodal walk.

Everything here is computed in float32 step by step in the same order as the reference implementation, so the
results are bit-identical to it (fractional video times make the rounding order matter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import MediaTokens, ThinkerConfig
from .errors import ConfigError, InputError
from .interleave import interleave_positions_by_chunks, merge_positions_by_time
from .release import release_of

def text_position_ids(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-only prompts: consecutive positions over the real tokens of each row.

    Returns position ids (3, B, T) and the rope delta (B, 1) that continues them during generation
    (next position = cache length + delta). Padding positions get 1, as in the reference.
    """
    pos = attention_mask.float().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    delta = pos.max(-1, keepdim=True).values + 1 - attention_mask.sum(-1, keepdim=True)
    return pos[None].expand(3, -1, -1), delta


def next_position_ids(rope_deltas: torch.Tensor, past_length, num_new: int = 1) -> torch.Tensor:
    """Positions of `num_new` tokens appended during decoding: (3, B, num_new), the same on all three rows.

    past_length: real (non-padding) tokens already in each row, an int or a (B, 1) tensor (with left padding use
    `attention_mask.sum(-1, keepdim=True)` of the mask *before* the new tokens). rope_deltas: (B, 1) from
    `rope_index` / `text_position_ids`. Token k of the new ones sits at past_length + delta + k.
    """
    steps = torch.arange(num_new, device=rope_deltas.device, dtype=torch.float32)
    pos = past_length + rope_deltas.float() + steps  # (B, num_new)
    return pos[None].expand(3, -1, -1)


@dataclass(frozen=True)
class TimeRules:
    """The release-specific parts of the position walk (see the module docstring): one value per release
    (`Release.time_rules`); the defaults are Qwen3-Omni's."""

    integer_times: bool = False  # truncate video times to whole position units (Qwen2.5)
    av_chunks: bool = False  # audio-in-video: interleave in chunks of seconds_per_chunk (Qwen2.5), else merge by time
    shared_markers: bool = False  # audio-in-video: both start (end) markers at one position (Qwen2.5)
    padding_position: int = 0  # position of padding tokens in the multimodal walk


QWEN3_TIME_RULES = TimeRules()


@dataclass(frozen=True)
class _Ids:
    image: int
    video: int
    audio: int
    vision_start: int
    audio_start: int


@dataclass
class _Item:
    """One media item of a row: where it starts, how many tokens it spans, and its sizes."""

    kind: str  # "image" | "video" | "audio" | "audio_in_video"
    at: int  # index of its first start marker in the row's real tokens
    markers: int  # start markers = end markers (2 for audio-in-video: vision + audio, else 1)
    n_body: int  # placeholder tokens between the markers
    grid: tuple[int, int, int] | None = None  # image / video: (t, h, w) in vision patches
    seconds: torch.Tensor | int = 1  # video: seconds per temporal grid (float32); a still image sits at time 0
    n_audio: int = 0  # audio / audio-in-video: audio tokens

    @property
    def end(self) -> int:
        return self.at + 2 * self.markers + self.n_body


def rope_index(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    image_grid_thw=None,
    video_grid_thw=None,
    video_second_per_grid=None,
    audio_seqlens=None,
    use_audio_in_video: bool = False,
    spatial_merge_size: int,
    image_token_id: int,
    video_token_id: int,
    audio_token_id: int,
    vision_start_token_id: int,
    audio_start_token_id: int,
    position_id_per_seconds: float,
    seconds_per_chunk: float = 2.0,
    rules: TimeRules = QWEN3_TIME_RULES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TMRoPE position ids of a prompt batch: (position_ids (3, B, T) float32, rope_deltas (B, 1) float32).

    input_ids (B, T) and attention_mask (B, T) (1 = real token; any padding side). Media are listed in prompt
    order over the whole batch: image_grid_thw (n_images, 3) and video_grid_thw (n_videos, 3) in vision patches
    (before the m x m merge), video_second_per_grid (n_videos,) seconds per temporal grid, audio_seqlens (n_audios,)
    audio *token* counts (see `audio_token_count` to get them from mel frame counts). Audio tracks inside videos
    count as audios, in order.

    Like the reference, the multimodal walk runs only when image or video grids are given (possibly empty); without
    them every row gets plain text positions (`text_position_ids`, padding at 1). In the multimodal walk padding
    positions are `rules.padding_position` (0 for Qwen3-Omni). `rules`: the release's time rules
    (`Release.time_rules`); `seconds_per_chunk` is their audio-in-video chunk when `rules.av_chunks`.

    `use_audio_in_video=False` with a video laid out around its audio track is an error. With it True, a plain
    video (one without audio inside, e.g. a silent clip) is positioned as a plain video (the reference only
    handles all-or-none).

    Worked example (m = 2, position_id_per_seconds = 13, one video of grid (2, 4, 4) at 0.5 s per grid, then text):

        tokens   x   <vs>  <video>*8              <ve>  y
        t        0   1     2 2 2 2  8.5 8.5 8.5 8.5  9.5   10.5
        h        0   1     2 2 3 3  2   2   3   3    9.5   10.5
        w        0   1     2 3 2 3  2   3   2   3    9.5   10.5

    The second frame sits 0.5 * 13 = 6.5 later in time; the end marker follows the block's largest id (8.5), and
    rope_deltas = 10.5 + 1 - 12 tokens = -0.5, so a generated 13th token would sit at 12 + (-0.5) = 11.5.
    """
    if input_ids.dim() != 2:
        raise InputError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
    B, T = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise InputError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
        )
    if image_grid_thw is None and video_grid_thw is None:
        return text_position_ids(attention_mask)

    ids = _Ids(image_token_id, video_token_id, audio_token_id, vision_start_token_id, audio_start_token_id)
    images = _as_grid(image_grid_thw, "image_grid_thw", spatial_merge_size)
    videos = _as_grid(video_grid_thw, "video_grid_thw", spatial_merge_size)
    seconds = _as_seconds(video_second_per_grid, len(videos))
    audios = [] if audio_seqlens is None else [int(n) for n in torch.as_tensor(audio_seqlens).reshape(-1).tolist()]
    if any(n <= 0 for n in audios):
        raise InputError(f"audio_seqlens must be positive token counts, got {audios}")

    mask = attention_mask.bool().cpu()
    rows = input_ids.cpu()
    position_ids = torch.full((3, B, T), float(rules.padding_position), dtype=torch.float32)
    deltas = torch.zeros(B, 1, dtype=torch.float32)
    media = {"image": images, "video": videos, "seconds": seconds, "audio": audios}
    cursor = {"image": 0, "video": 0, "audio": 0}  # next unused entry of each media list, across the batch
    for b in range(B):
        tokens = rows[b][mask[b]].tolist()
        if not tokens:
            raise InputError(f"row {b} of the batch has no real tokens (attention_mask is all 0)")
        items = _find_items(tokens, ids, use_audio_in_video, media, cursor, spatial_merge_size, b)
        av_chunk = int(position_id_per_seconds * seconds_per_chunk) if rules.av_chunks else None
        pos = _walk(len(tokens), items, spatial_merge_size, position_id_per_seconds, rules, av_chunk)  # (3, n)
        position_ids[:, b, mask[b]] = pos
        deltas[b, 0] = pos.max() + 1 - len(tokens)
    for kind, used in cursor.items():
        if used != len(media[kind]):
            raise InputError(
                f"input_ids hold {used} {kind} item(s) but {len(media[kind])} {kind} size(s) were given; "
                "pass one grid / length per item, in prompt order over the whole batch"
            )
    return position_ids.to(input_ids.device), deltas.to(input_ids.device)


def rope_index_from_config(cfg, input_ids, attention_mask=None, *, audio_feature_lengths=None, n_window=None,
                           **media) -> tuple[torch.Tensor, torch.Tensor]:
    """`rope_index` with token ids, merge size, time scale and time rules taken from a ThinkerConfig or a Talker
    config of a registered release (omni.release).

    media: image_grid_thw, video_grid_thw, video_second_per_grid, audio_seqlens (token counts),
    use_audio_in_video. Instead of audio_seqlens, audio_feature_lengths (mel frames per audio) may be given;
    they are turned into token counts by the release's `audio_token_count`, with n_window from the Thinker's
    audio config (a Talker config has none: pass the Thinker's).
    """
    if isinstance(cfg, ThinkerConfig):
        merge, window = cfg.vision_config.spatial_merge_size, cfg.audio_config.n_window
    elif isinstance(cfg, MediaTokens):  # a Talker section: its own merge size, no audio encoder of its own
        merge, window = cfg.spatial_merge_size, None
    else:
        raise ConfigError(f"rope_index_from_config needs a ThinkerConfig or TalkerConfig, got {type(cfg).__name__}")
    release = release_of(cfg)
    if audio_feature_lengths is not None:
        if media.get("audio_seqlens") is not None:
            raise InputError("give either audio_seqlens (token counts) or audio_feature_lengths (mel frames), not both")
        window = n_window if n_window is not None else window
        if window is None:
            raise InputError("audio_feature_lengths with a Talker config need n_window (the Thinker's "
                             "audio_config.n_window) to count the audio tokens")
        lengths = torch.as_tensor(audio_feature_lengths).reshape(-1)
        media["audio_seqlens"] = release.audio_token_count(lengths, window)
    return rope_index(
        input_ids, attention_mask, **media, spatial_merge_size=merge, image_token_id=cfg.image_token_id,
        video_token_id=cfg.video_token_id, audio_token_id=cfg.audio_token_id,
        vision_start_token_id=cfg.vision_start_token_id, audio_start_token_id=cfg.audio_start_token_id,
        position_id_per_seconds=cfg.position_id_per_seconds, seconds_per_chunk=cfg.seconds_per_chunk,
        rules=release.time_rules,
    )


# ----------------------------------------------------------------------------------------------------------------
# input checks


def _as_grid(grid, name: str, merge: int) -> list[tuple[int, int, int]]:
    if grid is None:
        return []
    grid = torch.as_tensor(grid)
    if grid.numel() == 0:
        return []
    if grid.dim() != 2 or grid.shape[1] != 3:
        raise InputError(f"{name} must be (n, 3) rows of (t, h, w), got shape {tuple(grid.shape)}")
    rows = [tuple(int(v) for v in r) for r in grid.tolist()]
    for t, h, w in rows:
        if t <= 0 or h <= 0 or w <= 0 or h % merge or w % merge:
            raise InputError(
                f"{name} row {(t, h, w)}: sizes must be positive and h, w multiples of spatial_merge_size ({merge})"
            )
    return rows


def _as_seconds(seconds, n_videos: int) -> list[torch.Tensor]:
    if seconds is None:
        if n_videos:
            raise InputError("video_grid_thw is given but video_second_per_grid is not; pass seconds per grid")
        return []
    # float32 like the reference: the time row is computed in float32 from these values
    seconds = torch.as_tensor(seconds).reshape(-1).float()
    if len(seconds) != n_videos:
        raise InputError(f"video_second_per_grid has {len(seconds)} entries for {n_videos} videos")
    if not bool(torch.isfinite(seconds).all()) or bool((seconds < 0).any()):
        raise InputError(f"video_second_per_grid must be finite and >= 0, got {seconds.tolist()}")
    return list(seconds)


# ----------------------------------------------------------------------------------------------------------------
# one row


def _find_items(tokens, ids: _Ids, use_audio_in_video, media, cursor, merge, row) -> list[_Item]:
    """Locate the media items of one row (real tokens only), give each its sizes, check its placeholder run."""
    items = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok not in (ids.vision_start, ids.audio_start):
            i += 1
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok == ids.audio_start:
            item = _Item("audio", i, 1, 0, n_audio=_take(media, cursor, "audio", row))
        elif nxt == ids.image:
            item = _Item("image", i, 1, 0, grid=_take(media, cursor, "image", row))
        elif nxt == ids.video:
            k = cursor["video"]
            item = _Item("video", i, 1, 0, grid=_take(media, cursor, "video", row), seconds=media["seconds"][k])
        elif nxt == ids.audio_start:
            if not use_audio_in_video:
                raise InputError(
                    f"row {row}, token {i}: a video holds its audio track (vision start followed by audio start) "
                    "but use_audio_in_video is False; pass use_audio_in_video=True"
                )
            k = cursor["video"]
            item = _Item("audio_in_video", i, 2, 0, grid=_take(media, cursor, "video", row),
                         seconds=media["seconds"][k], n_audio=_take(media, cursor, "audio", row))
        else:
            raise InputError(
                f"row {row}, token {i}: a vision start token is followed by {nxt!r}, not an image, video or audio "
                "start token; media markers must wrap their placeholders as the processor writes them"
            )
        # the placeholder run: every token of it must be one the sizes ask for, in the asked numbers
        want = {}
        if item.grid is not None:
            t, h, w = item.grid
            want[ids.image if item.kind == "image" else ids.video] = t * (h // merge) * (w // merge)
        if item.n_audio:
            want[ids.audio] = item.n_audio
        first = end = i + item.markers
        while end < len(tokens) and tokens[end] in want:
            end += 1
        found = {t: tokens[first:end].count(t) for t in want}
        if found != want or end + item.markers > len(tokens):
            raise InputError(
                f"row {row}, token {i}: the {item.kind} item has placeholder counts {found} (token id: count) but "
                f"its sizes need {want}, followed by {item.markers} end marker(s); check the grids / audio lengths "
                "and that the prompt was not truncated"
            )
        item.n_body = end - first
        items.append(item)
        i = item.end
    return items


def _take(media, cursor, kind, row):
    """The next unused size of `kind` (a grid or an audio token count), marking it used."""
    k = cursor[kind]
    if k >= len(media[kind]):
        name = {"image": "image_grid_thw", "video": "video_grid_thw", "audio": "audio_seqlens (or audio_feature_lengths)"}[kind]
        raise InputError(f"row {row}: input_ids hold more {kind} items than {name} describes ({len(media[kind])})")
    cursor[kind] = k + 1
    return media[kind][k]


def _line(start, n: int) -> torch.Tensor:
    """n consecutive positions from `start`, the same on all three rows: (3, n)."""
    return (torch.arange(n, dtype=torch.float32) + start).expand(3, -1)


def _after(piece: torch.Tensor) -> torch.Tensor:
    """Where the next run starts: one past the largest id of the previous run (float32, like the reference)."""
    return piece.max() + 1


def _vision(start, grid, seconds_per_grid, merge: int, per_second, integer_times: bool) -> torch.Tensor:
    """(3, t * h/m * w/m) positions of one image or video grid in raster order (time, row, column)."""
    t, h, w = grid[0], grid[1] // merge, grid[2] // merge
    # multiply in this order (grid index, then seconds, then position units) to round exactly as the reference
    times = torch.arange(t) * seconds_per_grid * per_second
    times = (times.long() if integer_times else times).float()
    tt = times.view(t, 1, 1).expand(t, h, w)
    hh = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(t, h, w)
    ww = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(t, h, w)
    return torch.stack([tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)]) + start


def _markers(start, n: int, shared: bool) -> torch.Tensor:
    """Positions of n start (or end) markers: consecutive, or all at `start` when shared."""
    return _line(start, 1).expand(3, n) if shared else _line(start, n)


def _walk(n_tokens: int, items: list[_Item], merge: int, per_second, rules: TimeRules, av_chunk) -> torch.Tensor:
    """Positions (3, n_tokens) of one row's real tokens, given its media items in order."""
    pieces = []
    done = 0  # tokens positioned so far
    for item in items:
        start = _after(pieces[-1]) if pieces else torch.tensor(0.0)
        text = item.at - done
        if text:
            pieces.append(_line(start, text))
            start = start + text
        pieces.append(_markers(start, item.markers, rules.shared_markers))  # the start marker(s)
        start = start + (1 if rules.shared_markers else item.markers)
        if item.kind == "audio":
            body = tail = _line(start, item.n_audio)
        else:
            body = tail = _vision(start, item.grid, item.seconds, merge, per_second, rules.integer_times)
            if item.kind == "audio_in_video" and av_chunk:
                body, tail = interleave_positions_by_chunks(body, _line(start, item.n_audio), av_chunk, start)
            elif item.kind == "audio_in_video":
                body, tail = merge_positions_by_time(body, _line(start, item.n_audio))
        pieces.append(body)
        pieces.append(_markers(_after(tail), item.markers, rules.shared_markers))  # the end marker(s)
        done = item.end
    if done < n_tokens:
        pieces.append(_line(_after(pieces[-1]) if pieces else torch.tensor(0.0), n_tokens - done))
    return torch.cat(pieces, dim=1)
