"""The boundary rule, as a property: whatever a caller passes to a public entry point (a wrong type, NaN, infinity,
zero, a negative or a huge number, a string for a number, a list for a dict), only an `omni.errors` exception
escapes, every call returns within a time limit, and no file outside the test's temporary folder changes.

Entry points driven (hypothesis): `OmniConfig.from_dict` (every field of every section of both releases' tiny
presets, then a meta-device build), `generate` / `stream` keywords and speech options, `Processor` options and call
options, `write_wav`, and Code2Wav's `forward` / `stream_decode`.
"""

from __future__ import annotations

import copy
import math
import os
import signal
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omni
from omni.errors import OmniError

LIMIT_S = 20  # one call; the tiny model answers any valid request in well under a second
CASES = settings(max_examples=70, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", ".ci-venv", "__pycache__", ".pytest_cache", ".hypothesis", "results"}


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int = LIMIT_S):
    def stop(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_omni_errors(call) -> None:
    """Run `call`; anything it raises must be an OmniError (a result is fine too)."""
    with time_limit():
        try:
            call()
        except OmniError:
            pass


def snapshot() -> dict:
    out = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            st_ = os.stat(os.path.join(root, name))
            out[os.path.join(root, name)] = (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module", autouse=True)
def no_file_outside_tmp_changes(tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # a stray relative write would land here, not in the repo
    before = snapshot()
    yield
    os.chdir(cwd)
    assert snapshot() == before, "a boundary call wrote a file outside its temporary folder"


BAD = st.one_of(
    st.sampled_from([None, True, False, 0, -1, -(10**9), 10**18, 2**64, 1.5, -0.5, 0.0, math.nan, math.inf, -math.inf,
                     "", "3", "false", "nan", [], [1, 2], [-1], {}, {"a": 1}, (1,), b"x", object()]),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(-5, 5), max_size=4),
    st.sampled_from([np.int64(-3), np.float32("nan"), np.array([1, 2]), torch.tensor(1.5), torch.tensor([[-1]])]),
)


# -- config.json sections ---------------------------------------------------------------------------------------


def _leaves(d: dict, path=()):
    for key, value in d.items():
        if isinstance(value, dict) and key.endswith("_config"):
            yield from _leaves(value, path + (key,))
        else:
            yield path + (key,)


PRESET_FIELDS = [(name, path) for name in ("tiny", "tiny-qwen2.5") for path in _leaves(omni.PRESETS[name])]


@CASES
@given(field=st.sampled_from(PRESET_FIELDS), value=BAD)
def test_any_config_field(field, value):
    name, path = field
    d = copy.deepcopy(omni.PRESETS[name])
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    def build():
        cfg = omni.OmniConfig.from_dict(d)
        with torch.device("meta"):
            omni.OmniModel(cfg)

    only_omni_errors(build)


# -- generation keywords ----------------------------------------------------------------------------------------

HELLO = [{"role": "user", "content": "hello"}]
KEYWORDS = ["max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
            "seed", "stop_strings", "eos_token_ids", "pad_token_id", "compile", "quiet", "use_audio_in_video",
            "speak", "voice", "speech"]
SPEECH = ["max_frames", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "code_do_sample",
          "code_temperature", "code_top_k", "code_top_p", "seed"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from omni.demo import build_tiny_checkpoint

    return omni.load(build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny"))), quiet=True)


@CASES
@given(keyword=st.sampled_from(KEYWORDS), value=BAD, stream=st.booleans())
def test_any_generation_keyword(model, keyword, value, stream):
    if keyword == "compile" and (value is True or isinstance(value, str) and value in _backends()):
        return  # a valid request that compiles for a minute: covered by the compiled-decode tests
    if keyword == "max_new_tokens" and isinstance(value, int) and 64 < value < 8192:
        return  # valid: a long reply of random tokens, not a boundary question
    options = {"max_new_tokens": 2, keyword: value}
    if keyword == "speech":
        options["speak"] = True
    call = (lambda: list(model.stream(HELLO, **options))) if stream else (lambda: model.generate(HELLO, **options))
    only_omni_errors(call)


def _backends() -> list[str]:
    import torch._dynamo

    return torch._dynamo.list_backends(exclude_tags=())


@CASES
@given(option=st.sampled_from(SPEECH), value=BAD)
def test_any_speech_option(model, option, value):
    speech = {"max_frames": 2, option: value}
    if option == "max_frames" and isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**6:
        return  # valid: a long recital of random codes, not a boundary question
    only_omni_errors(lambda: model.generate(HELLO, max_new_tokens=2, speak=True, speech=speech))


@CASES
@given(batch_key=st.sampled_from(["input_ids", "attention_mask"]), value=BAD)
def test_any_batch_value(model, batch_key, value):
    batch = dict(model.processor(HELLO))
    batch[batch_key] = value
    only_omni_errors(lambda: model.generate(batch, max_new_tokens=2))


# -- Processor, write_wav, Code2Wav --------------------------------------------------------------------------------

PROCESSOR_OPTIONS = ["merge_size", "n_window", "position_id_per_seconds", "video_fps", "sampling_rate",
                     "image_options", "video_options", "audio_options", "model_type", "seconds_per_chunk",
                     "chat_template"]
CALL_OPTIONS = ["use_audio_in_video", "add_generation_prompt", "padding_side", "return_labels", "text", "images",
                "audio"]


@CASES
@given(option=st.sampled_from(PROCESSOR_OPTIONS + CALL_OPTIONS), value=BAD)
def test_any_processor_option(model, option, value):
    tokenizer = model.processor.tokenizer

    def call():
        if option in PROCESSOR_OPTIONS:
            omni.Processor(tokenizer, **{option: value})(HELLO)
        elif option in ("text", "images", "audio"):
            model.processor(text=value) if option == "text" else model.processor(text="<|audio_pad|>", audio=value)
        else:
            model.processor(HELLO, **{option: value})

    only_omni_errors(call)


@CASES
@given(waveform=st.one_of(BAD, st.builds(lambda n, k: np.random.default_rng(n).standard_normal((k, 8)) * 10 ** k,
                                          st.integers(0, 9), st.integers(1, 3))),
       rate=st.one_of(st.just(24000), BAD))
def test_any_wav(tmp_path_factory, waveform, rate):
    path = tmp_path_factory.mktemp("wav") / "out.wav"
    only_omni_errors(lambda: omni.write_wav(path, waveform, rate))


@CASES
@given(codes=st.one_of(BAD, st.builds(
    lambda dtype, shape, value: torch.full(shape, value).to(dtype),
    st.sampled_from([torch.int8, torch.uint8, torch.int16, torch.int32, torch.long, torch.float32, torch.bool]),
    st.sampled_from([(1, 16, 3), (2, 16, 1), (16, 3), (1, 3, 16), (1, 16, 0), (0, 16, 2)]),
    st.sampled_from([0, 5, 2047, 2048, -1]))),
       chunk=st.one_of(st.just(2), BAD))
def test_any_codes(model, codes, chunk):
    only_omni_errors(lambda: model.code2wav(codes))
    only_omni_errors(lambda: list(model.code2wav.stream_decode(torch.zeros(1, 16, 3, dtype=torch.long), chunk)))
