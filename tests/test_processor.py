"""omni.Processor against the official Qwen3OmniMoeProcessor (transformers, the oracle).

Why the reference is assembled by hand: `Qwen3OmniMoeProcessor.__init__` validates its video processor against
transformers' video-processor registry, which needs torchvision, and torchvision cannot be installed beside this
CPU torch (REFERENCE_NOTES.md). So the reference instance is created with `object.__new__` and given the real
parts that work without torchvision: the Qwen2 tokenizer loaded from the same files, `Qwen2VLImageProcessorPil`
and `WhisperFeatureExtractor` configured like the Qwen3-Omni release, and the same chat template. Its `__call__`
then runs the official code unchanged: placeholder expansion (including the audio-in-video interleave), audio
feature extraction, tokenisation and padding.

Videos: the reference needs a video processor; `_GivenVideos` hands it the pixel values and grids that omni's
`preprocess_videos` produced. Video pixel values are therefore not an independent check here (the video
preprocessing has its own tests); what is checked is the official video token expansion, the audio-in-video
interleaving and video_second_per_grid, on real grids.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from omni.errors import InputError
from omni.interleave import interleave_tokens_by_time as interleave_video_audio
from omni.media.processor import Processor
from omni.media.chat import BUILTIN_TEMPLATE

MERGE, PATCH = 2, 16
IMAGE_SIZE = {"shortest_edge": 32 * 32, "longest_edge": 32 * 32 * 64}


def _rng(seed):
    return np.random.default_rng(seed)


def _image(seed, h, w):
    return (_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _wave(seed, seconds):
    return (0.2 * _rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def _video(seed, frames, h, w):
    return (_rng(seed).random((frames, h, w, 3)) * 255).astype(np.uint8)


class _GivenVideos:
    """Stands in for the reference video processor: returns omni's preprocessed videos (see module docstring)."""

    temporal_patch_size, merge_size = 2, MERGE
    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, videos, **kwargs):
        return dict(self.outputs)


def _reference(tokenizer_dir, videos_out=None):
    from transformers import AutoTokenizer, Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ref = object.__new__(Qwen3OmniMoeProcessor)
    ref.tokenizer = tok
    ref.chat_template = BUILTIN_TEMPLATE
    ref.image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH, temporal_patch_size=2, merge_size=MERGE, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size=dict(IMAGE_SIZE),
    )
    ref.feature_extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                                    chunk_length=300, n_fft=400, padding_value=0.0)
    ref.video_processor = _GivenVideos(videos_out or {})
    for name in ("image_token", "audio_token", "video_token", "image_token_id", "audio_token_id", "video_token_id",
                 "vision_bos_token", "vision_eos_token", "audio_bos_token", "audio_eos_token"):
        setattr(ref, name, getattr(tok, name))
    return ref


@pytest.fixture(scope="module")
def processor(qwen_tokenizer_dir):
    # the bare processor's flow with PIL resizing: what the reference assembled above runs (the cards' flow with
    # torchvision resizing is compared in tests/test_card_flow.py)
    return Processor.from_pretrained(qwen_tokenizer_dir, chat_template=BUILTIN_TEMPLATE, preprocess="processor",
                                     resize_backend="pil",
                                     image_options={"patch_size": PATCH, "merge_size": MERGE,
                                                    "min_pixels": IMAGE_SIZE["shortest_edge"],
                                                    "max_pixels": IMAGE_SIZE["longest_edge"]},
                                     video_options={"min_pixels": 32 * 32, "max_pixels": 32 * 32 * 16})


def _compare(ours: dict, theirs, keys=None):
    theirs = {k: v for k, v in theirs.items()}
    assert set(ours) == set(keys or theirs), (sorted(ours), sorted(theirs))
    for k, v in ours.items():
        ref = theirs[k]
        ref = ref if torch.is_tensor(ref) else torch.tensor(ref)
        if v.is_floating_point():
            torch.testing.assert_close(v, ref.to(v.dtype), msg=k)
        else:
            assert torch.equal(v, ref.to(v.dtype)), k


def _render(ref, convs):
    return ref.apply_chat_template(convs, tokenize=False, add_generation_prompt=True)


def test_text_only_batch_both_paddings(processor, qwen_tokenizer_dir):
    ref = _reference(qwen_tokenizer_dir)
    convs = [[{"role": "user", "content": "Hello there, how are you?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi 😀"},
              {"role": "assistant", "content": "Yo."}, {"role": "user", "content": [{"type": "text", "text": "x"}]}]]
    for side in ("left", "right"):
        ours = processor(convs, padding_side=side)
        theirs = ref(text=_render(ref, convs), padding=True, padding_side=side, return_tensors="pt")
        _compare(ours, theirs)
    # the same prompts given as text take the same path
    assert torch.equal(processor(text=_render(ref, convs), padding_side="right")["input_ids"], ours["input_ids"])


def test_labels_keep_only_assistant_replies(processor):
    conv = [{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "second 😀"}]
    out = processor([conv, conv[:3]], add_generation_prompt=False, padding_side="right", return_labels=True)
    tok = processor.tokenizer
    for row, labels, mask in zip(out["input_ids"], out["labels"], out["attention_mask"]):
        kept = [int(t) for t, lab in zip(row, labels) if lab != -100]
        assert all(int(lab) in (-100, int(t)) for t, lab in zip(row, labels))
        assert all(int(lab) == -100 for lab, m in zip(labels, mask) if m == 0)
        assert tok.decode(kept).replace("<|im_end|>", "|") in ("first answer|second 😀|", "first answer|")


def test_placeholder_count_mismatch(processor):
    with pytest.raises(InputError, match="image placeholder"):
        processor(text="<|vision_start|><|image_pad|><|vision_end|> two <|image_pad|>", images=[_image(0, 64, 64)])
    with pytest.raises(InputError, match="audio placeholder"):
        processor(text="no audio here", audio=[_wave(0, 1.0)])
    with pytest.raises(InputError, match="either messages"):
        processor()
    with pytest.raises(InputError, match="padding_side"):
        processor(text="x", padding_side="middle")


def test_interleave_rule():
    # 3 temporal grids of 2x2 merged tokens at 0, 26, 52 position ids; 40 audio tokens at 0..39
    order = interleave_video_audio((3, 4, 4), 40, 2.0, 13.0, 2, "V", "A")
    assert order == ["V"] * 4 + ["A"] * 26 + ["V"] * 4 + ["A"] * 14 + ["V"] * 4
    assert interleave_video_audio((1, 2, 2), 0, 2.0, 13.0, 2, "V", "A") == ["V"]


@pytest.mark.parametrize("grid,n_audio,seconds", [
    ((3, 4, 4), 40, 2.0), ((4, 4, 6), 7, 2.0), ((2, 2, 2), 100, 0.5), ((5, 4, 4), 33, 2 / 3), ((1, 8, 8), 0, 2.0),
])
def test_interleave_matches_official_method(qwen_tokenizer_dir, grid, n_audio, seconds):
    """The official interleave (`replace_video_with_audio_token`) on the same grid and audio length."""
    ref = _reference(qwen_tokenizer_dir)
    theirs = ref.replace_video_with_audio_token(
        {"video_grid_thw": torch.tensor([grid]), "video_second_per_grid": [seconds]}, 0,
        {"num_audio_tokens": torch.tensor([n_audio])}, 0, position_id_per_seconds=13.0,
    )
    ours = interleave_video_audio(grid, n_audio, seconds, 13.0, MERGE, ref.video_token, ref.audio_token)
    assert ref.audio_bos_token + "".join(ours) + ref.audio_eos_token == theirs


def test_from_pretrained_reads_config_and_checks_ids(qwen_tokenizer_dir, tmp_path):
    import shutil

    from omni.errors import ConfigError

    p = Processor.from_pretrained(qwen_tokenizer_dir)
    with open(os.path.join(qwen_tokenizer_dir, "config.json")) as f:
        cfg = json.load(f)
    th = cfg["thinker_config"]
    assert (p.merge_size, p.n_window, p.position_id_per_seconds) == (
        th["vision_config"]["spatial_merge_size"], th["audio_config"]["n_window"], th["position_id_per_seconds"])
    d = tmp_path / "ckpt"
    shutil.copytree(qwen_tokenizer_dir, d)
    th["image_token_id"] = th["image_token_id"] + 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="image_token_id"):
        Processor.from_pretrained(d)


def test_save_and_reload(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    again = Processor.from_pretrained(tmp_path)
    assert again.chat_template == processor.chat_template
    conv = [{"role": "user", "content": "round trip"}]
    assert torch.equal(again(conv)["input_ids"], processor(conv)["input_ids"])


# ---------------------------------------------------------------------------------------------- media
def _conversations(audio=False, video=False, video_audio=False):
    """Two conversations: 3 images (different sizes), optionally 2 audio clips and a video with its sound."""
    a = [{"role": "user", "content": [{"type": "image", "image": _image(1, 64, 96)},
                                      {"type": "text", "text": "What is here?"}]}]
    b = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
        {"type": "image", "image": _image(4, 96, 64)}, {"type": "text", "text": "and"},
        {"type": "image", "image": _image(5, 40, 70)}, {"type": "text", "text": "?"}]}]
    if audio:
        a[0]["content"].append({"type": "audio", "audio": _wave(2, 1.3)})
        b[1]["content"].insert(0, {"type": "audio", "audio": _wave(3, 2.7)})
    if video:
        item = {"type": "video", "video": _video(6, 5, 64, 80)}
        if video_audio:
            item["audio"] = _wave(7, 2.2)
        b[1]["content"].insert(2, item)
    return [a, b]


def _media(convs):
    """Per-conversation image and video lists, audio in prompt order, and each audio's source video (or None)."""
    images, videos, audio, sources, n_videos = [], [], [], [], 0
    for conv in convs:
        images.append([]), videos.append([])
        for m in conv:
            for item in m["content"] if isinstance(m["content"], list) else []:
                if item["type"] in ("image", "video"):
                    (images if item["type"] == "image" else videos)[-1].append(item[item["type"]])
                if item["type"] == "audio" or (item["type"] == "video" and "audio" in item):
                    audio.append(item["audio"])
                    sources.append(n_videos if item["type"] == "video" else None)
                n_videos += item["type"] == "video"
    return images, videos, audio, sources


@pytest.mark.parametrize("side", ["left", "right"])
def test_images_batch_matches_reference(processor, qwen_tokenizer_dir, side):
    convs = _conversations()
    ref = _reference(qwen_tokenizer_dir)
    images, _, _, _ = _media(convs)
    theirs = ref(text=_render(ref, convs), images=images, padding=True, padding_side=side, return_tensors="pt")
    _compare(processor(convs, padding_side=side), theirs)


def test_messages_path_matches_reference_apply_chat_template(processor, qwen_tokenizer_dir):
    convs = _conversations()
    ref = _reference(qwen_tokenizer_dir)
    theirs = ref.apply_chat_template(convs, tokenize=True, return_dict=True, add_generation_prompt=True,
                                     padding=True, return_tensors="pt")
    _compare(processor(convs), theirs)


def _given_videos(processor, videos):
    from omni.media.video import preprocess_videos

    out = preprocess_videos([v for vs in videos for v in vs], **processor.video_options)
    return {k: out[k] for k in ("pixel_values_videos", "video_grid_thw")}


def test_video_and_images_match_reference(processor, qwen_tokenizer_dir):
    convs = _conversations(video=True)
    images, videos, _, _ = _media(convs)
    ref = _reference(qwen_tokenizer_dir, _given_videos(processor, videos))
    theirs = ref(text=_render(ref, convs), images=images, videos=videos, padding=True, return_tensors="pt")
    ours = processor(convs)
    _compare(ours, theirs)
    assert ours["video_grid_thw"][0, 0] == 3  # 5 frames, padded to 6 with the last one: 3 temporal grids
    assert ours["video_second_per_grid"].tolist() == [2.0]  # the official 1 fps default


def test_image_options_from_preprocessor_config(qwen_tokenizer_dir, tmp_path):
    """A checkpoint's preprocessor_config.json sets the image options, as it configures the reference."""
    import shutil

    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    d = tmp_path / "ckpt"
    shutil.copytree(qwen_tokenizer_dir, d)
    (d / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": 8, "merge_size": 2, "temporal_patch_size": 2,
        "min_pixels": 16 * 16 * 4, "max_pixels": 16 * 16 * 12, "image_mean": [0.4, 0.5, 0.6],
        "image_std": [0.2, 0.3, 0.25], "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    }))
    ours = Processor.from_pretrained(d, merge_size=2, preprocess="processor", resize_backend="pil")  # as the reference
    assert ours.image_options["patch_size"] == 8
    ref = _reference(qwen_tokenizer_dir)
    ref.image_processor = Qwen2VLImageProcessorPil.from_pretrained(d)
    convs = _conversations()
    images, _, _, _ = _media(convs)
    _compare(ours(convs), ref(text=_render(ref, convs), images=images, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("side", ["left", "right"])
def test_images_and_audio_batch_match_reference(processor, qwen_tokenizer_dir, side):
    convs = _conversations(audio=True)
    ref = _reference(qwen_tokenizer_dir)
    images, _, audio, _ = _media(convs)
    theirs = ref(text=_render(ref, convs), images=images, audio=audio, padding=True, padding_side=side,
                 return_tensors="pt")
    _compare(processor(convs, padding_side=side), theirs)


def test_audio_messages_path_matches_reference_apply_chat_template(processor, qwen_tokenizer_dir):
    convs = _conversations(audio=True)
    ref = _reference(qwen_tokenizer_dir)
    theirs = ref.apply_chat_template(convs, tokenize=True, return_dict=True, add_generation_prompt=True,
                                     padding=True, return_tensors="pt")
    _compare(processor(convs), theirs)


@pytest.mark.parametrize("use_audio_in_video", [False, True])
def test_video_with_and_without_its_audio(processor, qwen_tokenizer_dir, use_audio_in_video):
    convs = _conversations(audio=True, video=True, video_audio=True)
    images, videos, audio, sources = _media(convs)
    ref = _reference(qwen_tokenizer_dir, _given_videos(processor, videos))
    kwargs = dict(padding=True, return_tensors="pt")
    if use_audio_in_video:
        kwargs.update(load_audio_from_video=True, audio_from_video_indices=sources)
    else:
        audio = [a for a, s in zip(audio, sources) if s is None]
    theirs = ref(text=_render(ref, convs), images=images, videos=videos, audio=audio, **kwargs)
    ours = processor(convs, use_audio_in_video=use_audio_in_video)
    _compare(ours, theirs)
    n_audio = (ours["input_ids"] == processor.tokenizer.token_id("audio_pad")).sum()
    assert ours["input_features"].shape[0] == (3 if use_audio_in_video else 2) and n_audio > 0


def test_text_path_with_video_audio_equals_messages_path(processor):
    convs = _conversations(audio=True, video=True, video_audio=True)
    images, videos, audio, sources = _media(convs)
    from omni.media.chat import render_chat

    texts = [render_chat(c, processor.chat_template) for c in convs]
    standalone = [a for a, s in zip(audio, sources) if s is None]
    tracks = [a for a, s in zip(audio, sources) if s is not None]
    by_text = processor(text=texts, images=images, videos=videos, audio=standalone, video_audio=tracks,
                        use_audio_in_video=True)
    by_messages = processor(convs, use_audio_in_video=True)
    assert by_text.keys() == by_messages.keys()
    for k in by_text:
        assert torch.equal(by_text[k], by_messages[k]), k


def test_audio_from_file_and_rate_pairs(processor, tmp_path):
    import soundfile

    wave = _wave(9, 1.5)
    soundfile.write(tmp_path / "clip.wav", wave, 16000, subtype="FLOAT")
    conv = lambda a: [{"role": "user", "content": [{"type": "audio", "audio": a}]}]  # noqa: E731
    from_array = processor(conv(wave))
    for given in (str(tmp_path / "clip.wav"), (wave, 16000)):
        out = processor(conv(given))
        assert all(torch.equal(out[k], from_array[k]) for k in from_array)


def test_audio_in_video_needs_the_sound_track(processor):
    convs = _conversations(video=True)  # in-memory frames without an "audio" entry
    with pytest.raises(InputError, match="sound track"):
        processor(convs, use_audio_in_video=True)
    _, videos, _, _ = _media(convs)
    with pytest.raises(InputError, match="video_audio has 0 entries"):
        processor(text="<|vision_start|><|video_pad|><|vision_end|>", videos=videos[1], video_audio=[],
                  use_audio_in_video=True)
