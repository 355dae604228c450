"""TextTokenizer, StreamDecoder and the chat template against transformers (the oracle).

The tokenizer is the tiny Qwen-layout BPE trained in conftest.py; transformers' AutoTokenizer (Qwen2Tokenizer)
loads the very same files, so ids, decoded text and rendered prompts must be identical.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from omni.errors import ConfigError, InputError
from omni.media.chat import BUILTIN_TEMPLATE, load_chat_template, render_chat
from omni.media.text import SPECIAL_TOKENS, StreamDecoder, TextTokenizer

TEXTS = [
    "Hello world",
    "I'm sure they'll say it's fine; DON'T you'd think?",
    "1234567890 and 3.14159, 2024-01-01",
    "  leading spaces, trailing   \n\n\n newlines\r\n\twith\ttabs     ",
    "你好，世界！这是一个测试。こんにちは Привет",
    "emoji 😀🎉👍🏽 and flags 🇯🇵 zwj 👩‍💻",
    "cafe\u0301 (NFD) vs café (NFC), Å vs A\u030a",
    "<|im_start|>user\nDescribe<|vision_start|><|image_pad|><|vision_end|> now<|im_end|>\n",
    "<|audio_start|><|audio_pad|><|audio_pad|><|audio_end|><think>\nhmm\n</think>\n\n<tool_call>x</tool_call>",
    "code:\n    def f(x):\n        return x**2  # sq\n",
    "words<|endoftext|>glued<tts_pad><tts_text_bos>t<tts_text_eod>",
    "",
]


@pytest.fixture(scope="module")
def reference_tokenizer(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.fixture(scope="module")
def tok(qwen_tokenizer_dir):
    return TextTokenizer.from_pretrained(qwen_tokenizer_dir, config=True)


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab+merges"])
def test_encode_decode_match_reference(layout, qwen_tokenizer_dir, qwen_vocab_merges_dir, reference_tokenizer):
    directory = qwen_tokenizer_dir if layout == "tokenizer.json" else qwen_vocab_merges_dir
    from transformers import AutoTokenizer

    ref = reference_tokenizer if layout == "tokenizer.json" else AutoTokenizer.from_pretrained(directory)
    ours = TextTokenizer.from_pretrained(directory)
    assert len(ours) == len(ref)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == ref(text)["input_ids"], text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
    assert ours.eos_token_id == ref.eos_token_id and ours.pad_token_id == ref.pad_token_id


def test_digits_are_single_tokens_and_no_bos(tok):
    ids = tok.encode("90817")
    assert len(ids) == 5 and tok.decode(ids) == "90817"
    assert tok.encode("") == []


def test_special_tokens_by_name(tok, qwen_tokenizer_files, reference_tokenizer):
    _, ids = qwen_tokenizer_files
    for name, content in SPECIAL_TOKENS.items():
        assert tok.token_id(name) == ids[content] == reference_tokenizer.convert_tokens_to_ids(content)
    # the placeholder names the reference processor reads from the tokenizer
    assert tok.token("audio_pad") == reference_tokenizer.audio_token
    assert tok.token("vision_start") == reference_tokenizer.vision_bos_token
    assert tok.token("audio_end") == reference_tokenizer.audio_eos_token
    with pytest.raises(InputError, match="unknown special token name"):
        tok.token("not_a_token")


@pytest.mark.parametrize("section,key,bad", [
    ("", "im_end_token_id", 3), ("thinker_config", "audio_token_id", 7), ("", "assistant_token_id", 11),
])
def test_config_mismatch_is_a_config_error(tok, qwen_tokenizer_dir, section, key, bad):
    with open(os.path.join(qwen_tokenizer_dir, "config.json")) as f:
        cfg = json.load(f)
    tok.check_config(cfg)  # the matching config passes
    (cfg[section] if section else cfg)[key] = bad
    with pytest.raises(ConfigError, match=key):
        tok.check_config(cfg)


def test_config_mismatch_through_omni_config(tok, qwen_tokenizer_dir):
    from omni.config import OmniConfig

    cfg = OmniConfig.from_pretrained(qwen_tokenizer_dir)
    tok.check_config(cfg)
    with pytest.raises(ConfigError, match="video_token_id"):
        tok.check_config(cfg.replace(thinker_config=cfg.thinker_config.replace(video_token_id=1)))


def test_missing_or_broken_files(tmp_path, qwen_tokenizer_dir):
    with pytest.raises(ConfigError, match="no tokenizer"):
        TextTokenizer.from_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(qwen_tokenizer_dir, name), tmp_path)
    with open(tmp_path / "merges.txt", "a") as f:
        f.write("three symbols here\n")
    with pytest.raises(ConfigError, match="merges.txt line"):
        TextTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        TextTokenizer.from_pretrained(tmp_path / "nope")


def test_decode_ids_past_the_tokenizer_like_reference(tok, reference_tokenizer):
    ids = tok.encode("Hello 😀") + [len(tok), len(tok) + 5000] + tok.encode(" there")
    assert tok.decode(ids) == reference_tokenizer.decode(ids) == "Hello 😀 there"
    with pytest.raises(InputError, match="negative"):
        tok.decode([0, -1])


def test_stream_decoder_waits_for_whole_characters(tok):
    text = "Hi 😀! 你好 café<|im_end|> 👩‍💻 done"
    ids = tok.encode(text)
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in p for p in pieces)
    # the emoji is split over several byte tokens here, so some pushes must have held their bytes back
    assert sum(p == "" for p in pieces[:-1]) >= 2


def test_stream_decoder_flushes_an_unfinished_character(tok):
    ids = tok.encode("ok 😀")
    dec = StreamDecoder(tok)
    out = "".join(dec.push(i) for i in ids[:-1])
    assert out + dec.flush() == tok.decode(ids[:-1])
    assert dec.flush() == ""


# ---------------------------------------------------------------------------------------------- chat template
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [
        {"role": "system", "content": "You are Qwen-Omni."},
        {"role": "user", "content": [
            {"type": "image", "image": "a.png"}, {"type": "text", "text": "What is this?"},
            {"type": "audio", "audio": "b.wav"}, {"type": "video", "video": "c.mp4"},
        ]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": [{"type": "text", "text": "And then?"}]},
    ],
    [{"role": "system", "content": [{"type": "text", "text": "sys"}]}, {"role": "user", "content": "x"},
     {"role": "assistant", "content": "y"}],
]

# A checkpoint-style template that leans on the reference's jinja setup: trim_blocks/lstrip_blocks whitespace,
# loop controls, namespaces, tojson without HTML escaping, raise_exception.
SHIPPED = """{%- set ns = namespace(n=0) %}
{% for message in messages %}
    {% if message.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}
<|im_start|>{{ message.role }}
{% if message.content is string %}
{{ message.content }}
{%- else %}
    {% for item in message.content %}
        {% if item.type == 'image' %}{% set ns.n = ns.n + 1 %}Picture {{ ns.n }}: <|vision_start|><|image_pad|><|vision_end|>
        {%- elif item.type == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>
        {%- elif item.type == 'video' %}<|vision_start|><|video_pad|><|vision_end|>
        {%- elif item.type == 'text' %}{{ item.text }}{% else %}{% continue %}{% endif %}
    {% endfor %}
{% endif %}
<|im_end|>
{% endfor %}
{% if meta %}{{ meta | tojson }}{% endif %}
{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def _reference_render(ref_tok, conversation, template, **kwargs):
    return ref_tok.apply_chat_template(conversation, chat_template=template, tokenize=False, **kwargs)


@pytest.mark.parametrize("template", [BUILTIN_TEMPLATE, SHIPPED], ids=["builtin", "shipped"])
@pytest.mark.parametrize("gen", [True, False])
def test_chat_render_matches_reference_jinja(reference_tokenizer, template, gen):
    for conv in CONVERSATIONS:
        extra = {"meta": {"k": "<b>&ü"}} if template is SHIPPED else {}
        ours = render_chat(conv, template, add_generation_prompt=gen, **extra)
        assert ours == _reference_render(reference_tokenizer, conv, template, add_generation_prompt=gen, **extra)


def test_builtin_template_layout():
    assert render_chat(CONVERSATIONS[1]) == (
        "<|im_start|>system\nYou are Qwen-Omni.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?"
        "<|audio_start|><|audio_pad|><|audio_end|><|vision_start|><|video_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\nA cat.<|im_end|>\n"
        "<|im_start|>user\nAnd then?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # no default system message is inserted
    assert render_chat(CONVERSATIONS[0], add_generation_prompt=False) == "<|im_start|>user\nHi there<|im_end|>\n"


def test_template_files_and_precedence(tmp_path, qwen_tokenizer_dir):
    assert load_chat_template(tmp_path) is None
    with open(tmp_path / "tokenizer_config.json", "w") as f:
        json.dump({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "C"}]}, f)
    assert load_chat_template(tmp_path) == "C"
    with open(tmp_path / "chat_template.json", "w") as f:
        json.dump({"chat_template": "B"}, f)
    assert load_chat_template(tmp_path) == "B"
    (tmp_path / "chat_template.jinja").write_text(SHIPPED)
    assert load_chat_template(tmp_path) == SHIPPED
    # the tokenizer picks up a template kept in its tokenizer_config.json
    d = tmp_path / "tok"
    shutil.copytree(qwen_tokenizer_dir, d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = SHIPPED
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert TextTokenizer.from_pretrained(d).apply_chat_template(CONVERSATIONS[1]).count("Picture 1: ") == 1


def test_bad_conversations_and_templates():
    with pytest.raises(InputError):
        render_chat([])
    with pytest.raises(InputError, match="'type'"):
        render_chat([{"role": "user", "content": [{"type": "smell", "smell": 1}]}])
    with pytest.raises(InputError, match="needs its data"):
        render_chat([{"role": "user", "content": [{"type": "image"}]}])
    with pytest.raises(InputError, match="no tools"):
        render_chat([{"role": "tool", "content": "x"}], SHIPPED)
    with pytest.raises(ConfigError, match="does not parse"):
        render_chat(CONVERSATIONS[0], "{% if %}")


def test_save_round_trip(tok, tmp_path, reference_tokenizer):
    tok.chat_template = SHIPPED
    try:
        tok.save_pretrained(tmp_path)
    finally:
        tok.chat_template = None
    again = TextTokenizer.from_pretrained(tmp_path)
    from transformers import AutoTokenizer

    ref_again = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert again.encode(text) == tok.encode(text) == ref_again(text)["input_ids"]
    assert again.tokens == tok.tokens and again.special_ids == tok.special_ids
    assert again.apply_chat_template(CONVERSATIONS[0]) == render_chat(CONVERSATIONS[0], SHIPPED)
    assert ref_again.audio_token == reference_tokenizer.audio_token
