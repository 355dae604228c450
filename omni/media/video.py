"""Video preprocessing for the Qwen3-Omni vision tokenizer: a clip -> sampled frames -> patches + (t, h, w) grid.

    file (PyAV) | (F, H, W, C) array | (F, C, H, W) tensor | list of frames
        ──sample by fps (optional)──► frames ──smart_resize per clip, PIL bicubic per frame──► x/255, (x - mean)/std
        ──pad to a multiple of temporal_patch_size with the last frame──► patches (t*h*w, C*T*P*P), grid (t, h, w)

Rules, as the official processor (`Qwen2VLVideoProcessor` driven by the Qwen3-Omni processor) applies them:

- Frames are used as given unless `fps` is passed for a file (or for arrays together with `source_fps`); then
  n = total / source_fps * fps frames are kept, clamped to [min_frames, min(max_frames, total)] and rounded
  down to a multiple of temporal_patch_size, at indices `arange(0, total, total / n)`.
- Every frame of a clip gets the same size: smart_resize with the video pixel bounds, 128..768 tokens of
  32x32 pixels per frame. `total_pixels` optionally caps a frame at an even share of a whole-clip budget
  (the reference's `cap_pixels_per_frame`): max(min(max_pixels, total_pixels * T / frames), 1.05 * min_pixels).
- `video_second_per_grid` = temporal_patch_size / fps, and the official processor assumes fps = 1.0 when none
  is given (whatever the real frame rate): pass `fps` to get true timestamps.

Resampling and normalisation share the image path (PIL bicubic on uint8, the reference's float arithmetic), so a
frame processed here equals that frame processed as an image. The reference video processor resizes with
torchvision's antialiased bicubic instead, which agrees with PIL up to rounding of single uint8 levels.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, MediaError
from .image import (
    IMAGE_MEAN, IMAGE_STD, MERGE_SIZE, PATCH_SIZE, TEMPORAL_PATCH_SIZE, load_rgb, normalize, normalize_table,
    patchify, resize_rgb, smart_resize,
)

VIDEO_MIN_PIXELS = 128 * 32 * 32  # 131072 per frame
VIDEO_MAX_PIXELS = 768 * 32 * 32  # 786432 per frame
MIN_FRAMES, MAX_FRAMES = 4, 768
DEFAULT_FPS = 1.0  # what the official processor assumes when it is not told the frame rate


def sample_indices(total: int, source_fps: float, fps: float, temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
                   min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """Indices of the frames kept when a clip of `total` frames at `source_fps` is sampled at `fps`."""
    if source_fps is None or source_fps <= 0:
        raise MediaError(f"cannot sample at fps={fps}: the clip's own frame rate is unknown ({source_fps}); pass "
                         "source_fps, or fps=None to use every frame")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    cap = math.floor(min(max_frames, total) / temporal_patch_size) * temporal_patch_size
    n = total / source_fps * fps
    n = min(max(n, min_frames), cap, total)
    n = math.floor(n / temporal_patch_size) * temporal_patch_size
    if n <= 0:
        raise MediaError(f"a clip of {total} frame(s) is too short to sample at fps={fps} (needs at least "
                         f"{temporal_patch_size}); pass fps=None to use every frame")
    return torch.arange(0, total, total / n).int()


# -- reading ---------------------------------------------------------------------------------------------------------


def read_video(path, fps: float | None = None, temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
               min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES) -> tuple[list[np.ndarray], float | None]:
    """Decode a video file with PyAV -> (frames as (H, W, 3) uint8 RGB, the file's frame rate)."""
    try:
        import av
    except ImportError:
        raise MediaError("reading video files needs PyAV: pip install av (or pass the frames as an array)") from None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"no such video file {path!r}")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"{path!r} has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else None
            total = int(stream.frames or 0)
            if fps is not None and total > 0:  # decode only the kept frames
                keep = set(sample_indices(total, rate, fps, temporal_patch_size, min_frames, max_frames).tolist())
                frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in keep]
            else:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
                if fps is not None:  # the container did not say how many frames it holds
                    idx = sample_indices(len(frames), rate, fps, temporal_patch_size, min_frames, max_frames)
                    frames = [frames[i] for i in idx.tolist()]
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot decode video {path!r} ({e}); is the file corrupt?") from None
    if not frames:
        raise MediaError(f"video {path!r} has no decodable frames")
    return frames, rate


def _frames_of(video, what: str) -> list[np.ndarray]:
    """A video given in memory -> list of (H, W, 3) uint8 RGB frames."""
    if isinstance(video, np.ndarray):
        if video.ndim != 4:
            raise MediaError(f"{what} is an array of shape {video.shape}; a video array is (frames, H, W, C)")
        return [load_rgb(f, f"{what} frame {i}") for i, f in enumerate(video)]
    if torch.is_tensor(video):
        if video.dim() != 4:
            raise MediaError(f"{what} is a tensor of shape {tuple(video.shape)}; a video tensor is (frames, C, H, W)")
        return [load_rgb(f, f"{what} frame {i}") for i, f in enumerate(video)]
    if isinstance(video, (list, tuple)):
        return [load_rgb(f, f"{what} frame {i}") for i, f in enumerate(video)]
    if isinstance(video, Image.Image):
        raise MediaError(f"{what} is a single image; a video is a file path, a (frames, H, W, C) array, a (frames, C, "
                         "H, W) tensor or a list of frames (wrap one video's frames in a list: [[f0, f1, ...]])")
    raise MediaError(f"{what} has unsupported type {type(video).__name__}; pass a file path, a (frames, H, W, C) "
                     "array, a (frames, C, H, W) tensor or a list of frames")


# -- one clip -> patches -----------------------------------------------------------------------------------------------


def _clip_patches(frames, *, table, patch_size, merge_size, temporal_patch_size, min_pixels, max_pixels,
                  total_pixels, what):
    if not frames:
        raise MediaError(f"{what} has no frames")
    sizes = {f.shape[:2] for f in frames}
    if len(sizes) > 1:
        raise MediaError(f"{what}: frames have different sizes {sorted(sizes)}; resize them to one size first")
    height, width = frames[0].shape[:2]
    factor = patch_size * merge_size
    if total_pixels is not None:  # each frame gets an even share of a whole-clip budget (never below the minimum)
        share = total_pixels * temporal_patch_size // len(frames)
        max_pixels = max(min(max_pixels, share), int(min_pixels * 1.05))
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    out = torch.stack([normalize(resize_rgb(f, h, w), table) for f in frames])  # (F, 3, h, w)
    if pad := -len(frames) % temporal_patch_size:  # complete the last temporal patch with copies of the last frame
        out = torch.cat([out, out[-1:].expand(pad, -1, -1, -1)])
    return patchify(out, patch_size, merge_size, temporal_patch_size)


def preprocess_videos(videos, *, fps: float | None = None, source_fps: float | None = None,
                      patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE,
                      temporal_patch_size: int = TEMPORAL_PATCH_SIZE, min_pixels: int = VIDEO_MIN_PIXELS,
                      max_pixels: int = VIDEO_MAX_PIXELS, total_pixels: int | None = None,
                      min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES,
                      image_mean=IMAGE_MEAN, image_std=IMAGE_STD) -> dict:
    """One video or a list of videos -> {"pixel_values_videos": (N, 3*T*P*P) float32,
    "video_grid_thw": (n, 3) long, "video_second_per_grid": (n,) float32}.

    fps: frames per second the model sees. Files are sampled to it; in-memory frames are taken to be at this
    rate already, unless `source_fps` (their real rate) is given, in which case they are sampled the same way.
    None: every frame is kept and the official 1.0 fps is assumed for the timestamps.
    """
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be a positive number, got {fps!r}")
    # a single video: a path, a 4-D array / tensor; a list is a list of videos
    items = list(videos) if isinstance(videos, (list, tuple)) else [videos]
    if not items:
        raise MediaError("no videos given; pass a video or a non-empty list of videos")
    table = normalize_table(image_mean, image_std)
    pixels, grids = [], []
    for i, video in enumerate(items):
        what = f"video {i}"
        if isinstance(video, (str, os.PathLike)):
            frames, _ = read_video(video, fps, temporal_patch_size, min_frames, max_frames)
        else:
            frames = _frames_of(video, what)
            if fps is not None and source_fps is not None:
                idx = sample_indices(len(frames), source_fps, fps, temporal_patch_size, min_frames, max_frames)
                frames = [frames[j] for j in idx.tolist()]
        patches, grid = _clip_patches(
            frames, table=table, patch_size=patch_size, merge_size=merge_size,
            temporal_patch_size=temporal_patch_size, min_pixels=min_pixels, max_pixels=max_pixels,
            total_pixels=total_pixels, what=what,
        )
        pixels.append(patches)
        grids.append(grid)
    seconds = temporal_patch_size / (fps if fps is not None else DEFAULT_FPS)
    return {
        "pixel_values_videos": torch.cat(pixels),
        "video_grid_thw": torch.tensor(grids, dtype=torch.long),
        "video_second_per_grid": torch.full((len(grids),), seconds, dtype=torch.float32),
    }
