"""Qwen2.5-Omni streaming speech: chunked Token2Wav (token2wav/streaming.py) against the whole decode, and
`model.stream(..., speak=True)` end to end.

What is exact and what is not (the module docstring of token2wav/streaming.py has the why):
- one DiT velocity evaluation on a window equals the whole sequence's on the window's chunk (block-local attention,
  and the default context is exactly one evaluation's reach): checked to float rounding;
- a reply that never fills a chunk and its look-ahead is one window: the streamed audio equals the whole decode;
- the ODE solve over many evaluations is not exact at the window edges: streamed vs whole decode is an SNR bound.
  Measured on this tiny config (seeded random weights at the scale the other Token2Wav tests use) over the replies
  below: 99.6 to 102 dB; without context (past = future = 0) it falls to ~51 dB, without vocoder context to ~4 dB.
  The bound, 80 dB, sits 20 dB under the measurements (room for other BLAS kernels) and far above what a wrong
  window, a misaligned block or a wrong noise slice gives. docs/generation.md reports the reference-size numbers.
Time to first audio is measured by benchmarks/stream_qwen2_5.py, not here.
"""

from __future__ import annotations

import copy

import pytest
import torch

import omni
from omni.errors import ConfigError, InputError
from omni.models.qwen2_5_omni.speech import stream_speech
from omni.models.qwen2_5_omni.token2wav import Speaker, Token2Wav, Token2WavConfig
from omni.models.qwen2_5_omni.token2wav.streaming import stream_plan

from test_token2wav import BIGVGAN, DIT, _randomise

SNR_BOUND_DB = 80.0


def snr_db(streamed: torch.Tensor, full: torch.Tensor) -> float:
    """Signal-to-noise ratio of the streamed waveform, the whole decode being the signal."""
    return (10 * torch.log10(full.pow(2).sum() / (streamed - full).pow(2).sum().clamp_min(1e-30))).item()


@pytest.fixture(scope="module")
def token2wav():
    return _randomise(Token2Wav(Token2WavConfig.from_dict({"dit_config": DIT, "bigvgan_config": BIGVGAN})), 0)


def _voice(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(conditioning=torch.randn(DIT["enc_emb_dim"], generator=g),
                reference_mel=torch.randn(20, DIT["mel_dim"], generator=g))


def _reply(n_codes, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, DIT["num_embeds"], (1, n_codes), generator=g),
            torch.randn(1, n_codes * DIT["repeats"], DIT["mel_dim"], generator=g))


def test_one_velocity_evaluation_is_exact_on_a_window(token2wav):
    """The DiT's reach: a window of past + chunk + future blocks gives the chunk the whole sequence's velocity."""
    dit, block = token2wav.dit, DIT["block_size"]
    plan = stream_plan(dit.cfg)
    assert (plan.past_blocks, plan.future_blocks) == (2, 1)  # two look-backward layers, one look-ahead layer
    codes, x = _reply(40, 1)  # 80 mel frames = 20 blocks
    voice = token2wav.voice(1, "cpu", **_voice())
    with torch.no_grad():
        cond = dit.condition(codes, *voice, guidance=False)
        full = dit(x, torch.tensor(0.3), cond)
        for first in (0, 3, 7, 15):  # chunks of 3 blocks starting at block `first`
            start, end = max(0, first - plan.past_blocks) * block, min(20, first + 3 + plan.future_blocks) * block
            window = dit(x[:, start:end], torch.tensor(0.3), cond[:, start:end])
            chunk = slice(first * block - start, min(20, first + 3) * block - start)
            assert torch.allclose(window[:, chunk], full[:, first * block: (first + 3) * block], atol=1e-5)
            if first >= 3:  # one block less of context changes the chunk: the default is the reach, not more
                short = dit(x[:, start + block: end], torch.tensor(0.3), cond[:, start + block: end])
                assert (short[:, chunk.start - block: chunk.stop - block] - window[:, chunk]).abs().max() > 1e-4


@pytest.mark.parametrize("n_codes", [1, 5, 7])
def test_a_reply_inside_one_window_is_the_whole_decode(token2wav, n_codes):
    """Fewer codes than a chunk and its look-ahead (6 + 2 here): one window, exactly the whole decode."""
    codes, noise = _reply(n_codes, 2)
    full = token2wav(codes, noise=noise, num_steps=4, **_voice())
    pieces = list(token2wav.stream_decode(codes.split(1, 1), noise=noise, num_steps=4, **_voice()))
    assert len(pieces) == 1 and torch.equal(pieces[0], full)


@pytest.mark.parametrize("n_codes,seed", [(30, 3), (64, 4), (101, 5)])
def test_streamed_speech_is_close_to_the_whole_decode(token2wav, n_codes, seed):
    codes, noise = _reply(n_codes, seed)
    full = token2wav(codes, noise=noise, num_steps=10, **_voice())
    pieces = list(token2wav.stream_decode(codes.split(1, 1), noise=noise, num_steps=10, **_voice()))
    streamed = torch.cat(pieces, -1)
    assert streamed.shape == full.shape == (1, n_codes * token2wav.samples_per_code)
    assert len(pieces) >= n_codes // 6 - 2  # a piece per chunk of 6 codes, the first after the vocoder context
    snr = snr_db(streamed, full)
    without_context = torch.cat(list(token2wav.stream_decode(codes, noise=noise, num_steps=10, past_blocks=0,
                                                             future_blocks=0, **_voice())), -1)
    print(f"{n_codes} codes: SNR {snr:.1f} dB; without DiT context {snr_db(without_context, full):.1f} dB")
    assert snr >= SNR_BOUND_DB, snr
    assert snr_db(without_context, full) < snr - 20  # the context is what makes it close


def test_pieces_do_not_depend_on_how_codes_arrive(token2wav):
    """Code by code, in uneven pieces or all at once: the same samples; each push returns only final samples."""
    codes, noise = _reply(45, 6)
    whole = torch.cat(list(token2wav.stream_decode(codes, noise=noise, num_steps=4, **_voice())), -1)
    uneven = codes.split([1, 7, 2, 13, 22], 1)
    assert torch.equal(torch.cat(list(token2wav.stream_decode(uneven, noise=noise, num_steps=4, **_voice())), -1),
                       whole)
    stream, got = token2wav.streamer(noise=noise, num_steps=4, **_voice()), []
    for t in range(45):
        got.append(stream.push(codes[:, t:t + 1]))
        done = torch.cat(got, -1)
        assert torch.equal(done, whole[:, :done.shape[1]])
    assert torch.equal(torch.cat([*got, stream.finish()], -1), whole)


def test_noise_drawn_in_pages_is_the_whole_decode_noise(token2wav):
    """Without explicit noise the stream draws it from the generator 16 frames at a time; for 16 values per frame
    or more (80 mel bins in the release) that equals one draw over the reply, the whole decode's noise."""
    t2w = _randomise(Token2Wav(Token2WavConfig.from_dict(
        {"dit_config": {**DIT, "mel_dim": 16, "enc_channels": [16, 16, 16, 16, 48]},
         "bigvgan_config": {**BIGVGAN, "mel_dim": 16}})), 1)
    voice = dict(conditioning=torch.randn(DIT["enc_emb_dim"]), reference_mel=torch.randn(20, 16))
    codes = _reply(23, 7)[0]
    full = t2w(codes, num_steps=4, generator=torch.Generator().manual_seed(9), **voice)
    streamed = torch.cat(list(t2w.stream_decode(codes, num_steps=4, generator=torch.Generator().manual_seed(9),
                                                **voice)), -1)
    assert snr_db(streamed, full) >= SNR_BOUND_DB


def test_chunk_options_out_of_range_are_named(token2wav):
    cfg = token2wav.cfg.dit_config
    cases = [
        (dict(chunk_blocks=0), "chunk_blocks must be an integer in [1, 64]"),
        (dict(chunk_blocks=2.5), "chunk_blocks must be"),
        (dict(past_blocks=-1), "past_blocks must be an integer in [0, 64]"),
        (dict(future_blocks=True), "future_blocks must be"),
        (dict(vocoder_context=-3), "vocoder_context must be an integer in [0, 1000]"),
        (dict(chunk_blocks=40, past_blocks=20, future_blocks=5), "exceed the DiT's max_position_embeddings"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            token2wav.streamer(**options, **_voice())
        with pytest.raises(InputError):
            stream_plan(cfg, **options)
    odd = copy.deepcopy(cfg)
    odd.repeats = 3  # blocks of 4 frames cannot be cut at whole codes of 3
    with pytest.raises(ConfigError, match="multiple of repeats"):
        stream_plan(odd)
    stream = token2wav.streamer(**_voice())
    with pytest.raises(InputError, match="push codes as a"):
        stream.push(torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="integer ids"):
        stream.push(torch.zeros(1, 2))
    stream.finish()
    with pytest.raises(InputError, match="finished"):
        stream.push(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(InputError, match="codes must lie in"):  # the DiT's own check, window by window
        list(token2wav.stream_decode(torch.full((1, 9), 99), **_voice()))
    with pytest.raises(InputError, match="noise covers"):
        list(token2wav.stream_decode(torch.zeros(1, 30, dtype=torch.long), noise=torch.zeros(1, 20, 8), **_voice()))


# -- model.stream(speak=True) end to end ------------------------------------------------------------------------------

TALKER_IDS = dict(tts_codec_pad_token_id=60, tts_codec_start_token_id=61, tts_codec_end_token_id=62,
                  tts_codec_mask_token_id=63, tts_text_start_token_id=500, tts_text_end_token_id=501,
                  tts_text_pad_token_id=502)
SPEAKER_BOS = 503


def tiny_speaking_qwen2_5(directory, seed: int = 0, dit: dict | None = None):
    """The `tiny-qwen2.5` Thinker with a tiny Talker and Token2Wav and one voice, random weights, saved with the
    tiny tokenizer and loaded back (so `stream` has its processor). dit: dit_config fields to change."""
    from omni.demo import tiny_tokenizer_files
    from omni.release import PRESETS

    d = copy.deepcopy(PRESETS["tiny-qwen2.5"])
    th = d["thinker_config"]
    media = {k: th[k] for k in ("audio_token_index", "image_token_index", "video_token_index",
                                "audio_start_token_id", "audio_end_token_id", "vision_start_token_id")}
    d["talker_config"] = {
        **copy.deepcopy(PRESETS["qwen2.5-omni-7b"]["talker_config"]), **media, **TALKER_IDS,
        "vocab_size": 64, "embedding_size": th["text_config"]["hidden_size"], "hidden_size": 24,
        "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 12, "max_position_embeddings": 4096,
        "rope_scaling": {"rope_type": "default", "mrope_section": [2, 2, 2]},
    }
    d["token2wav_config"] = {"model_type": "qwen2_5_omni_token2wav",
                             "dit_config": {"model_type": "qwen2_5_omni_dit", **DIT, "num_embeds": 64,
                                            "max_position_embeddings": 4096, **(dit or {})},
                             "bigvgan_config": {"model_type": "qwen2_5_omni_bigvgan", **BIGVGAN}}
    d["enable_audio_output"] = True
    torch.manual_seed(seed)
    model = omni.OmniModel(omni.OmniConfig.from_dict(d))
    _randomise(model.token2wav, seed)
    g = torch.Generator().manual_seed(seed)
    model.speakers = {"Chelsie": Speaker(SPEAKER_BOS, torch.randn(DIT["enc_emb_dim"], generator=g),
                                         torch.randn(20, DIT["mel_dim"], generator=g))}
    omni.save(model, str(directory))
    tiny_tokenizer_files(str(directory))
    return omni.load(str(directory), quiet=True)


@pytest.fixture(scope="module")
def speaking(tmp_path_factory):
    return tiny_speaking_qwen2_5(tmp_path_factory.mktemp("q25stream"))


CONVERSATION = [{"role": "user", "content": "say something"}]


def test_stream_speak_yields_text_then_speech_close_to_generate(speaking):
    opts = dict(max_new_tokens=6, seed=0, voice="chelsie", speech={"max_new_tokens": 60, "num_steps": 4})
    full = speaking.generate(CONVERSATION, speak=True, **opts)
    pieces = list(speaking.stream(CONVERSATION, speak=True, **opts))
    n_text = next(i for i, p in enumerate(pieces) if torch.is_tensor(p))
    assert all(isinstance(p, str) for p in pieces[:n_text]) and all(torch.is_tensor(p) for p in pieces[n_text:])
    assert "".join(pieces[:n_text]) == full.text[0]
    audio, n = torch.cat(pieces[n_text:]), int(full.audio_lengths[0])
    codes = int(n // speaking.token2wav.samples_per_code)
    print(f"{codes} codes in {len(pieces) - n_text} pieces, SNR {snr_db(audio, full.audio[0, 0, :n]):.1f} dB")
    assert codes >= 30  # several chunks (6 codes each by default here) went through the stream
    assert len(pieces) - n_text >= 2  # speech came before the Talker was done
    assert audio.shape == (n,)
    assert snr_db(audio, full.audio[0, 0, :n]) >= SNR_BOUND_DB  # same codes, same noise (the seed)


def test_stream_speak_options_are_checked_before_any_work(speaking, monkeypatch):
    import omni.generation as generation

    def no_work(*args, **kwargs):
        raise AssertionError("the Thinker ran before the options were checked")

    monkeypatch.setattr(generation, "decode_steps", no_work)
    cases = [
        (dict(audio_chunk_frames=5), "audio_chunk_frames must be a multiple of 2 codes"),
        (dict(audio_chunk_frames=0), "audio_chunk_frames must be a positive number"),
        (dict(speech={"past_blocks": -1}), "past_blocks must be an integer"),
        (dict(speech={"vocoder_context": 10**6}), "vocoder_context must be an integer"),
        (dict(speech={"chunk_size": 3}), "unknown speech option"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message):
            speaking.stream(CONVERSATION, speak=True, voice="chelsie", **options)
    pieces = list(stream_speech(speaking, {"input_ids": torch.ones(1, 3, dtype=torch.long)}, [5], "chelsie"))
    assert pieces == []  # a one-token reply: nothing to say, as generate
