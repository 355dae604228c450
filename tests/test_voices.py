"""Learned voices (omni.training.voices): learn_voice trains one speaker vector and nothing else, voice files
round-trip (alone and beside a checkpoint through omni.save / omni.load), `omni info` lists them, and bad input
is refused with a named error before any step."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import omni
from omni.cli import main as cli
from omni.errors import CheckpointError, InputError
from omni.models.qwen3_omni.speech import speak
from omni.speech import check_can_speak
from omni.training import freeze, learn_voice, load_voice, save_voice, speech_loss

IM_START, IM_END, NL, USER, ASSISTANT = 257, 258, 10, 296, 304
PROMPT = [IM_START, USER, NL, *b"hello", IM_END, NL, IM_START, ASSISTANT, NL]
REPLY = torch.tensor([[51, 32, 49, IM_END]])  # "3 1"
EOS = (IM_END,)


def _model(seed=0, **talker):
    torch.manual_seed(seed)
    config = omni.OmniConfig.from_name("tiny")
    for k, v in talker.items():
        setattr(config.talker_config.text_config, k, v)
        setattr(config.talker_config.code_predictor_config, k, v)
    return omni.OmniModel(config).eval()


def _batch():
    ids = torch.tensor([PROMPT])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _codes(model, voice, frames=6):
    return speak(model, _batch(), REPLY, voice=voice, thinker_eos_token_ids=EOS, do_sample=False, max_frames=frames)


@pytest.fixture(scope="module")
def learned():
    """A model that learned 'anna' (saying code 7 in every codebook), starting from 'ethan'. An untrained Talker
    barely listens to its speaker vector, so the loss moves a little; examples/train_talker_digits.py (and its CI
    run) shows a trained Talker learning a real new voice."""
    model = _model()
    freeze(model, "thinker")  # a mixed pattern of flags, restored afterwards
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = {v: _codes(model, v).codes for v in ("ethan", "aiden")}
    G = model.config.talker_config.num_code_groups
    example = {"batch": _batch(), "reply": REPLY, "codes": torch.full((1, G, 4), 7)}
    report = learn_voice(model, "anna", [example], steps=20, lr=0.5, init="ethan", thinker_eos_token_ids=EOS)
    return model, report, example, flags, state, before


def test_learn_voice_trains_only_the_speaker_vector(learned):
    model, report, example, flags, state, before = learned
    assert report.losses[-1] < report.initial_loss - 0.05, (report.initial_loss, report.losses[-1])
    assert len(report.losses) == 20
    assert torch.equal(model.talker.learned_voices["anna"], report.vector) and report.vector.shape == (64,)
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state), "a parameter changed"
    assert all(p.grad is None for p in model.parameters()), "a parameter accumulated a gradient"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for voice, codes in before.items():  # the other voices speak exactly as before
        assert torch.equal(_codes(model, voice).codes, codes)
    # generation finds the voice by name (any case), as speech_loss does
    check_can_speak(model, "Anna")
    out = model.generate(_batch(), max_new_tokens=3, speak=True, voice="Anna", quiet=True,
                         speech={"do_sample": False, "max_frames": 4})
    assert out.audio.shape[-1] > 0
    loss = speech_loss(model, example["batch"], REPLY, example["codes"], voice="anna", thinker_eos_token_ids=EOS)
    assert loss.loss.item() < report.initial_loss - 0.05
    assert "anna" in omni.release.release_of(model).voices(model)


def test_voice_file_round_trip(learned, tmp_path):
    model, report, *_ = learned
    path = tmp_path / "anna.safetensors"
    save_voice(model, "ANNA", path)
    assert os.path.getsize(path) < 10_000 and not [f for f in os.listdir(tmp_path) if f != "anna.safetensors"]
    twin = _model()  # the same weights
    assert load_voice(twin, path) == "anna"
    assert torch.equal(twin.talker.learned_voices["anna"], report.vector)
    assert torch.equal(_codes(twin, "anna").codes, _codes(model, "anna").codes)
    with pytest.raises(InputError, match="already has a voice"):
        load_voice(twin, path)
    assert load_voice(twin, path, overwrite=True) == "anna"
    assert list(twin.talker.learned_voices) == ["anna"]


def test_voice_files_of_another_model_are_refused(learned, tmp_path):
    model, *_ = learned
    path = tmp_path / "anna.safetensors"
    save_voice(model, "anna", path)
    with pytest.raises(CheckpointError, match="another checkpoint"):
        load_voice(_model(seed=1), path)  # same size, other weights
    with pytest.raises(CheckpointError, match="wide"):
        load_voice(_model(hidden_size=32), path)
    other = tmp_path / "other.safetensors"
    save_file({"speaker": torch.zeros(64), "probe": torch.zeros(6, 64)}, other,
              metadata={"format": "omni.voice/1", "name": "x", "model_type": "qwen2_5_omni", "hidden_size": "64"})
    with pytest.raises(CheckpointError, match="qwen2_5_omni"):
        load_voice(model, other)
    save_file({"weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an omni voice file"):
        load_voice(model, other)
    with pytest.raises(CheckpointError, match="no voice file"):
        load_voice(model, tmp_path / "missing.safetensors")


def test_bad_input_is_refused_before_any_step(learned):
    model, _, example, *_ = learned
    G = model.config.talker_config.num_code_groups
    bad_codes = dict(example, codes=torch.full((1, G, 6), 5000))
    cases = [
        (dict(name="Ethan"), "already has a voice"),  # a preset, any case
        (dict(name="anna"), "already has a voice"),  # a learned one
        (dict(name="../evil"), "voice name"),
        (dict(name=""), "voice name"),
        (dict(steps=0), "steps"),
        (dict(lr=0.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(examples=[]), "non-empty"),
        (dict(examples=[{"batch": {}}]), "example 0"),
        (dict(examples=[dict(example, extra=1)]), "unknown key"),
        (dict(examples=[example, bad_codes]), "code 0"),
        (dict(examples=[dict(example, codes=torch.zeros(1, G - 1, 6, dtype=torch.long))]), "groups"),
        (dict(init=torch.zeros(3)), "init"),
        (dict(init="nobody"), "unknown voice"),
        (dict(overwrite="yes"), "overwrite"),
    ]
    vector = model.talker.learned_voices["anna"].clone()
    for kwargs, message in cases:
        kwargs = {"name": "bob", "examples": [example], "steps": 3, "lr": 0.1, **kwargs}
        with pytest.raises(InputError, match=message):
            learn_voice(model, thinker_eos_token_ids=EOS, **kwargs)
    assert "bob" not in model.talker.learned_voices and torch.equal(model.talker.learned_voices["anna"], vector)
    with pytest.raises(InputError, match="no learned voice"):
        save_voice(model, "ethan", "x.safetensors")


def test_models_without_a_talker_or_learned_voices_are_refused():
    thinker_only = omni.OmniModel(omni.OmniConfig.from_name("tiny"), components=("thinker",))
    with pytest.raises(InputError, match="without the Talker"):
        learn_voice(thinker_only, "anna", [{}])
    qwen25 = omni.OmniModel(omni.OmniConfig.from_name("tiny-qwen2.5"), components=("thinker",))
    with pytest.raises(InputError, match="not supported for Qwen2.5-Omni"):
        learn_voice(qwen25, "anna", [{}])


def test_voices_beside_a_checkpoint(learned, tmp_path, capsys):
    model, report, *_ = learned
    directory = tmp_path / "ckpt"
    os.makedirs(directory / "voices")
    (directory / "voices" / "notes.txt").write_text("mine")  # not omni's: must stay
    omni.save(model, directory)
    omni.save(model, directory)  # again, over the voices/ folder it wrote
    assert sorted(os.listdir(directory / "voices")) == ["anna.safetensors", "notes.txt"]
    loaded = omni.load(directory, components=("thinker", "talker"), quiet=True)
    assert torch.equal(loaded.talker.learned_voices["anna"], report.vector)
    assert torch.equal(_codes(loaded, "anna").codes, _codes(model, "anna").codes)
    assert omni.load(directory, components=("thinker",), quiet=True).talker is None  # no Talker: voices skipped
    loaded.talker.learned_voices.clear()
    omni.save(loaded, directory)  # a model without the voice never deletes its file
    assert sorted(os.listdir(directory / "voices")) == ["anna.safetensors", "notes.txt"]
    assert cli(["info", "--model", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "aiden, chelsie, ethan (presets); anna (learned)" in out  # config.json keeps keys sorted
