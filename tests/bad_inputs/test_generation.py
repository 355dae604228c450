"""Bad generation requests: impossible lengths and options, prompts past the context, unknown voices. Each is an
InputError raised before any decoding work, naming the value and the allowed range; max_new_tokens=0 is valid."""

from __future__ import annotations

import pytest
import torch

import omni
from omni.errors import InputError
from omni.models.qwen3_omni.speech import speak

from .conftest import assert_healthy_generation

HELLO = [{"role": "user", "content": "hello"}]


def test_zero_new_tokens_is_an_empty_reply(tiny_model):
    out = tiny_model.generate(HELLO, max_new_tokens=0)
    assert out.tokens.shape == (1, 0) and out.text == [""]
    ids = tiny_model.processor(HELLO)["input_ids"]
    assert tiny_model.generate({"input_ids": ids}, max_new_tokens=0).shape == (1, 0)
    spoken = tiny_model.generate(HELLO, max_new_tokens=0, speak=True)
    assert spoken.tokens.shape == (1, 0) and spoken.audio is None  # nothing said, nothing spoken
    assert list(tiny_model.stream(HELLO, max_new_tokens=0)) == []
    assert_healthy_generation(tiny_model)


CONTEXT = 8192  # max_position_embeddings of the tiny preset


def _ones(n: int) -> torch.Tensor:
    return torch.ones(1, n, dtype=torch.long)


CASES = [  # (id, generate kwargs or a callable(model), message fragments)
    ("negative max_new_tokens", dict(max_new_tokens=-1), ["max_new_tokens must be a non-negative integer", "-1"]),
    ("fractional max_new_tokens", dict(max_new_tokens=2.5), ["max_new_tokens must be a non-negative integer"]),
    ("min above max", dict(max_new_tokens=2, min_new_tokens=5), ["min_new_tokens must be in 0..max_new_tokens"]),
    ("zero temperature sampling", dict(do_sample=True, temperature=0.0), ["temperature must be > 0"]),
    ("top_p zero", dict(top_p=0.0), ["top_p must be in (0, 1]"]),
    ("top_p above one", dict(top_p=1.5), ["top_p must be in (0, 1]"]),
    ("negative top_k", dict(top_k=-5), ["top_k must be >= 0"]),
    ("zero repetition penalty", dict(repetition_penalty=0.0), ["repetition_penalty must be > 0"]),
    ("unknown option", dict(max_tokens=5), ["unknown generation option(s) ['max_tokens']", "max_new_tokens"]),
    ("unknown voice", dict(speak=True, voice="bob"), ["unknown voice 'bob'", "['aiden', 'chelsie', 'ethan']"]),
    ("unknown speech option", dict(speak=True, speech={"frames": 3}), ["unknown speech option(s) ['frames']"]),
    ("prompt longer than the context", lambda m: m.generate({"input_ids": _ones(CONTEXT + 5)}, max_new_tokens=0),
     [f"prompt ({CONTEXT + 5} tokens)", f"context of {CONTEXT}"]),
    ("prompt + reply past the context", lambda m: m.generate({"input_ids": _ones(CONTEXT - 2)}, max_new_tokens=10),
     [f"prompt ({CONTEXT - 2} tokens) + max_new_tokens (10)", f"context of {CONTEXT}"]),
    ("empty prompt", lambda m: m.generate({"input_ids": torch.ones(1, 0, dtype=torch.long)}),
     ["non-empty prompt"]),
    ("plain string", lambda m: m.generate("hello"), ["takes a conversation", "batch dict"]),
    ("stream a batch", lambda m: list(m.stream([HELLO, HELLO])), ["one conversation at a time"]),
    # numbers that are not numbers, and values of the wrong type: named, never a raw exception or a silent answer
    ("nan repetition penalty", dict(repetition_penalty=float("nan")), ["repetition_penalty must be > 0", "nan"]),
    ("infinite temperature", dict(do_sample=True, temperature=float("inf")), ["temperature must be > 0"]),
    ("nan top_p", dict(top_p=float("nan")), ["top_p must be in (0, 1]"]),
    ("string top_k", dict(top_k="5"), ["top_k must be >= 0", "'5'"]),
    ("boolean max_new_tokens", dict(max_new_tokens=True), ["max_new_tokens must be a non-negative integer"]),
    ("negative seed", dict(seed=-1), ["seed must be an integer in 0..18446744073709551615"]),
    ("string seed", dict(seed="7"), ["seed must be an integer"]),
    ("empty stop string", dict(stop_strings=[""]), ["stop_strings must be a string or a list of non-empty strings"]),
    ("stop strings of numbers", dict(stop_strings=[3]), ["stop_strings must be a string or a list"]),
    ("eos ids as text", dict(eos_token_ids="x"), ["eos_token_ids must be a token id or a list of them"]),
    ("negative eos id", dict(eos_token_ids=[-3]), ["eos_token_ids must be non-negative token ids"]),
    ("fractional pad id", dict(pad_token_id=1.5), ["pad_token_id must be an integer"]),
    ("compile backend of a number", dict(compile=3), ["compile must be True/False or a torch.compile backend"]),
    ("do_sample as a string", dict(do_sample="yes"), ["do_sample must be True or False"]),
    ("speak as a string", dict(speak="yes"), ["speak must be True or False"]),
    ("speech options not a dict", dict(speak=True, speech=[1]), ["speech must be a dict of speech options"]),
    ("nan speech penalty", dict(speak=True, speech={"repetition_penalty": float("nan")}),
     ["repetition_penalty must be > 0"]),
    ("speech frames past the Talker's context", dict(speak=True, speech={"max_frames": 10**12}),
     ["exceeds its context", "lower max_frames"]),
    ("numpy speech seed is fine, a float one is not", dict(speak=True, speech={"seed": 1.5}), ["seed must be"]),
    ("voice of the wrong type", dict(speak=True, voice=3), ["unknown voice 3"]),
    ("stream chunk of a float", lambda m: list(m.stream(HELLO, speak=True, audio_chunk_frames=2.5)),
     ["audio_chunk_frames must be a positive number of frames"]),
    # batches that are malformed
    ("empty batch", lambda m: m.generate({"input_ids": torch.ones(0, 3, dtype=torch.long)}),
     ["batch >= 1"]),
    ("float ids", lambda m: m.generate({"input_ids": torch.ones(1, 3)}), ["integer token ids"]),
    ("mask of twos", lambda m: m.generate({"input_ids": _ones(3), "attention_mask": 2 * _ones(3)}),
     ["only 0 (padding) and 1 (token)"]),
    ("row without tokens", lambda m: m.generate({"input_ids": torch.ones(2, 3, dtype=torch.long),
                                                 "attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0]])}),
     ["row(s) [1] of the batch have no tokens"]),
    ("padding inside a row", lambda m: m.generate({"input_ids": _ones(3), "attention_mask": torch.tensor([[1, 0, 1]])}),
     ["padding between a row's tokens"]),
    ("mask of another shape", lambda m: m.generate({"input_ids": _ones(3), "attention_mask": _ones(4)}),
     ["attention_mask shape (1, 4) does not match input_ids (1, 3)"]),
    ("ids of text", lambda m: m.generate({"input_ids": [["a", "b"]]}), ["input_ids must be a tensor, a numpy array"]),
]


@pytest.mark.parametrize("request_, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_generation_request(tiny_model, request_, fragments):
    with pytest.raises(InputError) as info:
        if callable(request_):
            request_(tiny_model)
        else:
            tiny_model.generate(HELLO, **{"max_new_tokens": 2, **request_})
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    assert_healthy_generation(tiny_model)


def test_unknown_voice_through_speak(tiny_model):
    batch = tiny_model.processor(HELLO)
    reply = tiny_model.generate(batch, max_new_tokens=3)
    voices = r"\['aiden', 'chelsie', 'ethan'\]"
    with pytest.raises(InputError, match=r"unknown voice 'Nobody'; available voices: " + voices):
        speak(tiny_model, batch, reply, voice="Nobody")
    codes = speak(tiny_model, batch, reply, voice="Chelsie", do_sample=False, max_frames=2)  # names: any case
    assert codes.codes.shape[:2] == (1, tiny_model.config.talker_config.num_code_groups)


def test_components_missing_for_the_request(tiny_dir):
    talker_only = omni.load(tiny_dir, components=("talker",), quiet=True)
    with pytest.raises(InputError, match="loaded without the thinker"):
        talker_only.generate(HELLO)
    thinker_only = omni.load(tiny_dir, components=("thinker",), quiet=True)
    with pytest.raises(InputError, match=r"speech needs the thinker, talker and code2wav.*\['talker', 'code2wav'\]"):
        thinker_only.generate(HELLO, speak=True)
    assert_healthy_generation(thinker_only)


def test_right_padding_gives_the_left_padded_replies(tiny_model):
    """A right-padded batch is decoded as its left-padded twin: each row's reply is the one it gets alone."""
    ids = tiny_model.processor([HELLO, [{"role": "user", "content": "a much longer question here"}]],
                               padding_side="right")
    alone = [tiny_model.generate({"input_ids": ids["input_ids"][b:b + 1, ids["attention_mask"][b].bool()]},
                                 max_new_tokens=4, eos_token_ids=()) for b in range(2)]
    both = tiny_model.generate(ids, max_new_tokens=4, eos_token_ids=())
    assert torch.equal(both, torch.cat(alone))


def test_values_as_the_ecosystem_passes_them(tiny_model):
    """Lists, numpy arrays, small integer dtypes and numpy scalars are taken as what they are."""
    import numpy as np

    ids = tiny_model.processor(HELLO)["input_ids"]
    want = tiny_model.generate({"input_ids": ids}, max_new_tokens=3, seed=np.int64(4), do_sample=True)
    for same in (ids.tolist(), ids.numpy(), ids.to(torch.int16)):
        got = tiny_model.generate({"input_ids": same}, max_new_tokens=np.int32(3), seed=np.int64(4), do_sample=True,
                                  top_p=np.float32(1.0))
        assert torch.equal(got, want)


def test_one_stop_string_is_one_string(tiny_model):
    """stop_strings="ab" stops at "ab", not at the first "a" or "b"."""
    from omni.sampling import SamplingConfig

    assert SamplingConfig(stop_strings="ab").validate().stop_strings == ("ab",)


def test_end_ids_past_a_custom_vocabulary(tiny_model):
    """min_new_tokens forbids the end ids the model can produce; ids past its vocabulary simply never come."""
    out = tiny_model.generate(HELLO, max_new_tokens=3, min_new_tokens=2, eos_token_ids=(10**6,))
    assert out.tokens.shape == (1, 3)
