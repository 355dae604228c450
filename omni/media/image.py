"""Image preprocessing for the Qwen3-Omni vision tokenizer: any image -> flattened patches + (t, h, w) grid.

    image (path | PIL | HWC array | CHW tensor) ──to RGB uint8──► smart_resize to multiples of patch*merge
        ──PIL bicubic──► x/255, (x - mean)/std ──► patches (h*w, C*T*P*P) in merge-block order, grid (1, h, w)

Choices, all made to match the official processor (`Qwen2VLImageProcessor` configured as the Qwen3-Omni release:
patch 16, merge 2, temporal patch 2, 3136..12845056 pixels, mean = std = 0.5):

- Colour: every mode becomes RGB. Modes with transparency (RGBA, LA, PA, P with a transparent index) are
  composited onto white first, so transparent areas do not turn black; CMYK, P, L, 1, ... use PIL's conversion.
- Resampling: `resize_backend="torch"` runs torch's antialiased bicubic kernel on the uint8 tensor, the one
  torchvision runs for `Qwen2VLImageProcessor` (the class the releases' processors use by default), bit for bit;
  "pil" runs PIL's bicubic filter, as `Qwen2VLImageProcessorPil` does. Neither needs torchvision.
- The model cards' pipeline resizes twice: qwen-omni-utils first (`card_resize`: factor 28, PIL), then the
  processor; `card_resize_first=True` does the same.
- Float arrays / tensors are read as values in [0, 1] and rounded to uint8 (so `x / 255` of a uint8 image gives
  exactly the uint8 result); uint16 ones (and 16-bit PIL images) are scaled by 255 / 65535; other integer ones
  must already be in 0..255. Nothing is clipped: out-of-range values are refused.
- Normalisation goes through a 256-entry table per channel computed with the reference's arithmetic
  (x * (1/255) in float64, then (x - mean) / std in float32): exact and cheap.
- Patches: a still image is one temporal patch, the frame repeated `temporal_patch_size` times. Each patch row is
  a (C, T, P, P) cube flattened channel-major; the m x m patches that merge into one LLM token are consecutive.

Everything here is CPU numpy / PIL / torch, safe to run in DataLoader workers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, MediaError

PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 16, 2, 2
MIN_PIXELS = 56 * 56  # 3136, preprocessor_config.json of the release
MAX_PIXELS = 28 * 28 * 16384  # 12845056
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int = PATCH_SIZE * MERGE_SIZE, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The official target size: both sides multiples of `factor`, area within [min_pixels, max_pixels],
    aspect ratio kept as closely as possible. Sides are first rounded to the nearest multiple; if the area is
    then too large both sides shrink by the same ratio (rounded down), if too small they grow (rounded up)."""
    if height <= 0 or width <= 0:
        raise MediaError(f"image has no pixels ({height}x{width}); pass a non-empty image")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise MediaError(f"image of {height}x{width} has an aspect ratio above {MAX_ASPECT_RATIO}; crop or pad it "
                         "to a less extreme shape")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def num_vision_tokens(grid_thw, merge_size: int = MERGE_SIZE):
    """LLM tokens of an item: t * h * w / merge². One (3,) row -> int; an (n, 3) grid -> (n,) long tensor."""
    grid = torch.as_tensor(grid_thw, dtype=torch.long)
    counts = grid.prod(-1) // (merge_size * merge_size)
    return int(counts) if grid.dim() == 1 else counts


# -- reading any image as RGB uint8 ---------------------------------------------------------------------------------


_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one band, more than 8 bits: PIL would clip to 255


def local_path(src, what: str) -> str:
    """A media path as the ecosystem writes it (`file://` prefixes allowed); URLs are refused: omni reads no network."""
    path = os.fspath(src)
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.split("://", 1)[0].lower() in ("http", "https", "ftp", "s3", "gs") and "://" in path:
        raise MediaError(f"{what}: {path!r} is a URL; omni does not download media: fetch it and pass the local file "
                         "(or the decoded image / array)")
    return path


def _pil_to_rgb(img: Image.Image) -> Image.Image:
    """An RGB PIL image (kept in PIL: a huge image is resized before any numpy copy of it is made)."""
    if img.mode in _WIDE_MODES:  # scaled by its bit depth through numpy (PIL's own conversion saturates at 255)
        a = np.asarray(img)
        a = a.astype(np.uint16) if img.mode.startswith("I;16") else a
        return Image.fromarray(_array_to_uint8(a, f"a PIL image of mode {img.mode!r}"), "L").convert("RGB")
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def _array_to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; uint16 (16-bit images) scaled by 255 / 65535; float in [0, 1] scaled; other integers must
    already be 0..255; anything else is refused (never clipped)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise MediaError(f"{what} contains NaN or infinite values")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise MediaError(f"{what} is a float array with values in [{a.min():g}, {a.max():g}]; float images must "
                             "be in [0, 1] (pass uint8 for 0..255 values)")
        return np.round(a.astype(np.float64) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise MediaError(f"{what} is an integer array with values in [{a.min()}, {a.max()}]; expected 0..255 "
                             "(8-bit) or a uint16 array (16-bit, scaled); convert other depths to one of them")
        return a.astype(np.uint8)
    raise MediaError(f"{what} has dtype {a.dtype}; use uint8 (0..255) or float (0..1)")


def _hwc_to_rgb(a: np.ndarray, what: str) -> np.ndarray:
    a = _array_to_uint8(a, what)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise MediaError(f"{what} has shape {a.shape}; expected (H, W), or (H, W, C) with C in 1, 3, 4 "
                         "(numpy arrays are channels-last, tensors channels-first)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise MediaError(f"{what} has no pixels (shape {a.shape}); pass a non-empty image")
    if a.shape[-1] == 1:
        return np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:  # composite onto white, in floats, rounded back (as the reference does for arrays)
        alpha = a[..., 3:4] / 255.0
        return np.round(alpha * a[..., :3] + (1 - alpha) * 255.0).astype(np.uint8)
    return a


def load_rgb(image, what: str = "image") -> np.ndarray:
    """Any supported image -> (H, W, 3) uint8 RGB. Raises MediaError for unreadable or unusable input."""
    rgb = open_rgb(image, what)
    return np.asarray(rgb) if isinstance(rgb, Image.Image) else rgb


def open_rgb(image, what: str = "image") -> Image.Image | np.ndarray:
    """Like `load_rgb`, but files and PIL images stay an RGB PIL image, so `resize_rgb` can shrink a very large
    one without first copying it into numpy (a 100-megapixel photo is 300 MB per copy)."""
    if isinstance(image, (str, os.PathLike)):
        path = local_path(image, what)
        try:
            with Image.open(path) as img:
                img.load()  # decode now so a truncated file fails here, not later
                rgb = _pil_to_rgb(img)
                if rgb is img:  # leaving the `with` closes `img`: keep an open copy
                    rgb = img.copy()
        except MediaError as e:
            raise MediaError(f"{what} {path!r}: {e}") from None
        except FileNotFoundError:
            raise MediaError(f"{what}: no such file {path!r}") from None
        except Image.DecompressionBombError as e:
            raise MediaError(f"{what}: {path!r} is too large to decode safely ({e}); downscale the file first, or "
                             "raise PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise MediaError(f"{what}: cannot decode {path!r} as an image ({e}); is the file corrupt?") from None
        what = f"{what} {path!r}"
    elif isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise MediaError(f"{what} has no pixels ({image.width}x{image.height})")
        try:
            rgb = _pil_to_rgb(image)
        except MediaError:
            raise
        except (OSError, ValueError) as e:
            raise MediaError(f"{what}: cannot convert PIL mode {image.mode!r} to RGB ({e})") from None
    elif isinstance(image, np.ndarray):
        rgb = _hwc_to_rgb(image, what)
    elif torch.is_tensor(image):
        t = image.detach().cpu()
        if t.dim() == 3:
            t = t.permute(1, 2, 0)  # CHW -> HWC
        elif t.dim() != 2:
            raise MediaError(f"{what} is a tensor of shape {tuple(image.shape)}; expected (C, H, W) or (H, W)")
        if t.dtype == torch.bfloat16:
            t = t.float()
        rgb = _hwc_to_rgb(t.numpy(), what)
    else:
        raise MediaError(f"{what} has unsupported type {type(image).__name__}; pass a file path, PIL image, HWC "
                         "numpy array or CHW tensor")
    height, width = _size(rgb)
    if height == 0 or width == 0:
        raise MediaError(f"{what} has no pixels ({height}x{width})")
    return rgb


def _size(rgb: Image.Image | np.ndarray) -> tuple[int, int]:
    """(height, width) of an RGB PIL image or (H, W, 3) array."""
    return (rgb.height, rgb.width) if isinstance(rgb, Image.Image) else rgb.shape[:2]


# -- resize, normalise, patchify ------------------------------------------------------------------------------------


RESIZE_BACKENDS = ("torch", "pil")


def resize_rgb(rgb: np.ndarray | Image.Image, height: int, width: int, backend: str = "pil") -> np.ndarray:
    """Bicubic resize of an (H, W, 3) uint8 image or RGB PIL image -> (height, width, 3) uint8 array.

    backend "pil": PIL's filter (`Qwen2VLImageProcessorPil`, and qwen-omni-utils' own resize); "torch": antialiased
    bicubic on the uint8 tensor, the kernel torchvision runs (`Qwen2VLImageProcessor`, the processors' default)."""
    if backend not in RESIZE_BACKENDS:
        raise ConfigError(f"resize_backend must be one of {list(RESIZE_BACKENDS)}, got {backend!r}")
    if _size(rgb) == (height, width):
        return np.asarray(rgb)
    if backend == "torch":
        x = torch.tensor(np.asarray(rgb)).permute(2, 0, 1)[None].contiguous()  # a copy: PIL arrays are read-only
        return resize_frames(x, height, width)[0].permute(1, 2, 0).numpy()
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    return np.asarray(img.resize((width, height), resample=Image.Resampling.BICUBIC))


def resize_frames(frames: torch.Tensor, height: int, width: int, native_uint8: bool = True) -> torch.Tensor:
    """(F, C, H, W) uint8 or float frames -> (F, C, height, width), antialiased bicubic as torchvision resizes
    tensors. uint8: through torch's native uint8 kernel (torchvision's v2 API, the processors), or
    `native_uint8=False` in float, clamped and rounded (its v1 API, which qwen-omni-utils calls): the two differ by
    up to 17 levels on sharp edges. Floats stay floats (not clamped)."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    resize = lambda x: torch.nn.functional.interpolate(  # noqa: E731
        x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    if frames.dtype == torch.uint8 and not native_uint8:
        return resize(frames.float()).clamp_(0, 255).round_().to(torch.uint8)
    return resize(frames)


# The model cards' pipeline resizes every image twice: qwen-omni-utils first, at factor 28 (its default
# image_patch_size 14 x merge 2, whatever the release; 4..16384 tokens of 28x28 pixels; PIL bicubic), then the
# release's processor at its own factor (32 for Qwen3-Omni).
CARD_FACTOR = 28
CARD_MIN_PIXELS, CARD_MAX_PIXELS = 4 * CARD_FACTOR**2, 16384 * CARD_FACTOR**2


def card_resize(rgb: np.ndarray | Image.Image) -> np.ndarray | Image.Image:
    """qwen-omni-utils' resize of an image (the first of the cards' two)."""
    h, w = smart_resize(*_size(rgb), CARD_FACTOR, CARD_MIN_PIXELS, CARD_MAX_PIXELS)
    return resize_rgb(rgb, h, w, backend="pil")


def normalize_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8 level per channel."""
    mean = np.asarray(_three(mean, "image_mean"), dtype=np.float32)[:, None]
    std = np.asarray(_three(std, "image_std"), dtype=np.float32)[:, None]
    if (std == 0).any():
        raise MediaError("image_std must not contain zeros")
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)[None, :]
    return (levels - mean) / std


def _three(v, name):
    if isinstance(v, (int, float)):
        return (float(v),) * 3
    v = tuple(float(x) for x in v)
    if len(v) != 3:
        raise MediaError(f"{name} needs 3 values (R, G, B), got {len(v)}")
    return v


def normalize(rgb: np.ndarray, table: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 through the per-channel table."""
    out = np.stack([table[c][rgb[..., c]] for c in range(3)])
    return torch.from_numpy(out)


def patchify(frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int):
    """(F, C, H, W) frames, F a multiple of temporal_patch_size -> ((F/T)*(H/P)*(W/P), C*T*P*P), (F/T, H/P, W/P).

    Rows are ordered (t, block_row, block_col, in_row, in_col); each row is (C, T, P, P) flattened."""
    F_, C, H, W = frames.shape
    T, P, m = temporal_patch_size, patch_size, merge_size
    gt, gh, gw = F_ // T, H // P, W // P
    x = frames.reshape(gt, T, C, gh // m, m, P, gw // m, m, P)
    #                  0   1  2  3       4  5  6       7  8
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, bh, bw, m, m, C, T, P, P)
    return x.reshape(gt * gh * gw, C * T * P * P), (gt, gh, gw)


def _as_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def preprocess_images(images, *, patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE,
                      temporal_patch_size: int = TEMPORAL_PATCH_SIZE, min_pixels: int = MIN_PIXELS,
                      max_pixels: int = MAX_PIXELS, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
                      card_resize_first: bool = False, resize_backend: str = "pil") -> dict:
    """One image or a list of them -> {"pixel_values": (N, 3*T*P*P) float32, "image_grid_thw": (n, 3) long}.

    card_resize_first: resize as qwen-omni-utils does first (the model cards' pipeline). resize_backend: "pil" or
    "torch" (torchvision's kernel) for the processor's resize."""
    items = _as_list(images)
    if not items:
        raise MediaError("no images given; pass an image or a non-empty list of images")
    if resize_backend not in RESIZE_BACKENDS:
        raise ConfigError(f"resize_backend must be one of {list(RESIZE_BACKENDS)}, got {resize_backend!r}")
    table = normalize_table(image_mean, image_std)
    factor = patch_size * merge_size
    pixels, grids = [], []
    for i, item in enumerate(items):
        rgb = open_rgb(item, f"image {i}")
        if card_resize_first:
            rgb = card_resize(rgb)
        h, w = smart_resize(*_size(rgb), factor, min_pixels, max_pixels)
        frame = normalize(resize_rgb(rgb, h, w, resize_backend), table)  # (3, h, w)
        frames = frame[None].expand(temporal_patch_size, -1, -1, -1)  # a still image is one temporal patch
        patches, grid = patchify(frames, patch_size, merge_size, temporal_patch_size)
        pixels.append(patches)
        grids.append(grid)
    return {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.tensor(grids, dtype=torch.long)}


def check_media_options(path: str, options: dict) -> None:
    """Preprocessing options read from `path` (a preprocessor_config.json): sizes must be positive integers and
    mean / std one or three numbers, or every image would fail later, obscurely."""
    for key in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"{path}: {key} must be a positive integer, got {value!r}")
    if options.get("min_pixels", 0) > options.get("max_pixels", float("inf")):
        raise ConfigError(f"{path}: min_pixels ({options['min_pixels']}) is above max_pixels ({options['max_pixels']})")
    for key in ("image_mean", "image_std"):
        value = options.get(key)
        if value is None:
            continue
        numbers = [value] * 3 if isinstance(value, (int, float)) else value
        if (not isinstance(numbers, list) or len(numbers) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers)):
            raise ConfigError(f"{path}: {key} must be one number or three (R, G, B), got {value!r}")
        if key == "image_std" and any(x == 0 for x in numbers):
            raise ConfigError(f"{path}: image_std must not contain zeros, got {value!r}")


# preprocessor_config.json keys each media function takes. Video pixel bounds are deliberately absent: the
# official processor always overrides them with its own per-frame bounds (the defaults of preprocess_videos).
_IMAGE_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels", "image_mean",
               "image_std")
_VIDEO_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")


def media_options(directory: str) -> dict:
    """image_options / video_options from preprocessor_config.json (+ video_preprocessor_config.json)."""
    found = {}
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    found[name] = json.load(f)
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read {path}: {e}") from None
    pre = dict(found.get("preprocessor_config.json", {}))
    size = pre.get("size") or {}
    if isinstance(size, dict):  # newer files keep the pixel bounds as size.shortest_edge / size.longest_edge
        pre.setdefault("min_pixels", size.get("shortest_edge"))
        pre.setdefault("max_pixels", size.get("longest_edge"))
    video = {**pre, **found.get("video_preprocessor_config.json", {})}
    options = {}
    image_options = {k: pre[k] for k in _IMAGE_KEYS if pre.get(k) is not None}
    video_options = {k: video[k] for k in _VIDEO_KEYS if video.get(k) is not None}
    video_file = next((n for n in ("video_preprocessor_config.json", "preprocessor_config.json") if n in found),
                      "preprocessor_config.json")
    for name, opts in (("preprocessor_config.json", image_options), (video_file, video_options)):
        check_media_options(os.path.join(directory, name), opts)
    if image_options:
        options["image_options"] = image_options
    if video_options:
        options["video_options"] = video_options
    samples = pre.get("n_samples") or (pre.get("chunk_length") or 0) * (pre.get("sampling_rate") or 16000)
    if isinstance(samples, (int, float)) and not isinstance(samples, bool) and samples > 0:
        options["audio_samples"] = int(samples)  # the feature extractor's length (used where the release pads to it)
    return options
