"""Video preprocessing for the vision towers: a clip -> sampled frames -> patches + (t, h, w) grid.

    file (PyAV) | (F, H, W, C) array | (F, C, H, W) tensor | list of frames
        ──sample──► frames ──[card: qwen-omni-utils' resize]──► processor resize ──► (x - 255 mean) / (255 std)
        ──pad to a multiple of temporal_patch_size with the last frame──► patches (t*h*w, C*T*P*P), grid (t, h, w)

Two pipelines (`pipeline=`), as users run the releases:

- "card", the model cards' flow (qwen-omni-utils `process_mm_info`, then the release's processor): a file is sampled
  at `sample_fps` (2) frames per second, at least 4 and at most 768 frames, an even count, frame indices
  `linspace(0, total - 1, n).round()`; the frames are resized at factor 28 within 128..768 tokens of 28x28 pixels
  per frame and an even share of a whole-clip budget (128000 x 28^2 x 0.9 pixels x 2 / frames), antialiased bicubic
  on uint8 (`card_frame_size`); then the processor resizes the float frames to its own bounds. The processor is not
  told the sampling rate, so `video_second_per_grid` = temporal_patch_size / the processor's default fps.
- "processor", the bare official processor: frames as given (a file: every frame, or sampled at `fps` with the
  processor's own rule, indices `arange(0, total, total / n)`), one resize to the processor's bounds.

Resizing is torch's antialiased bicubic, the kernel torchvision runs (uint8 frames rounded, float frames not),
or PIL's (`resize_backend="pil"`, uint8 frames only). Frames given as floats are 0..1 when none exceeds 1, else
0..255 (what `process_mm_info` returns); either way they are processed exactly like the card's flow processes them.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, MediaError
from .image import (
    CARD_FACTOR, IMAGE_MEAN, IMAGE_STD, MERGE_SIZE, PATCH_SIZE, RESIZE_BACKENDS, TEMPORAL_PATCH_SIZE, load_rgb, local_path,
    normalize, normalize_table, patchify, resize_frames, resize_rgb, smart_resize,
)

VIDEO_MIN_PIXELS = 128 * 32 * 32  # 131072 per frame
VIDEO_MAX_PIXELS = 768 * 32 * 32  # 786432 per frame
MIN_FRAMES, MAX_FRAMES = 4, 768
DEFAULT_FPS = 1.0  # what the official Qwen3-Omni processor assumes when it is not told the frame rate
CARD_FPS = 2.0  # qwen-omni-utils' sampling rate
CARD_MIN_PIXELS, CARD_MAX_PIXELS = 128 * CARD_FACTOR**2, 768 * CARD_FACTOR**2
CARD_TOTAL_PIXELS = 128000 * CARD_FACTOR**2 * 0.9  # its whole-clip budget (MODEL_SEQ_LEN tokens, 90 %)
PIPELINES = ("card", "processor")


def sample_indices(total: int, source_fps: float, fps: float, temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
                   min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """The processor's rule: indices of the frames kept when `total` frames at `source_fps` are sampled at `fps`."""
    _check_rates(source_fps, fps)
    cap = math.floor(min(max_frames, total) / temporal_patch_size) * temporal_patch_size
    n = total / source_fps * fps
    n = min(max(n, min_frames), cap, total)
    n = math.floor(n / temporal_patch_size) * temporal_patch_size
    if n <= 0:
        raise MediaError(f"a clip of {total} frame(s) is too short to sample at fps={fps} (needs at least "
                         f"{temporal_patch_size}); pass fps=None to use every frame")
    return torch.arange(0, total, total / n).int()


def card_indices(total: int, source_fps: float, fps: float = CARD_FPS, min_frames: int = MIN_FRAMES,
                 max_frames: int = MAX_FRAMES, factor: int = TEMPORAL_PATCH_SIZE) -> torch.Tensor:
    """qwen-omni-utils' rule: n = total / source_fps * fps frames, clamped to [min_frames, min(max_frames, total)]
    (both rounded to even), floored to an even count, at `linspace(0, total - 1, n).round()`."""
    _check_rates(source_fps, fps)
    low = math.ceil(min_frames / factor) * factor
    high = math.floor(min(max_frames, total) / factor) * factor
    n = math.floor(min(max(total / source_fps * fps, low), high, total) / factor) * factor
    if not factor <= n <= total:
        raise MediaError(f"a clip of {total} frame(s) is too short to sample at fps={fps} (needs at least {factor})")
    return torch.linspace(0, total - 1, n).round().long()


def _check_rates(source_fps, fps) -> None:
    if source_fps is None or not source_fps > 0:
        raise MediaError(f"cannot sample at fps={fps}: the clip's own frame rate is unknown ({source_fps}); pass "
                         "source_fps, or fps=None to use every frame")
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")


def card_frame_size(height: int, width: int, frames: int) -> tuple[int, int]:
    """qwen-omni-utils' size for the frames of a clip of `frames` (even) frames."""
    max_pixels = max(min(CARD_MAX_PIXELS, CARD_TOTAL_PIXELS / frames * TEMPORAL_PATCH_SIZE), int(CARD_MIN_PIXELS * 1.05))
    return smart_resize(height, width, CARD_FACTOR, CARD_MIN_PIXELS, max_pixels)


# -- reading ---------------------------------------------------------------------------------------------------------


def read_video(path, pick=None) -> tuple[list[np.ndarray], float | None]:
    """Decode a video file with PyAV -> (frames as (H, W, 3) uint8 RGB, the file's frame rate). `pick(total, rate)`
    returns the indices to keep (None: every frame)."""
    try:
        import av
    except ImportError:
        raise MediaError("reading video files needs PyAV: pip install av (or pass the frames as an array)") from None
    path = local_path(path, "video")
    if not os.path.isfile(path):
        raise MediaError(f"no such video file {path!r}")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"{path!r} has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else None
            total = int(stream.frames or 0)
            keep = set(pick(total, rate).tolist()) if pick is not None and total > 0 else None  # decode only these
            frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream))
                      if keep is None or i in keep]
            if pick is not None and total <= 0:  # the container did not say how many frames it holds
                frames = [frames[i] for i in pick(len(frames), rate).tolist()]
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot decode video {path!r} ({e}); is the file corrupt?") from None
    if not frames:
        raise MediaError(f"video {path!r} has no decodable frames")
    return frames, rate


def _frames_of(video, what: str) -> torch.Tensor:
    """A video in memory -> (F, 3, H, W) uint8, or float32 on the 0..255 scale for float input."""
    if isinstance(video, (np.ndarray, torch.Tensor)):
        raw = t = torch.as_tensor(video)
        if t.dim() != 4:
            kind = "array is (frames, H, W, C)" if isinstance(video, np.ndarray) else "tensor is (frames, C, H, W)"
            raise MediaError(f"{what} has shape {tuple(t.shape)}; a video {kind}")
        if t.numel() == 0:
            raise MediaError(f"{what} has no frames or no pixels (shape {tuple(t.shape)})")
        if t.is_floating_point():
            t = t.float() if isinstance(video, torch.Tensor) else t.float().permute(0, 3, 1, 2)
            if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 255:
                raise MediaError(f"{what} is a float video with values outside 0..255 (or NaN)")
            if t.shape[1] == 3 and t.numel():  # 0..1 frames are uint8 images scaled down; 0..255 ones stay floats
                return (t * 255).round().to(torch.uint8) if float(t.max()) <= 1 else t.contiguous()
        frames = [f.permute(1, 2, 0) if isinstance(video, torch.Tensor) else f for f in raw]
        return _stack([load_rgb(f.numpy(), f"{what} frame {i}") for i, f in enumerate(frames)], what)
    if isinstance(video, (list, tuple)):
        return _stack([load_rgb(f, f"{what} frame {i}") for i, f in enumerate(video)], what)
    if isinstance(video, Image.Image):
        raise MediaError(f"{what} is a single image; a video is a file path, a (frames, H, W, C) array, a (frames, C, "
                         "H, W) tensor or a list of frames (wrap one video's frames in a list: [[f0, f1, ...]])")
    raise MediaError(f"{what} has unsupported type {type(video).__name__}; pass a file path, a (frames, H, W, C) "
                     "array, a (frames, C, H, W) tensor or a list of frames")


def _stack(frames: list[np.ndarray], what: str) -> torch.Tensor:
    if not frames:
        raise MediaError(f"{what} has no frames")
    sizes = {f.shape[:2] for f in frames}
    if len(sizes) > 1:
        raise MediaError(f"{what}: frames have different sizes {sorted(sizes)}; resize them to one size first")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (F, 3, H, W) uint8


# -- one clip -> patches -----------------------------------------------------------------------------------------------


def _resize(frames: torch.Tensor, h: int, w: int, backend: str) -> torch.Tensor:
    if backend == "pil" and frames.dtype == torch.uint8:
        out = [resize_rgb(f.permute(1, 2, 0).numpy(), h, w, "pil") for f in frames]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return resize_frames(frames, h, w)


def _clip_patches(frames: torch.Tensor, *, mean, std, patch_size, merge_size, temporal_patch_size, min_pixels,
                  max_pixels, total_pixels, card, backend, what):
    if frames.shape[0] == 0 or frames.shape[-1] == 0 or frames.shape[-2] == 0:
        raise MediaError(f"{what} has no frames or no pixels (shape {tuple(frames.shape)})")
    if card:  # qwen-omni-utils' resize, on uint8 frames; it hands the processor floats
        n = frames.shape[0] + (-frames.shape[0] % temporal_patch_size)
        h, w = card_frame_size(*frames.shape[-2:], n)
        if frames.is_floating_point() and tuple(frames.shape[-2:]) != (h, w):
            frames = frames.round().to(torch.uint8)
        frames = resize_frames(frames, h, w, native_uint8=False).float()
    if total_pixels is not None:  # each frame gets an even share of a whole-clip budget (never below the minimum)
        share = total_pixels * temporal_patch_size // frames.shape[0]
        max_pixels = max(min(max_pixels, share), int(min_pixels * 1.05))
    h, w = smart_resize(*frames.shape[-2:], patch_size * merge_size, min_pixels, max_pixels)
    x = _resize(frames, h, w, backend)
    if x.dtype == torch.uint8 and backend == "pil":  # the PIL processor's arithmetic, as images (a table per level)
        table = normalize_table(mean.tolist(), std.tolist())
        x = torch.stack([normalize(f.permute(1, 2, 0).numpy(), table) for f in x])
    else:  # torchvision's processors: one fused float expression
        x = (x.float() - mean[:, None, None] * 255) / (std[:, None, None] * 255)  # (F, 3, h, w)
    if pad := -x.shape[0] % temporal_patch_size:  # complete the last temporal patch with copies of the last frame
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
    return patchify(x, patch_size, merge_size, temporal_patch_size)


def preprocess_videos(videos, *, fps: float | None = None, source_fps: float | None = None,
                      pipeline: str = "processor", sample_fps: float = CARD_FPS,
                      patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE,
                      temporal_patch_size: int = TEMPORAL_PATCH_SIZE, min_pixels: int = VIDEO_MIN_PIXELS,
                      max_pixels: int = VIDEO_MAX_PIXELS, total_pixels: int | None = None,
                      min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES,
                      image_mean=IMAGE_MEAN, image_std=IMAGE_STD, resize_backend: str = "pil") -> dict:
    """One video or a list of videos -> {"pixel_values_videos": (N, 3*T*P*P) float32,
    "video_grid_thw": (n, 3) long, "video_second_per_grid": (n,) float32}.

    pipeline "card": files sampled at `sample_fps` with qwen-omni-utils' rule, frames resized as it does first; `fps`
    is then only what the processor is told (None: its default, 1.0). pipeline "processor": `fps` samples files (and
    in-memory frames whose real rate `source_fps` is given) with the processor's rule; None keeps every frame.
    """
    if pipeline not in PIPELINES:
        raise InputError(f"pipeline must be one of {list(PIPELINES)}, got {pipeline!r}")
    if resize_backend not in RESIZE_BACKENDS:
        raise InputError(f"resize_backend must be one of {list(RESIZE_BACKENDS)}, got {resize_backend!r}")
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be a positive number, got {fps!r}")
    items = list(videos) if isinstance(videos, (list, tuple)) else [videos]  # a list is a list of videos
    if not items:
        raise MediaError("no videos given; pass a video or a non-empty list of videos")
    card = pipeline == "card"
    if card:
        pick = lambda total, rate: card_indices(total, rate, sample_fps, min_frames, max_frames)  # noqa: E731
    elif fps is not None:
        pick = lambda total, rate: sample_indices(total, rate, fps, temporal_patch_size,  # noqa: E731
                                                  min_frames, max_frames)
    else:
        pick = None
    mean, std = (torch.tensor(_three(v, name), dtype=torch.float32) for v, name in
                 ((image_mean, "image_mean"), (image_std, "image_std")))
    pixels, grids = [], []
    for i, video in enumerate(items):
        what = f"video {i}"
        if isinstance(video, (str, os.PathLike)):
            frames = _stack(read_video(video, pick)[0], what)
        else:
            frames = _frames_of(video, what)
            if not card and fps is not None and source_fps is not None:
                frames = frames[sample_indices(len(frames), source_fps, fps, temporal_patch_size, min_frames,
                                               max_frames).long()]
        patches, grid = _clip_patches(
            frames, mean=mean, std=std, patch_size=patch_size, merge_size=merge_size,
            temporal_patch_size=temporal_patch_size, min_pixels=min_pixels, max_pixels=max_pixels,
            total_pixels=total_pixels, card=card, backend=resize_backend, what=what,
        )
        pixels.append(patches)
        grids.append(grid)
    seconds = temporal_patch_size / (fps if fps is not None else DEFAULT_FPS)
    return {
        "pixel_values_videos": torch.cat(pixels),
        "video_grid_thw": torch.tensor(grids, dtype=torch.long),
        "video_second_per_grid": torch.full((len(grids),), seconds, dtype=torch.float32),
    }


def _three(v, name):
    v = (float(v),) * 3 if isinstance(v, (int, float)) else tuple(float(x) for x in v)
    if len(v) != 3 or any(not math.isfinite(x) for x in v):
        raise MediaError(f"{name} needs 3 finite values (R, G, B), got {v}")
    if name == "image_std" and any(x == 0 for x in v):
        raise MediaError("image_std must not contain zeros")
    return v
