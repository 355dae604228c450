"""Image preprocessing parity with the reference PIL processor configured as Qwen3-Omni, colour modes, bad inputs."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from omni.errors import MediaError
from omni.media.image import num_vision_tokens, preprocess_images, smart_resize

transformers = pytest.importorskip("transformers")
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessorPil,
    smart_resize as ref_smart_resize,
)

QWEN3_OMNI = dict(patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=3136, max_pixels=12845056,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def reference(images, **overrides):
    proc = Qwen2VLImageProcessorPil(**{**QWEN3_OMNI, **overrides})
    out = proc(images=images, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


def random_rgb(h, w, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def assert_same(images, ours=None, **overrides):
    want_px, want_grid = reference(images, **overrides)
    got = preprocess_images(ours if ours is not None else images, **overrides)
    assert torch.equal(got["image_grid_thw"], want_grid)
    assert got["pixel_values"].dtype == torch.float32
    assert torch.equal(got["pixel_values"], want_px.float())  # bit-exact: same PIL bicubic, same arithmetic


@pytest.mark.parametrize("h, w", [(5, 7), (20, 3000), (333, 517), (64, 64), (1, 150), (31, 33), (1000, 37)])
def test_sizes_match_reference(h, w):
    assert_same([Image.fromarray(random_rgb(h, w, seed=h * w))])


def test_max_pixels_clamp_and_several_images_in_one_call():
    imgs = [Image.fromarray(random_rgb(900, 700, 1)), Image.fromarray(random_rgb(50, 80, 2)),
            Image.fromarray(random_rgb(613, 2011, 3))]
    assert_same(imgs, max_pixels=256 * 256, min_pixels=64 * 64)


def test_smart_resize_matches_reference_including_huge_images():
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (1, 200), (32, 32), (4000, 3500), (10000, 9000), (7, 1399)]
    sizes += [tuple(int(x) for x in rng.integers(1, 6000, 2)) for _ in range(300)]
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in ((3136, 12845056), (128 * 32 * 32, 768 * 32 * 32)):
            assert smart_resize(h, w, 32, lo, hi) == ref_smart_resize(h, w, 32, lo, hi), (h, w, lo, hi)


def test_colour_modes_match_reference():
    base = Image.fromarray(random_rgb(70, 90, 4, channels=4), "RGBA")
    p_transparent = base.convert("RGB").convert("P")
    p_transparent.info["transparency"] = 3
    modes = [base, base.convert("LA"), base.convert("L"), base.convert("1"), base.convert("CMYK"),
             base.convert("RGB").convert("P"), p_transparent, base.convert("RGB").convert("YCbCr")]
    for img in modes:
        assert_same([img])


def test_arrays_tensors_and_files():
    a = random_rgb(45, 61, 5)
    want_px, want_grid = reference([Image.fromarray(a)])
    for same in (a, torch.from_numpy(a).permute(2, 0, 1), a.astype(np.float32) / 255,
                 torch.from_numpy(a).permute(2, 0, 1).double() / 255):
        got = preprocess_images(same)
        assert torch.equal(got["image_grid_thw"], want_grid) and torch.equal(got["pixel_values"], want_px)
    # channels-last numpy RGBA and grey arrays follow the reference's array path
    rgba = random_rgb(40, 50, 6, channels=4)
    assert_same([rgba], ours=[rgba])
    grey = random_rgb(40, 50, 7, channels=1)
    assert_same([grey], ours=[grey[..., 0]])


def test_path_input(tmp_path):
    a = random_rgb(52, 77, 8)
    path = tmp_path / "x.png"
    Image.fromarray(a).save(path)
    assert_same([Image.fromarray(a)], ours=[str(path)])


def test_token_counts():
    out = preprocess_images([Image.fromarray(random_rgb(64, 96))])
    grid = out["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 6]]
    assert num_vision_tokens(grid[0]) == 6
    assert num_vision_tokens(grid).tolist() == [6]
    assert out["pixel_values"].shape == (24, 3 * 2 * 16 * 16)


def test_bad_inputs(tmp_path):
    bad = tmp_path / "corrupt.png"
    buf = io.BytesIO()
    Image.fromarray(random_rgb(30, 30)).save(buf, format="PNG")
    bad.write_bytes(buf.getvalue()[:60])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [
        (np.zeros((0, 10, 3), np.uint8), "no pixels"),
        (Image.new("RGB", (0, 5)), "no pixels"),
        (str(bad), "cannot decode"),
        (str(text), "cannot decode"),
        (str(tmp_path / "missing.jpg"), "no such file"),
        (12345, "unsupported type"),
        (np.zeros((10, 2500, 3), np.uint8), "aspect ratio"),
        (np.full((8, 8, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8, 2), np.uint8), "expected"),
        (np.full((8, 8, 3), 300, np.int32), "0..255"),
    ]
    for value, message in cases:
        with pytest.raises(MediaError, match=message):
            preprocess_images(value)
    with pytest.raises(MediaError, match="no images"):
        preprocess_images([])
