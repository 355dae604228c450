"""`omni demo`: the whole pipeline on the embedded `tiny` preset, offline, in seconds.

The weights are random (seeded), so the "reply" is noise: the demo shows the data path, the shapes at every
stage and how long each takes, not a conversation. Everything goes through the same code as a real checkpoint:
the random model is saved in the official layout with a tokenizer, then loaded back with `omni.load`.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

# The `tiny` presets' vocabulary is this module's byte-level tokenizer (`tiny_tokenizer_files`): every release's
# tiny preset takes its special token ids from here.
TINY_SPECIAL_BASE = 256  # the Qwen special tokens, in their official order (151643.. in the releases), from here
_OFFICIAL_SPECIAL_BASE = 151643


def _tiny_id(official: int) -> int:
    return official - _OFFICIAL_SPECIAL_BASE + TINY_SPECIAL_BASE


TINY_TOKEN_IDS = {
    "root": {
        "im_start_token_id": _tiny_id(151644), "im_end_token_id": _tiny_id(151645),
        "tts_pad_token_id": _tiny_id(151671), "tts_bos_token_id": _tiny_id(151672),
        "tts_eos_token_id": _tiny_id(151673),
        # role words are single BPE merges in the tiny tokenizer: ids fixed by omni.demo.tiny_tokenizer
        "system_token_id": 293, "user_token_id": 296, "assistant_token_id": 304,
    },
    "media": {
        "audio_token_id": _tiny_id(151675), "image_token_id": _tiny_id(151655), "video_token_id": _tiny_id(151656),
        "audio_start_token_id": _tiny_id(151669), "vision_start_token_id": _tiny_id(151652),
        "user_token_id": 296,
    },
}

# The Qwen special tokens in their official order (ids 151643.. in the release; from TINY_SPECIAL_BASE here).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
]
# Qwen's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, newlines, spaces.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ROLE_WORDS = ("system", "user", "assistant")


def _byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: printable bytes stand for themselves, the rest are shifted past 255."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols, extra = {}, 0
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def tiny_tokenizer_files(directory: str) -> None:
    """Write a byte-level BPE in the official file layout: ids 0-255 bytes, the Qwen specials from 256, then the
    merges that make each role word one token (their ids are the tiny preset's system/user/assistant ids)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {s: i for i, s in enumerate(_byte_symbols())}
    for i, tok in enumerate(QWEN_SPECIAL_TOKENS):
        vocab[tok] = TINY_SPECIAL_BASE + i
    merges = []
    for word in ROLE_WORDS:
        for end in range(2, len(word) + 1):
            merges.append((word[: end - 1], word[end - 1]))
            vocab[word[:end]] = len(vocab)
    ids = TINY_TOKEN_IDS["root"]
    assert [vocab[w] for w in ROLE_WORDS] == [ids["system_token_id"], ids["user_token_id"], ids["assistant_token_id"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    os.makedirs(directory, exist_ok=True)
    tok.save(os.path.join(directory, "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 8192,
        "added_tokens_decoder": {
            str(TINY_SPECIAL_BASE + i): {"content": t, "special": True, "normalized": False, "lstrip": False,
                                          "rstrip": False, "single_word": False}
            for i, t in enumerate(QWEN_SPECIAL_TOKENS)
        },
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def build_tiny_checkpoint(directory: str, seed: int = 0) -> str:
    """A random `tiny` model with its tokenizer, saved in the official layout."""
    from .api import save
    from .config import OmniConfig
    from .model import OmniModel

    torch.manual_seed(seed)
    model = OmniModel(OmniConfig.from_name("tiny"))
    save(model, directory)
    tiny_tokenizer_files(directory)
    return directory


def synthetic_media(seed: int = 0):
    """A colour-gradient image (48x64), a 1 s two-tone clip at 16 kHz and a 4-frame moving-square video."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    audio += 0.01 * rng.standard_normal(audio.shape).astype(np.float32)
    video = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    for i in range(4):
        video[i, 8 + 8 * i : 24 + 8 * i, 8 + 8 * i : 24 + 8 * i] = (255, 200, 0)
    return image, audio, video


def run_demo(out_dir: str | None = None, max_new_tokens: int = 16, print_fn=print, wav_out: str | None = None,
             voice: str = "ethan", speech_frames: int = 25) -> dict:
    """Run one mixed request (text + image + audio + video) through the tiny random model, speak the reply and
    write it to `wav_out` (default: omni-demo.wav in `out_dir` or the current directory); returns a summary."""
    import tempfile

    from .api import load

    timings, shapes = {}, {}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - t0
        return result

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = out_dir or os.path.join(tmp, "tiny")
        timed("build + save tiny checkpoint", lambda: build_tiny_checkpoint(ckpt))
        model = timed("load (omni.load)", lambda: load(ckpt, quiet=True))
        print_fn("omni demo — the `tiny` preset with RANDOM weights: the output is noise, the data path is real.")
        image, audio, video = synthetic_media()
        conversation = [
            {"role": "user", "content": [
                {"type": "image", "image": image},
                {"type": "audio", "audio": audio},
                {"type": "video", "video": video},
                {"type": "text", "text": "What do you see and hear?"},
            ]},
        ]
        batch = timed("preprocess (omni.Processor)", lambda: model.processor([conversation]))
        for k, v in batch.items():
            if torch.is_tensor(v):
                shapes[k] = tuple(v.shape)
        thinker = model.thinker
        with torch.no_grad():
            if batch.get("pixel_values") is not None:
                emb, deep = timed("vision tokenizer (image)",
                                  lambda: thinker.vision(batch["pixel_values"], batch["image_grid_thw"]))
                shapes["image embeddings"] = tuple(emb.shape)
                shapes["deepstack features"] = f"{len(deep)} x {tuple(deep[0].shape)}" if deep else "none"
            if batch.get("input_features") is not None:
                a = timed("audio tokenizer",
                          lambda: thinker.audio(batch["input_features"], batch["feature_attention_mask"]))
                shapes["audio embeddings"] = tuple(a.shape)
            out = timed("thinker forward (prefill)", lambda: thinker(**batch))
            shapes["logits"] = tuple(out.logits.shape)
        tokens = timed("generate", lambda: model.generate(batch, max_new_tokens=max_new_tokens))
        shapes["generated tokens"] = tuple(tokens.shape)
        text = model.processor.tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True)
        speech = None
        if model.talker is not None and model.code2wav is not None and tokens.shape[1] > 0:
            # random weights never say codec-eos on purpose: cap the frames (12.5 per second of speech)
            speech = timed("speak (talker + code2wav)", lambda: model.generate(
                batch, max_new_tokens=max_new_tokens, speak=True, voice=voice, speech={"max_frames": speech_frames,
                                                                                      "seed": 0}))
            shapes["speech codes"] = tuple(speech.codes.shape)
            shapes["waveform (24 kHz)"] = tuple(speech.audio.shape)
        print_fn("\nshapes:")
        for k, v in shapes.items():
            print_fn(f"  {k:28s} {v}")
        print_fn("\ntimings:")
        for k, v in timings.items():
            print_fn(f"  {k:28s} {v * 1000:8.1f} ms")
        print_fn(f"\ngenerated ids: {tokens[0].tolist()}")
        print_fn(f"decoded (random weights): {text!r}")
        wav_path = None
        if speech is not None:
            from .media.audio import write_wav

            wav_path = wav_out or os.path.join(out_dir or os.getcwd(), "omni-demo.wav")
            n = int(speech.audio_lengths[0])
            write_wav(wav_path, speech.audio[0, 0, :n])
            print_fn(f"speech ({voice}, random weights: noise): {n / 24000:.2f} s -> {wav_path}")
        return {"shapes": shapes, "timings": timings, "tokens": tokens, "text": text, "wav": wav_path}
