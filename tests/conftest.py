"""Shared test fixtures.

`qwen_tokenizer_dir`: a tiny byte-level BPE trained here with the Qwen pre-tokenizer and the Qwen3-Omni added
tokens, saved in the official file layout (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json with
added_tokens_decoder) plus a config.json whose token ids match it. No official tokenizer files are available
offline, and the special tokens cannot sit at their official ids (151643...) with a vocabulary of a few hundred
entries, so they follow the trained vocabulary in the official order, exactly as the release lays them out.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

# The Qwen3-Omni added tokens in id order (official ids 151643..151675); `False` = not "special" (kept by
# decode(skip_special_tokens=True)), as in the release.
QWEN_ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False), ("<|audio_start|>", True), ("<|audio_end|>", True),
    ("<tts_pad>", True), ("<tts_text_bos>", True), ("<tts_text_eod>", True), ("<tts_text_bos_single>", True),
    ("<|audio_pad|>", True),
]

QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CORPUS = [
    "You are a helpful assistant. The user asks and the assistant answers; the system sets the rules.",
    "system\nuser\nassistant\n" * 6,
    "I'm sure it's fine, we'll see what they've done and you'd know. Don't! WON'T?",
    "In 2024 there were 1234567 requests; 3.14159 is pi and 42 is the answer.",
    "def f(x):\n    return x ** 2  # square\n\n\tindented\ttabs   and    spaces",
    "Describe the image. What is in the audio? Watch the video and listen to the sound.",
    "你好，世界！这是一个测试。我们说中文。", "こんにちは世界、テストです。", "Привет, мир! Ёлка.",
    "café naïve résumé Zürich façade — “quotes” … emoji 😀🎉👍🏽 and ümlaut",
    "line one\nline two\r\nline three\n\n\nend",
]


def train_qwen_tokenizer(directory: str, vocab_size: int = 600) -> dict:
    """Train and save the tiny tokenizer; returns {token string: id} for the added tokens and role words."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    base = tok.get_vocab_size()
    for content, special in QWEN_ADDED_TOKENS:  # appended after the regular vocabulary, in release order
        token = AddedToken(content, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    os.makedirs(directory, exist_ok=True)
    tok.save(os.path.join(directory, "tokenizer.json"))
    tok.model.save(directory)  # vocab.json + merges.txt
    ids = {content: base + i for i, (content, _) in enumerate(QWEN_ADDED_TOKENS)}
    assert all(tok.token_to_id(c) == i for c, i in ids.items())
    for word in ("system", "user", "assistant"):
        enc = tok.encode(word).ids
        assert len(enc) == 1, f"role word {word!r} must be one token in the test tokenizer, got {enc}"
        ids[word] = enc[0]
    tok_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "added_tokens_decoder": {
            str(ids[c]): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                          "special": s}
            for c, s in QWEN_ADDED_TOKENS
        },
        "extra_special_tokens": {
            "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
            "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
        },
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, ensure_ascii=False)
    return ids


def matching_config(ids: dict) -> dict:
    """A tiny Qwen3-Omni config.json whose token ids are those of the trained tokenizer."""
    from reference import tiny_config_dict

    cfg = tiny_config_dict()
    cfg["model_type"] = "qwen3_omni_moe"
    cfg.update(im_start_token_id=ids["<|im_start|>"], im_end_token_id=ids["<|im_end|>"],
               tts_pad_token_id=ids["<tts_pad>"], tts_bos_token_id=ids["<tts_text_bos>"],
               tts_eos_token_id=ids["<tts_text_eod>"], system_token_id=ids["system"], user_token_id=ids["user"],
               assistant_token_id=ids["assistant"])
    media = dict(audio_token_id=ids["<|audio_pad|>"], image_token_id=ids["<|image_pad|>"],
                 video_token_id=ids["<|video_pad|>"], audio_start_token_id=ids["<|audio_start|>"],
                 vision_start_token_id=ids["<|vision_start|>"], user_token_id=ids["user"])
    cfg["thinker_config"].update(media)
    cfg["talker_config"].update(media)
    return cfg


@pytest.fixture(scope="session")
def qwen_tokenizer_files(tmp_path_factory):
    """(directory with every tokenizer file + config.json, {token: id})."""
    directory = str(tmp_path_factory.mktemp("qwen_tokenizer"))
    ids = train_qwen_tokenizer(directory)
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(matching_config(ids), f, indent=2)
    return directory, ids


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(qwen_tokenizer_files):
    return qwen_tokenizer_files[0]


@pytest.fixture(scope="session")
def qwen_vocab_merges_dir(qwen_tokenizer_files, tmp_path_factory):
    """The same tokenizer without tokenizer.json: only vocab.json + merges.txt + tokenizer_config.json."""
    src = qwen_tokenizer_files[0]
    directory = str(tmp_path_factory.mktemp("qwen_vocab_merges"))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "config.json"):
        shutil.copy(os.path.join(src, name), directory)
    return directory
