"""Video preprocessing: frame sampling and grids by the official rules, frame-by-frame equality with the image
path, PyAV files, bad inputs.

The reference video processor needs torchvision (not installed), so its rules are restated here from its code
(`Qwen2VLVideoProcessor.sample_frames`, `.resize`, `.patchify` and the Qwen3-Omni processor's second_per_grid).
"""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from omni.errors import InputError, MediaError
from omni.media.image import preprocess_images, smart_resize
from omni.media.video import preprocess_videos, sample_indices

av = pytest.importorskip("av")

VIDEO_BOUNDS = dict(min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32)


def clip(n, h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def write_video(path, frames, rate=10):
    """Lossless (PNG codec, RGB) so decoded frames equal the written ones."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("png", rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def reference_indices(total, source_fps, fps, t=2, min_frames=4, max_frames=768):
    """Qwen2VLVideoProcessor.sample_frames with `fps` and metadata, restated."""
    max_frames = math.floor(min(max_frames, total) / t) * t
    n = total / source_fps * fps
    n = min(max(n, min_frames), max_frames, total)
    n = math.floor(n / t) * t
    return torch.arange(0, total, total / n).int().tolist()


def test_sampling_rule():
    cases = [(30, 30, 2), (100, 10, 2), (5, 1, 30), (2000, 30, 30), (301, 29.97, 2), (7, 30, 1), (1000, 25, 0.5)]
    for total, src, fps in cases:
        got = sample_indices(total, src, fps).tolist()
        assert got == reference_indices(total, src, fps), (total, src, fps)
        assert len(got) % 2 == 0 and len(got) <= 768 and max(got) < total
    assert sample_indices(30, 30, 2).tolist() == [0, 7, 15, 22]  # 1 s at 2 fps is 2 frames: raised to min 4
    assert len(sample_indices(2000, 30, 30)) == 768


def test_frames_equal_image_path_frame_by_frame():
    frames = clip(5, 70, 90)
    out = preprocess_videos([frames])
    h, w = smart_resize(70, 90, 32, **VIDEO_BOUNDS)
    gh, gw = h // 16, w // 16
    assert out["video_grid_thw"].tolist() == [[3, gh, gw]]  # 5 frames padded to 6 with the last one
    video = out["pixel_values_videos"].view(3, gh * gw, 3, 2, 16, 16)
    for f in range(6):
        image = preprocess_images(frames[min(f, 4)], **VIDEO_BOUNDS)
        assert image["image_grid_thw"].tolist() == [[1, gh, gw]]
        single = image["pixel_values"].view(gh * gw, 3, 2, 16, 16)[:, :, 0]
        assert torch.equal(video[f // 2, :, :, f % 2], single)


def test_input_forms_agree_and_second_per_grid():
    frames = clip(4, 33, 47, seed=1)
    as_array = preprocess_videos(frames)  # one video, not a list
    as_tensor = preprocess_videos([torch.from_numpy(frames).permute(0, 3, 1, 2)])
    as_list = preprocess_videos([[Image.fromarray(f) for f in frames]])
    for other in (as_tensor, as_list):
        assert torch.equal(other["pixel_values_videos"], as_array["pixel_values_videos"])
        assert torch.equal(other["video_grid_thw"], as_array["video_grid_thw"])
    # official processor: temporal_patch_size / fps, with 1.0 fps assumed when none is given
    assert as_array["video_second_per_grid"].tolist() == [2.0]
    assert preprocess_videos(frames, fps=4)["video_second_per_grid"].tolist() == [0.5]
    two = preprocess_videos([frames, clip(2, 64, 64, seed=2)], fps=2.0)
    assert two["video_second_per_grid"].tolist() == [1.0, 1.0]
    assert two["video_grid_thw"][:, 0].tolist() == [2, 1]


def test_in_memory_frames_resampled_with_source_fps():
    frames = clip(40, seed=3)
    got = preprocess_videos(frames, fps=2, source_fps=10)
    idx = reference_indices(40, 10, 2)
    want = preprocess_videos(frames[idx], fps=2)
    assert torch.equal(got["pixel_values_videos"], want["pixel_values_videos"])
    assert got["video_grid_thw"].tolist() == [[len(idx) // 2, *want["video_grid_thw"][0, 1:].tolist()]]


def test_file_all_frames_and_sampled(tmp_path):
    frames = clip(20, 48, 64, seed=4)
    path = tmp_path / "clip.mov"
    write_video(path, frames, rate=10)
    all_frames = preprocess_videos(str(path))
    assert torch.equal(all_frames["pixel_values_videos"], preprocess_videos(frames)["pixel_values_videos"])
    sampled = preprocess_videos([path], fps=2)  # 2 s at 10 fps -> 4 frames at indices 0, 5, 10, 15
    idx = reference_indices(20, 10, 2)
    assert idx == [0, 5, 10, 15]
    assert torch.equal(sampled["pixel_values_videos"], preprocess_videos(frames[idx], fps=2)["pixel_values_videos"])
    assert sampled["video_second_per_grid"].tolist() == [1.0]


def test_clip_pixel_budget():
    # the reference's cap_pixels_per_frame: max(min(max_pixels, total * T // frames), int(1.05 * min_pixels))
    frames = clip(8, 480, 640, seed=5)
    total = 4 * 200 * 32 * 32
    out = preprocess_videos(frames, total_pixels=total)
    cap = max(min(768 * 32 * 32, total * 2 // 8), int(128 * 32 * 32 * 1.05))
    h, w = smart_resize(480, 640, 32, 128 * 32 * 32, cap)
    assert out["video_grid_thw"].tolist() == [[4, h // 16, w // 16]]
    assert h * w <= cap < 480 * 640


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    cases = [
        (str(bad), MediaError, "cannot decode"),
        (str(tmp_path / "missing.mp4"), MediaError, "no such video"),
        ([Image.new("RGB", (32, 32))], MediaError, "single image"),
        (3.5, MediaError, "unsupported type"),
        ([[]], MediaError, "no frames"),
        ([[np.zeros((32, 32, 3), np.uint8), np.zeros((40, 32, 3), np.uint8)]], MediaError, "different sizes"),
        (np.zeros((2, 32, 32), np.uint8), MediaError, r"\(frames, H, W, C\)"),
        (np.zeros((2, 0, 32, 3), np.uint8), MediaError, "no pixels"),
        ([], MediaError, "no videos"),
    ]
    for value, exc, message in cases:
        with pytest.raises(exc, match=message):
            preprocess_videos(value)
    with pytest.raises(MediaError, match="too short"):
        preprocess_videos(clip(1), fps=2, source_fps=10)
    with pytest.raises(InputError, match="fps"):
        preprocess_videos(clip(2), fps=0)
