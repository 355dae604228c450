"""Property-based tests (hypothesis) of the arithmetic every request goes through, against the reference:

- the image resize rule `smart_resize`: its invariants, and equality with transformers' smart_resize;
- the audio token count of a clip: equality with the reference formula, and what the processor expands;
- position ids of whole processor batches (random mixes of text, images, audio, video, batch padding) against the
  reference Thinker's get_rope_index;
- chat-template rendering against the reference tokenizer's apply_chat_template, on random conversations.

Example counts are modest so the file runs in well under a minute.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from omni.config import OmniConfig
from omni.errors import MediaError
from omni.models.qwen3_omni.audio import audio_token_count
from omni.media.chat import BUILTIN_TEMPLATE, render_chat
from omni.media.image import MAX_ASPECT_RATIO, smart_resize

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=10, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# -- the image resize rule ----------------------------------------------------------------------------------------

sides = st.integers(1, 20000)
factors = st.sampled_from([28, 32])
budgets = st.tuples(st.integers(1, 200_000), st.integers(1, 20_000_000)).map(sorted)


@FAST
@given(height=sides, width=sides, factor=factors, budget=budgets)
def test_smart_resize_equals_the_reference_and_keeps_its_promises(height, width, factor, budget):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference

    min_pixels, max_pixels = budget
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        with pytest.raises(MediaError, match="aspect ratio"):
            smart_resize(height, width, factor, min_pixels, max_pixels)
        with pytest.raises(ValueError):
            reference(height, width, factor, min_pixels, max_pixels)
        return
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    assert (h, w) == reference(height, width, factor, min_pixels, max_pixels)
    # multiples of the factor, never empty
    assert h % factor == 0 and w % factor == 0 and h >= factor and w >= factor
    # the scale applied to both sides is one number: within one factor of it on each side (aspect ratio kept)
    rounded = (round(height / factor) * factor) * (round(width / factor) * factor)
    if rounded > max_pixels:
        scale = math.sqrt(max_pixels / (height * width))
        if h > factor and w > factor:  # not lifted to the one-patch floor
            assert h * w <= max_pixels
    elif rounded < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        assert h * w >= min_pixels * (1 - 1e-9)
    else:
        scale = 1.0
        assert min_pixels <= h * w <= max_pixels
    for got, side in ((h, height), (w, width)):
        assert got == factor or abs(got - side * scale) <= factor + 1e-6 * side * scale


# -- the audio token count ------------------------------------------------------------------------------------------


@FAST
@given(frames=st.lists(st.integers(0, 200_000), min_size=1, max_size=6))
def test_audio_token_count_equals_the_reference(frames):
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

    want = _get_feat_extract_output_lengths(torch.tensor(frames), 50)
    assert torch.equal(audio_token_count(torch.tensor(frames)), want)
    assert audio_token_count(frames[0]) == int(want[0])
    # monotone, 13 tokens per full 100-frame chunk
    assert audio_token_count(frames[0] + 100) == audio_token_count(frames[0]) + 13


# -- position ids of processor batches -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_processor(tmp_path_factory):
    from omni.demo import tiny_tokenizer_files
    from omni.media.processor import Processor

    d = tmp_path_factory.mktemp("tok")
    OmniConfig.from_name("tiny").save_pretrained(d)
    tiny_tokenizer_files(str(d))
    return Processor.from_pretrained(str(d))


@pytest.fixture(scope="module")
def position_pair():
    """omni's Thinker positions and the reference Thinker's get_rope_index, both from the tiny preset config."""
    from transformers import Qwen3OmniMoeConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeThinkerForConditionalGeneration

    from omni.thinker import Thinker

    config = OmniConfig.from_name("tiny")
    reference_config = Qwen3OmniMoeConfig(**config.to_dict()).thinker_config
    reference_config.text_config.num_hidden_layers = 1  # only get_rope_index is used: keep the build cheap
    reference = Qwen3OmniMoeThinkerForConditionalGeneration(reference_config).eval()
    with torch.device("meta"):
        ours = Thinker(config.thinker_config)  # positions need no weights
    return ours, reference


image_items = st.tuples(st.integers(8, 200), st.integers(8, 200)).map(
    lambda s: {"type": "image", "image": np.full((s[0], s[1], 3), 90, np.uint8)})
audio_items = st.integers(401, 64_000).map(  # > n_fft / 2 samples: the centered STFT reflects 200
    lambda n: {"type": "audio", "audio": (0.1 * np.sin(np.arange(n, dtype=np.float32) * 0.3))})
video_items = st.tuples(st.integers(1, 5), st.sampled_from([32, 64, 96])).map(
    lambda s: {"type": "video", "video": np.full((s[0], s[1], s[1], 3), 40, np.uint8)})
text_items = st.text(alphabet="abc xyz.?", min_size=1, max_size=12).map(lambda t: {"type": "text", "text": t})
conversations = st.lists(st.one_of(text_items, image_items, audio_items, video_items), min_size=1, max_size=4).map(
    lambda items: [{"role": "user", "content": items}])


@SLOW
@given(batch=st.lists(conversations, min_size=1, max_size=2))
def test_positions_of_processor_batches_equal_the_reference(tiny_processor, position_pair, batch):
    ours, reference = position_pair
    inputs = tiny_processor(batch, padding_side="left")
    frames = inputs["feature_attention_mask"].sum(-1) if "feature_attention_mask" in inputs else None
    got, got_delta = ours.positions(inputs["input_ids"], inputs["attention_mask"], inputs.get("image_grid_thw"),
                                    inputs.get("video_grid_thw"), inputs.get("video_second_per_grid"),
                                    inputs.get("feature_attention_mask"))
    want, want_delta = reference.get_rope_index(
        inputs["input_ids"], inputs.get("image_grid_thw"), inputs.get("video_grid_thw"), inputs["attention_mask"],
        False, frames, inputs.get("video_second_per_grid"),
    )
    assert torch.equal(got, want)
    assert torch.equal(got_delta.float(), want_delta.float())
    # the processor expanded each audio clip to the reference's token count
    if frames is not None:
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

        audio_id = OmniConfig.from_name("tiny").thinker_config.audio_token_id
        assert int((inputs["input_ids"] == audio_id).sum()) == int(_get_feat_extract_output_lengths(frames, 50).sum())


# -- chat templates ---------------------------------------------------------------------------------------------

QWEN_VL_STYLE = (  # the Qwen2-VL layout: default system turn, numbered pictures, namespace counters, loop.first
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{% set image_count.value = image_count.value + 1 %}Picture {{ image_count.value }}: "
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% elif content['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BLOCKS_AND_FILTERS = (  # trim_blocks / lstrip_blocks, loop controls, tojson of strings, filters
    "{% for m in messages %}\n  {% if m.role == 'system' %}{% continue %}{% endif %}\n"
    "<|im_start|>{{ m.role | upper }} {{ m.role | tojson }}\n"
    "{% if m.content is string %}{{ m.content | trim }}{% else %}"
    "{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% else %}[{{ c.type }}]{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}\n{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
items = st.one_of(
    texts.map(lambda t: {"type": "text", "text": t}),
    st.sampled_from(["image", "audio", "video"]).map(lambda k: {"type": k, k: f"file.{k}"}),
)
messages = st.tuples(st.sampled_from(["system", "user", "assistant"]),
                     st.one_of(texts, st.lists(items, min_size=1, max_size=3))).map(
    lambda rc: {"role": rc[0], "content": rc[1]})


@pytest.fixture(scope="module")
def reference_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from omni.demo import tiny_tokenizer_files

    d = tmp_path_factory.mktemp("chat_tok")
    tiny_tokenizer_files(str(d))
    return AutoTokenizer.from_pretrained(str(d))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=st.lists(messages, min_size=1, max_size=4), generation_prompt=st.booleans(),
       template=st.sampled_from([BUILTIN_TEMPLATE, QWEN_VL_STYLE, BLOCKS_AND_FILTERS]))
def test_chat_rendering_equals_the_reference(reference_tokenizer, conversation, generation_prompt, template):
    assume(all(m["content"] != [] for m in conversation))
    got = render_chat(conversation, template, add_generation_prompt=generation_prompt)
    want = reference_tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                                   add_generation_prompt=generation_prompt)
    assert got == want
