"""Processor options of Qwen2.5-Omni checkpoints: 30 s audio padding, 40 ms audio tokens, CLIP-normalised 14-pixel
patches, 2 fps default and the 2 s chunk interleaving of a video's sound track; checked against the reference's own
pieces (WhisperFeatureExtractor, the processor's chunk layout, get_rope_index) where the full reference processor
cannot run (it needs torchvision)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from omni.config import OmniConfig
from omni.demo import synthetic_media, tiny_tokenizer_files
from omni.models.qwen2_5_omni.audio import pooled_audio_token_count
from omni.positions import rope_index_from_config
from omni.interleave import interleave_tokens_by_chunks as interleave_video_audio_chunks
from omni.media.processor import Processor
from omni.models.qwen2_5_omni.config import MEDIA_DEFAULTS as QWEN2_5_MEDIA_DEFAULTS
from omni.media.audio import log_mel_features
from omni.media.image import preprocess_images
from omni.media.text import TextTokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("q25tok")
    tiny_tokenizer_files(str(directory))
    return TextTokenizer.from_pretrained(str(directory))


def _reference_chunk_layout(grid, n_audio, seconds, per_second=25, chunk=2.0):
    from transformers import Qwen2_5OmniProcessor

    fake = SimpleNamespace(video_processor=SimpleNamespace(merge_size=2), audio_bos_token="", audio_eos_token="",
                           video_token="V", audio_token="A")
    fake.get_chunked_index = lambda idx, n: Qwen2_5OmniProcessor.get_chunked_index(fake, idx, n)
    return Qwen2_5OmniProcessor.replace_video_with_audio_token(
        fake, {"video_grid_thw": [grid], "video_second_per_grid": [seconds]}, 0, {"num_audio_tokens": [n_audio]}, 0,
        position_id_per_seconds=per_second, seconds_per_chunk=chunk)


@pytest.mark.parametrize("grid,n_audio,seconds", [((3, 4, 4), 52, 1.0), ((4, 4, 6), 37, 0.7), ((4, 2, 2), 125, 2.5),
                                                  ((2, 2, 4), 3, 1.0), ((6, 2, 2), 300, 2 / 3)])
def test_chunk_layout_matches_the_reference_processor(grid, n_audio, seconds):
    got = "".join(interleave_video_audio_chunks(grid, n_audio, seconds, 25, 2, 2.0, "V", "A"))
    assert got == _reference_chunk_layout(grid, n_audio, seconds)


def test_audio_features_padded_to_30_seconds_match_whisper():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000 * 3 + 77, 16000, 16000 * 31)]
    want = WhisperFeatureExtractor(feature_size=128)(waves, sampling_rate=16000, padding="max_length",
                                                     return_attention_mask=True, return_tensors="pt")
    got = log_mel_features(waves, max_samples=30 * 16000)
    assert torch.equal(got["input_features"], want["input_features"])  # the 31 s clip is cut, as the official one
    assert torch.equal(got["feature_attention_mask"], want["attention_mask"].int())


def test_processor_batch_follows_the_qwen2_5_rules(tokenizer):
    image, audio, video = synthetic_media()
    track = np.tile(audio, 5)  # 5 s of sound inside an 8-frame video
    video = np.concatenate([video, video])
    proc = Processor(tokenizer, model_type="qwen2_5_omni", position_id_per_seconds=25, preprocess="processor",
                     resize_backend="pil")
    t = tokenizer.token
    prompt = (f"a{t('vision_start')}{t('image_pad')}{t('vision_end')}b{t('audio_start')}{t('audio_pad')}"
              f"{t('audio_end')}c{t('vision_start')}{t('video_pad')}{t('vision_end')}d")
    batch = proc(text=[prompt], images=[image], audio=[audio], videos=[video], video_audio=[track],
                 use_audio_in_video=True)
    # 300 s audio padding (chunk_length 300 in the release's preprocessor_config.json); 25 tokens per second
    assert batch["input_features"].shape[-1] == 30000
    frames = batch["feature_attention_mask"].sum(-1)
    ids = batch["input_ids"][0]
    assert int((ids == tokenizer.token_id("audio_pad")).sum()) == int(pooled_audio_token_count(frames).sum()) == 25 + 125
    # CLIP-normalised 14-pixel patches; 2 fps assumed: 1 s per temporal grid of 2 frames
    want = preprocess_images([image], merge_size=2, **QWEN2_5_MEDIA_DEFAULTS)
    assert torch.equal(batch["pixel_values"], want["pixel_values"])
    assert batch["pixel_values"].shape[1] == 3 * 2 * 14 * 14
    assert batch["video_second_per_grid"].tolist() == [1.0]

    # the layout is the one the reference's position walk expects: positions agree with its get_rope_index
    names = {"audio_token_id": "audio_pad", "image_token_id": "image_pad", "video_token_id": "video_pad",
             "audio_start_token_id": "audio_start", "vision_start_token_id": "vision_start"}
    cfg = OmniConfig.from_name("tiny-qwen2.5").thinker  # its ids are the tiny tokenizer's
    assert all(getattr(cfg, k) == tokenizer.token_id(v) for k, v in names.items())
    assert (cfg.audio_end_token_id, cfg.vision_end_token_id) == (tokenizer.token_id("audio_end"),
                                                                 tokenizer.token_id("vision_end"))
    media = dict(image_grid_thw=batch["image_grid_thw"], video_grid_thw=batch["video_grid_thw"],
                 video_second_per_grid=batch["video_second_per_grid"], use_audio_in_video=True)
    got, _ = rope_index_from_config(cfg, ids[None], batch["attention_mask"], audio_feature_lengths=frames, **media)

    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniPreTrainedModelForConditionalGeneration as Walker,
    )

    fake = SimpleNamespace(spatial_merge_size=2, config=SimpleNamespace(
        position_id_per_seconds=25, seconds_per_chunk=2, **{k: getattr(cfg, k) for k in names}))
    fake.get_llm_pos_ids_for_vision = lambda *a: Walker.get_llm_pos_ids_for_vision(fake, *a)
    fake.get_chunked_index = lambda *a: Walker.get_chunked_index(fake, *a)
    want, _ = Walker.get_rope_index(fake, ids[None], batch["image_grid_thw"], batch["video_grid_thw"],
                                    batch["attention_mask"], True, frames, batch["video_second_per_grid"])
    assert torch.equal(got, want.float())


def test_qwen3_processor_is_unchanged_by_default(tokenizer):
    proc = Processor(tokenizer)
    assert proc.model_type == "qwen3_omni_moe" and "max_samples" not in proc.audio_options
    with pytest.raises(Exception, match="model_type"):
        Processor(tokenizer, model_type="qwen2_omni")
