"""Bad and unusual images: unusable ones raise MediaError saying what is wrong and what to do; odd but valid
ones (1x1, huge, RGBA, CMYK, grayscale, palette) come out as the right RGB patches and grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from omni.errors import MediaError
from omni.media.image import MAX_PIXELS, preprocess_images, smart_resize

from .conftest import peak_rss_growth


def _healthy() -> None:
    out = preprocess_images(np.full((64, 64, 3), 200, np.uint8))
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]


def _same_as_rgb(image: Image.Image, rgb: Image.Image) -> None:
    got, want = preprocess_images(image), preprocess_images(rgb)
    assert torch.equal(got["image_grid_thw"], want["image_grid_thw"])
    assert torch.equal(got["pixel_values"], want["pixel_values"])


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _png_bytes(tmp_path) -> bytes:
    Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / "good.png")
    return (tmp_path / "good.png").read_bytes()


@pytest.mark.parametrize("make, fragments", [
    (lambda p: _write(p, "zero.png", b""), ["cannot decode", "zero.png", "is the file corrupt?"]),
    (lambda p: _write(p, "cut.png", _png_bytes(p)[:60]), ["cannot decode", "cut.png", "corrupt"]),
    (lambda p: _write(p, "text.jpg", b"this is not an image\n" * 20), ["cannot decode", "text.jpg"]),
    (lambda p: str(p / "missing.png"), ["no such file", "missing.png"]),
    (lambda p: np.zeros((1, 10000, 3), np.uint8), ["aspect ratio above 200", "crop or pad"]),
    (lambda p: np.zeros((0, 16, 3), np.uint8), ["no pixels"]),
    (lambda p: np.zeros((16, 16, 5), np.uint8), ["(16, 16, 5)", "C in 1, 3, 4"]),
    (lambda p: np.full((16, 16, 3), np.nan, np.float32), ["NaN or infinite"]),
    (lambda p: np.full((16, 16, 3), 7.0, np.float32), ["float images must be in [0, 1]"]),
    (lambda p: np.full((16, 16, 3), 300, np.int32), ["expected 0..255"]),
    (lambda p: torch.zeros(2, 3, 16, 16), ["expected (C, H, W) or (H, W)"]),
    (lambda p: {"image": "cat.png"}, ["unsupported type dict", "file path, PIL image"]),
    (lambda p: [], ["no images given"]),
], ids=["zero-bytes", "truncated", "not-an-image", "missing", "1x10000", "empty-array", "5-channels", "nan",
        "float-range", "int-range", "4-d-tensor", "dict", "no-images"])
def test_unusable_image(tmp_path, make, fragments):
    with pytest.raises(MediaError) as info:
        preprocess_images(make(tmp_path))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    _healthy()


def test_truncated_jpeg(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(MediaError, match="cannot decode .*cut.jpg.*corrupt"):
        preprocess_images(path)
    _healthy()


def test_decompression_bomb_file(tmp_path):
    """A small file that decodes to ~195 megapixels: PIL refuses it, omni says why and what to do."""
    Image.new("1", (15000, 13000)).save(tmp_path / "bomb.png")  # bilevel: ~24 MB while writing, tiny on disk
    with pytest.raises(MediaError, match="bomb.png.*too large to decode safely.*MAX_IMAGE_PIXELS"):
        preprocess_images(str(tmp_path / "bomb.png"))
    _healthy()


def test_one_by_one_grows_to_the_minimum():
    out = preprocess_images(np.full((1, 1, 3), 255, np.uint8))
    assert smart_resize(1, 1) == (64, 64)  # 3136-pixel minimum: sqrt(3136) = 56 -> 64, a multiple of 32
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert bool((out["pixel_values"] == 1.0).all())  # white stays white: (1 - 0.5) / 0.5


def test_hundred_megapixels_is_clamped(recwarn):
    """10000 x 10000 (PIL warns: over its 89-megapixel bomb threshold) is shrunk into max_pixels; the resize runs
    in PIL, so the only full-size copy is PIL's RGB conversion (300 MB), not three numpy copies."""
    assert smart_resize(10000, 10000) == (3552, 3552)  # the default max_pixels, 12.8 M
    assert 3552 * 3552 <= MAX_PIXELS
    image = Image.new("L", (10000, 10000), 128)  # 100 MB, built in a blink
    budget = 64 * 32 * 32
    with peak_rss_growth() as grew:
        out = preprocess_images(image, max_pixels=budget)
    t, h, w = out["image_grid_thw"][0].tolist()
    assert (t, h, w) == (1, 16, 16) and h * w * 16 * 16 <= budget
    assert torch.allclose(out["pixel_values"], torch.tensor(128 / 255 * 2 - 1), atol=1e-6)
    assert grew["bytes"] < 500 * 2**20, f"peak RSS grew by {grew['bytes'] / 2**20:.0f} MiB"


def test_rgba_is_composited_on_white():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent ...
    rgba[:32, :, 3] = 255  # ... except the top half, opaque
    out = preprocess_images(Image.fromarray(rgba, "RGBA"))
    want = np.full((64, 64, 3), 255, np.uint8)
    want[:32] = (255, 0, 0)
    _same_as_rgb(Image.fromarray(rgba, "RGBA"), Image.fromarray(want))
    assert torch.equal(out["pixel_values"], preprocess_images(rgba)["pixel_values"])  # array path agrees


def test_cmyk_grayscale_palette_are_converted():
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    cmyk = rgb.convert("CMYK")
    _same_as_rgb(cmyk, cmyk.convert("RGB"))
    gray = rgb.convert("L")
    _same_as_rgb(gray, Image.merge("RGB", [gray] * 3))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    _same_as_rgb(palette, palette.convert("RGB"))
    bilevel = rgb.convert("1")
    _same_as_rgb(bilevel, bilevel.convert("RGB"))


def test_palette_with_a_transparent_index():
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    palette.putpixel((0, 0), 1)
    palette.info["transparency"] = 0  # index 0 (blue) is see-through: it must become white, not blue or black
    want = np.full((40, 40, 3), 255, np.uint8)
    want[0, 0] = (0, 255, 0)
    _same_as_rgb(palette, Image.fromarray(want))


def test_grayscale_array_and_file(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    want = preprocess_images(np.repeat(gray[..., None], 3, axis=-1))
    for src in (gray, gray[..., None], str(tmp_path / "g.png")):
        assert torch.equal(preprocess_images(src)["pixel_values"], want["pixel_values"])


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit grayscale (PNG mode I;16, or a uint16 array) is scaled by 255 / 65535; PIL alone would clip every
    level above 255 to white."""
    levels = (np.arange(64 * 64, dtype=np.float64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    want = np.repeat(np.round(levels * (255 / 65535)).astype(np.uint8)[..., None], 3, axis=-1)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    for image in (levels, Image.fromarray(levels), str(tmp_path / "deep.png")):
        got = preprocess_images(image)
        assert torch.equal(got["pixel_values"], preprocess_images(want)["pixel_values"])
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")


@pytest.mark.parametrize("image, fragment", [
    (Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)), "values in [70000, 70000]"),
    (np.full((8, 8), 300, dtype=np.int32), "expected 0..255 (8-bit) or a uint16 array"),
    (Image.fromarray(np.full((8, 8), 2.5, dtype=np.float32)), "float images must be in [0, 1]"),
])
def test_other_depths_are_refused(image, fragment):
    with pytest.raises(MediaError) as info:
        preprocess_images(image)
    assert fragment in str(info.value)
    _healthy()
