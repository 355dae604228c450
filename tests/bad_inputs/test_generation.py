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
