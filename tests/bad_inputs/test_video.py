"""Bad and unusual videos: unusable ones raise MediaError / InputError saying what is wrong and what to do; a
one-frame clip is valid (its temporal patch is completed with a copy of the frame)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from omni.errors import InputError, MediaError
from omni.media.video import preprocess_videos


def _write_video(path, frames: int, size: int = 64, rate: int = 4) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = np.full((size, size, 3), 30 * i % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 8)


def _healthy() -> None:
    out = preprocess_videos(np.zeros((4, 64, 64, 3), np.uint8))
    assert out["video_grid_thw"].tolist() == [[2, 24, 24]]


def test_one_frame_array_and_file(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    one = preprocess_videos(frame[None])
    two = preprocess_videos(np.stack([frame, frame]))  # what the padding must amount to
    # 64 px -> 384 px (24 patches of 16): 144 tokens, over the 128-token per-frame minimum
    assert one["video_grid_thw"].tolist() == [[1, 24, 24]]
    assert torch.equal(one["pixel_values_videos"], two["pixel_values_videos"])
    out = preprocess_videos(_write_video(tmp_path / "one.mp4", 1))
    assert out["video_grid_thw"].tolist() == [[1, 24, 24]]


def _bytes_of(path: str, cut: float) -> bytes:
    data = open(path, "rb").read()
    return data[: int(len(data) * cut)]


@pytest.mark.parametrize("make, error, fragments", [
    (lambda p, c: np.zeros((0, 64, 64, 3), np.uint8), MediaError, ["video 0 has no frames"]),
    (lambda p, c: [[]], MediaError, ["video 0 has no frames"]),
    (lambda p, c: torch.zeros(0, 3, 64, 64), MediaError, ["video 0 has no frames"]),
    (lambda p, c: _file(p, "zero.mp4", b""), MediaError, ["cannot decode video", "zero.mp4", "corrupt"]),
    (lambda p, c: _file(p, "cut.mp4", _bytes_of(c, 0.3)), MediaError, ["cannot decode video", "cut.mp4"]),
    (lambda p, c: _file(p, "junk.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4), MediaError,
     ["cannot decode video", "junk.mp4"]),
    (lambda p, c: _sound_only(p), MediaError, ["has no video stream"]),
    (lambda p, c: str(p / "missing.mp4"), MediaError, ["no such video file", "missing.mp4"]),
    (lambda p, c: [[np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)]], MediaError,
     ["frames have different sizes", "resize them"]),
    (lambda p, c: np.zeros((64, 64, 3), np.uint8), MediaError, ["a video array is (frames, H, W, C)"]),
    (lambda p, c: Image.new("RGB", (64, 64)), MediaError, ["is a single image", "wrap one video's frames"]),
    (lambda p, c: 3.5, MediaError, ["unsupported type float"]),
    (lambda p, c: [], MediaError, ["no videos given"]),
], ids=["0-frame-array", "0-frame-list", "0-frame-tensor", "zero-bytes", "truncated", "junk", "no-video-stream",
        "missing", "mixed-sizes", "3-d-array", "pil-image", "float", "no-videos"])
def test_unusable_video(tmp_path, clip, make, error, fragments):
    with pytest.raises(error) as info:
        preprocess_videos(make(tmp_path, clip))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    _healthy()


def _file(tmp_path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def _sound_only(tmp_path) -> str:
    soundfile.write(tmp_path / "sound.wav", np.zeros(1600, np.float32), 16000)
    return str(tmp_path / "sound.wav")


def test_sampling_a_one_frame_file_and_bad_fps(tmp_path, clip):
    one = _write_video(tmp_path / "one.mp4", 1)
    with pytest.raises(MediaError, match="1 frame.*too short to sample at fps=2.*fps=None"):
        preprocess_videos(one, fps=2.0)
    with pytest.raises(InputError, match="fps must be a positive number, got -1"):
        preprocess_videos(clip, fps=-1)
    with pytest.raises(MediaError, match="frame rate is unknown"):
        preprocess_videos(np.zeros((8, 64, 64, 3), np.uint8), fps=2.0, source_fps=0)
    out = preprocess_videos(clip, fps=2.0)  # 8 frames at 4 fps = 2 s -> 4 frames at 2 fps
    assert out["video_grid_thw"].tolist() == [[2, 24, 24]]
    assert out["video_second_per_grid"].tolist() == [1.0]
