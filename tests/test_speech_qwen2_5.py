"""Qwen2.5-Omni speech output end to end vs the reference's `generate`: omni's Thinker (re-reading the reply), Talker
and Token2Wav, loaded from a checkpoint the reference saved in the official layout, with its voice converted to
safetensors. Greedy Thinker and Talker; the DiT's noise comes from the same seed."""

from __future__ import annotations

import types

import pytest
import torch

import omni
from omni.errors import InputError
from omni.models.qwen2_5_omni.speech import spoken_reply as speak
from omni.models.qwen2_5_omni.talker import Qwen25Talker
from omni.models.qwen2_5_omni.token2wav import Token2Wav, save_speakers

from test_talker_qwen2_5 import TALKER, build_pair

STOPS = [TALKER["tts_codec_pad_token_id"], TALKER["tts_codec_end_token_id"]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The reference, saved in the official layout with its voice converted to safetensors."""
    directory = tmp_path_factory.mktemp("q25speech")
    ref, _, _ = build_pair()
    ref.save_pretrained(directory)
    save_speakers(ref.speaker_map, directory / "spk_dict.safetensors")
    return ref, directory


@pytest.fixture(scope="module")
def models(checkpoint):
    ref, directory = checkpoint
    model = omni.load(directory, quiet=True)  # every component, and the voices
    assert isinstance(model.talker, Qwen25Talker) and isinstance(model.token2wav, Token2Wav)
    assert model.code2wav is None and sorted(model.speakers) == ["Chelsie"]
    return ref, model


def test_spoken_reply_matches_reference(models):
    """A left-padded batch of 2 whose second row's reply ends early (on a Thinker eos): codes and waveforms per row."""
    ref, model = models
    g = torch.Generator().manual_seed(6)  # rows that all speak (see test_talker_qwen2_5)
    ids = torch.randint(0, 190, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    eos = 118  # the second token of row 1's greedy reply: that row ends there, its text track says text-end
    torch.manual_seed(11)
    sequences, want = ref.generate(
        input_ids=ids, attention_mask=mask, speaker="Chelsie", thinker_max_new_tokens=6, thinker_do_sample=False,
        thinker_eos_token_id=eos, talker_do_sample=False, talker_max_new_tokens=40, token2wav_num_steps=4,
        talker_eos_token_id=STOPS)
    reply = sequences[:, ids.shape[1]:]
    assert reply[1, 1] == eos and (reply[0] != eos).all()
    torch.manual_seed(11)
    codes, audio, lengths = speak(model, {"input_ids": ids, "attention_mask": mask}, reply, voice="chelsie",
                                  thinker_eos_token_ids=(eos,), do_sample=False, max_new_tokens=40, num_steps=4)
    assert audio.shape == (2, 1, int(lengths.max()))
    for row, wave in enumerate(want):
        n = int(lengths[row])
        assert n == wave.numel() and n > 0
        diff = (audio[row, 0, :n] - wave).abs().max().item()
        print(f"row {row}: {codes.lengths[row]} codes, waveform max abs diff {diff:.2e}")
        assert diff <= 1e-4, diff
        assert not audio[row, 0, n:].any()  # silent past the row's end


def test_speech_errors(models):
    _, model = models
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long)}
    with pytest.raises(InputError, match="available"):
        speak(model, batch, torch.ones(1, 3, dtype=torch.long), voice="nobody")
    with pytest.raises(InputError, match="unknown speech option"):
        speak(model, batch, torch.ones(1, 3, dtype=torch.long), temprature=0.5)
    codes, audio, lengths = speak(model, batch, torch.ones(1, 1, dtype=torch.long))  # a one-token reply
    assert codes.codes.shape == (1, 0) and audio.shape == (1, 1, 0) and lengths.tolist() == [0]
    bare = types.SimpleNamespace(thinker=model.thinker, talker=model.talker, token2wav=model.token2wav, speakers={})
    with pytest.raises(InputError, match="convert_speakers"):
        speak(bare, batch, torch.ones(1, 3, dtype=torch.long))


def test_save_round_trip(models, tmp_path):
    """omni.save writes the official layout back (talker and token2wav included) and the voices beside it."""
    from safetensors.torch import load_file

    ref, model = models
    omni.save(model, tmp_path)
    back = omni.load(tmp_path, quiet=True)
    saved = {}
    for f in tmp_path.glob("*.safetensors"):
        if f.name != "spk_dict.safetensors":
            saved.update(load_file(f))
    for prefix in ("talker.", "token2wav."):
        want = {k: v for k, v in ref.state_dict().items() if k.startswith(prefix)}
        assert want and all(torch.equal(saved[k], v) for k, v in want.items())
    voice, again = model.speakers["Chelsie"], back.speakers["Chelsie"]
    assert voice.bos_token == again.bos_token and torch.equal(voice.ref_mel, again.ref_mel)


def test_generate_speak(models):
    """model.generate(..., speak=True): omni's own greedy Thinker reply, spoken; the same waveform as the reference."""
    ref, model = models
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 190, (1, 7), generator=g)
    mask = torch.ones_like(ids)
    torch.manual_seed(11)
    sequences, want = ref.generate(
        input_ids=ids, attention_mask=mask, speaker="Chelsie", thinker_max_new_tokens=6, thinker_do_sample=False,
        talker_do_sample=False, talker_max_new_tokens=40, token2wav_num_steps=4, talker_eos_token_id=STOPS)
    torch.manual_seed(11)
    out = model.generate({"input_ids": ids, "attention_mask": mask}, max_new_tokens=6, do_sample=False,
                         eos_token_ids=(), speak=True, voice="Chelsie",
                         speech={"do_sample": False, "max_new_tokens": 40, "num_steps": 4})
    assert torch.equal(out.tokens, sequences[:, ids.shape[1]:])
    n = int(out.audio_lengths[0])
    assert n == want.numel()
    diff = (out.audio[0, 0, :n] - want).abs().max().item()
    assert diff <= 1e-4, diff  # stream(speak=True): tests/test_stream_qwen2_5.py


def test_bfloat16_model_speaks_with_an_fp32_token2wav(checkpoint):
    half = omni.load(checkpoint[1], dtype="bfloat16", quiet=True)
    assert half.talker.codec_head.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in half.token2wav.parameters())  # as the release runs it
    ids = torch.randint(0, 190, (1, 7), generator=torch.Generator().manual_seed(4))
    out = half.generate({"input_ids": ids}, max_new_tokens=4, do_sample=False, eos_token_ids=(), speak=True,
                        voice="Chelsie", speech={"do_sample": False, "max_new_tokens": 8, "num_steps": 2})
    assert out.audio.dtype == torch.float32 and torch.isfinite(out.audio).all()
    assert out.audio.shape[-1] == int(out.audio_lengths.max()) > 0
