"""Malformed requests to the processor and the Thinker: placeholder / media count mismatches, malformed
conversations and batches raise InputError saying what is wrong and how to build the request instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import omni
from omni.errors import InputError

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
AUDIO = "<|audio_start|><|audio_pad|><|audio_end|>"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return omni.Processor.from_pretrained(tiny_dir)


def _image():
    return np.zeros((64, 64, 3), np.uint8)


def _tone():
    return np.sin(np.arange(16000, dtype=np.float32) * 0.1) * 0.3


def _user(*items):
    return [{"role": "user", "content": list(items)}]


CASES = [  # (id, call(processor), message fragments)
    ("two image placeholders, one image", lambda p: p(text=[IMAGE + IMAGE], images=[_image()]),
     ["2 image placeholder(s)", "1 image input(s)", "exactly one image per placeholder"]),
    ("image without placeholder", lambda p: p(text=["hi"], images=[_image()]), ["0 image placeholder(s)"]),
    ("audio placeholder, no audio", lambda p: p(text=[AUDIO], audio=[]), ["1 audio placeholder(s)", "0 audio"]),
    ("two clips, one placeholder", lambda p: p(text=[AUDIO], audio=[_tone(), _tone()]), ["2 audio input(s)"]),
    ("video placeholder, no video", lambda p: p(text=[VIDEO]), ["1 video placeholder(s)", "0 video"]),
    ("placeholders split across a batch", lambda p: p(text=[IMAGE, IMAGE, "x"], images=[_image()]),
     ["2 image placeholder(s)", "1 image input(s)"]),
    ("messages and text", lambda p: p(_user({"type": "text", "text": "a"}), text="a"), ["not both or neither"]),
    ("neither messages nor text", lambda p: p(), ["not both or neither"]),
    ("messages and media lists", lambda p: p(_user({"type": "text", "text": "a"}), images=[_image()]),
     ["media come from the content items"]),
    ("empty conversation list", lambda p: p([]), ["non-empty"]),
    ("message without role", lambda p: p([{"content": "hi"}]), ["message 0", "string 'role'"]),
    ("content is a number", lambda p: p([{"role": "user", "content": 42}]), ["content must be a string or a list"]),
    ("unknown item type", lambda p: p(_user({"type": "smell", "smell": "x"})), ["'type' in ['text', 'image'"]),
    ("text item without text", lambda p: p(_user({"type": "text", "text": None})), ["needs a string 'text'"]),
    ("image item without its data", lambda p: p(_user({"type": "image", "url": "x.png"})),
     ["image item needs its data under the key 'image'"]),
    ("text not strings", lambda p: p(text=[1, 2]), ["text must be a string or a non-empty list of strings"]),
    ("padding side", lambda p: p(text="hi", padding_side="middle"), ["'left' or 'right'", "'middle'"]),
    ("audio-in-video without a track",
     lambda p: p(_user({"type": "video", "video": np.zeros((4, 64, 64, 3), np.uint8)}), use_audio_in_video=True),
     ["needs each video's sound track", "'audio': waveform"]),
    ("video_audio count", lambda p: p(text=[VIDEO], videos=[np.zeros((4, 64, 64, 3), np.uint8)],
                                      video_audio=[_tone(), _tone()], use_audio_in_video=True),
     ["video_audio has 2 entries for 1 videos"]),
]


@pytest.mark.parametrize("call, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request(processor, call, fragments):
    with pytest.raises(InputError) as info:
        call(processor)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    batch = processor(_user({"type": "image", "image": _image()}, {"type": "text", "text": "what is it?"}))
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]  # healthy: a good request still works


def test_model_batch_with_mismatched_media(tiny_model, processor):
    """A batch whose placeholders do not match its media (e.g. assembled by hand) is refused by the Thinker."""
    two = processor(text=[IMAGE + IMAGE], images=[_image(), _image()])
    with pytest.raises(InputError, match="8 image placeholder tokens but the image inputs give 4 features.*Processor"):
        tiny_model.thinker(input_ids=two["input_ids"], attention_mask=two["attention_mask"],
                           pixel_values=two["pixel_values"][:16], image_grid_thw=two["image_grid_thw"][:1])
    text_only = processor(text=["hi"])
    with pytest.raises(InputError, match="0 audio placeholder tokens but the audio inputs give"):
        audio = processor(text=[AUDIO], audio=[_tone()])
        tiny_model.thinker(input_ids=text_only["input_ids"], input_features=audio["input_features"],
                           feature_attention_mask=audio["feature_attention_mask"])
    with pytest.raises(InputError, match="image pixels were given without their image_grid_thw"):
        tiny_model.thinker(input_ids=two["input_ids"], pixel_values=two["pixel_values"])
    with pytest.raises(InputError, match="image_grid_thw was given without pixel_values; pass both"):
        tiny_model.thinker(input_ids=two["input_ids"], attention_mask=two["attention_mask"],
                           image_grid_thw=two["image_grid_thw"])
    out = tiny_model.thinker(**two)
    assert out.logits.shape[:2] == two["input_ids"].shape


@pytest.mark.parametrize("ids, fragments", [
    (torch.tensor([[5, 100000]]), ["100000", "outside this model's vocabulary 0..511", "another tokenizer"]),
    (torch.tensor([[-100, 5]]), ["-100", "outside", "padded with -100"]),
    (torch.tensor([[5.0, 6.0]]), ["integer token ids", "torch.float32"]),
], ids=["past-vocab", "negative", "float"])
def test_token_ids_outside_the_vocabulary(tiny_model, ids, fragments):
    """An id past the embedding table is an IndexError on CPU and a device-side assert on GPU; omni names it."""
    with pytest.raises(InputError) as info:
        tiny_model.thinker(input_ids=ids)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    assert tiny_model.thinker(input_ids=torch.tensor([[5, 6]])).logits.shape == (1, 2, 512)


@pytest.mark.parametrize("kind", ["image", "audio", "video"])
def test_urls_are_refused_offline_and_file_urls_read(tmp_path, kind):
    """Media as the ecosystem writes them: an http(s) URL is a named error (omni reads no network), a file:// path
    is the file."""
    from PIL import Image

    from omni.errors import MediaError
    from omni.media.audio import load_audio
    from omni.media.image import load_rgb
    from omni.media.video import preprocess_videos

    read = {"image": load_rgb, "audio": load_audio, "video": preprocess_videos}[kind]
    with pytest.raises(MediaError, match="is a URL; omni does not download media"):
        read(f"https://example.com/x.{kind}")
    if kind == "image":
        Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
        assert load_rgb(f"file://{tmp_path / 'x.png'}")[0, 0].tolist() == [1, 2, 3]
    elif kind == "audio":
        import soundfile

        soundfile.write(tmp_path / "x.wav", np.zeros(1600, np.float32), 16000)
        assert load_audio(f"file://{tmp_path / 'x.wav'}").shape == (1600,)
