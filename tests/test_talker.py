"""Parity of the Talker, its code predictor and the speech-code loop with the reference (tiny random model).

The tiny reference's Talker vocabulary is 1024 + 32 ids so that, as in the release, the top 1024 ids (control
tokens, suppressed while speaking) sit above the 32 real codes; its root special ids are moved inside the tiny
Thinker vocabulary so that prompts can be written with them.
"""

from __future__ import annotations

import pytest
import torch

import omni
from omni.errors import InputError
from omni.models.qwen3_omni.speech import build_talker_inputs, generate_codes, speaker_id

from reference import randomise, tiny_config_dict

IM_START, IM_END, TTS_PAD, TTS_BOS, TTS_EOS, SYSTEM, USER, ASSISTANT, NL = 250, 251, 252, 253, 254, 245, 246, 247, 10
ROOT = dict(im_start_token_id=IM_START, im_end_token_id=IM_END, tts_pad_token_id=TTS_PAD, tts_bos_token_id=TTS_BOS,
            tts_eos_token_id=TTS_EOS, system_token_id=SYSTEM, user_token_id=USER, assistant_token_id=ASSISTANT)
CODEC_EOS = 1040
TALKER = dict(text_config=dict(vocab_size=1056), codec_eos_token_id=CODEC_EOS, codec_nothink_id=1041,
              codec_think_bos_id=1042, codec_think_eos_id=1043, codec_pad_id=1044, codec_bos_id=1045,
              speaker_id={"ethan": 1050, "chelsie": 1051})


def _build(directory):
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    torch.manual_seed(0)
    ref = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(**tiny_config_dict(talker=TALKER), **ROOT))
    ref = randomise(ref.float().eval())
    ref.save_pretrained(directory)
    return ref


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    directory = tmp_path_factory.mktemp("talker")
    ref = _build(directory)
    return ref, omni.load(directory, components=("talker",), quiet=True)


def _prompt(body_len=9, seed=3):
    body = torch.randint(20, 200, (body_len,), generator=torch.Generator().manual_seed(seed)).tolist()
    return [IM_START, SYSTEM, NL, 30, 31, IM_END, NL, IM_START, USER, NL, *body, IM_END, NL, IM_START, ASSISTANT, NL]


def _reference_speech(ref, ids, mask=None, speaker="ethan", **kwargs):
    """Run the reference end to end; capture the thinker result, the talker's inputs and the codes it decodes."""
    seen = {}
    thinker_generate, talker_generate, decode = ref.thinker.generate, ref.talker.generate, ref.code2wav.chunked_decode

    def thinker(*a, **k):
        seen["thinker"] = thinker_generate(*a, **k)
        return seen["thinker"]

    def talker(*a, **k):
        seen["talker_inputs"] = k
        return talker_generate(*a, **k)

    def code2wav(codes, *a, **k):
        seen["codes"] = codes.clone()
        return decode(codes, *a, **k)

    ref.thinker.generate, ref.talker.generate, ref.code2wav.chunked_decode = thinker, talker, code2wav
    try:
        extra = {} if mask is None else {"attention_mask": mask}
        ref.generate(ids, speaker=speaker, return_audio=True, thinker_max_new_tokens=8, thinker_eos_token_id=IM_END,
                     thinker_do_sample=False, **extra, **kwargs)
    finally:
        del ref.thinker.generate, ref.talker.generate, ref.code2wav.chunked_decode
    return seen


def _talker_inputs(ref, model, ids, seen, mask=None, speaker="ethan", **media):
    result = seen["thinker"]
    layer = model.config.talker_config.accept_hidden_layer
    embeds = torch.cat([h[0] for h in result.hidden_states], 1)
    hidden = torch.cat([h[layer] for h in result.hidden_states], 1)
    return build_talker_inputs(model.talker, model.config, ref.thinker.get_input_embeddings(), ids, result.sequences,
                               embeds, hidden, mask, speaker, thinker_eos_token_ids=(IM_END,), **media)


# -- modules ------------------------------------------------------------------------------------------------------


def test_talker_logits_match_reference(pair):
    ref, model = pair
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 24, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0
    pos = torch.arange(9).expand(3, 2, 9).clone()  # distinct t/h/w rows exercise the interleaved M-RoPE
    pos[1, :, 4:] += 2
    pos[2, :, 5:] += 5
    with torch.no_grad():
        want = ref.talker(inputs_embeds=x, position_ids=pos, attention_mask=mask, use_cache=False).logits
        got = model.talker(x, pos, mask).logits
        # the same through the KV cache: 6 tokens, then 3 one at a time
        cache = model.talker.decoder.new_cache(2, 4)  # too small on purpose: the cache grows
        steps = [model.talker(x[:, :6], pos[:, :, :6], mask[:, :6], cache).logits]
        for t in range(6, 9):
            steps.append(model.talker(x[:, t : t + 1], pos[:, :, t : t + 1], mask[:, : t + 1], cache).logits)
    real = mask.bool()
    assert (want - got)[real].abs().max().item() <= 1e-4
    assert (want - torch.cat(steps, 1))[real].abs().max().item() <= 1e-4


def test_code_predictor_matches_reference(pair):
    ref, model = pair
    cp_ref, cp = ref.talker.code_predictor, model.talker.code_predictor
    G = model.config.talker_config.num_code_groups
    x = torch.randn(2, G, 24, generator=torch.Generator().manual_seed(2))
    diffs = []
    with torch.no_grad():
        cache = cp.new_cache(2)
        for k in range(1, G):  # prefill [hidden, code 0], then one code embedding per step
            h = cp(x[:, :2] if k == 1 else x[:, k : k + 1], cache)[:, -1]
            want = cp_ref(inputs_embeds=x[:, : k + 1], use_cache=False).logits[:, -1]  # reference: lm_head[k - 1]
            diffs.append((want - cp.logits(k, h)).abs().max().item())
        codes = torch.randint(0, 32, (2, G), generator=torch.Generator().manual_seed(3))
        want = ref.talker.get_input_embeddings()(codes[:, 0]) + sum(
            cp_ref.get_input_embeddings()[k - 1](codes[:, k]) for k in range(1, G)
        )
        diffs.append((want - model.talker.frame_embedding(codes)).abs().max().item())
    assert max(diffs) <= 1e-4


# -- the Talker's input and the frame loop -----------------------------------------------------------------------


def test_talker_inputs_match_reference(pair):
    ref, model = pair
    ids = torch.tensor([_prompt()])
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=3)
    got = _talker_inputs(ref, model, ids, seen)
    want = seen["talker_inputs"]
    assert got.embeds.shape == want["inputs_embeds"].shape
    assert (got.embeds - want["inputs_embeds"]).abs().max().item() <= 1e-4
    assert torch.equal(got.attention_mask, want["attention_mask"])
    assert (got.trailing - want["trailing_text_hidden"]).abs().max().item() <= 1e-4
    assert (got.pad_embed - want["tts_pad_embed"]).abs().max().item() <= 1e-4


def test_speech_codes_match_reference_greedy(pair):
    ref, model = pair
    ids = torch.tensor([_prompt()])
    # the reference's talker_max_new_tokens = M gives at most M - 1 frames (the last code 0 is never expanded)
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=12)
    got = generate_codes(model.talker, _talker_inputs(ref, model, ids, seen), do_sample=False, max_frames=11)
    assert got.codes.shape == (1, 4, 11)
    assert torch.equal(got.codes, seen["codes"])
    assert got.lengths.tolist() == [11]


def test_speech_codes_match_reference_seeded_sampling_until_eos(pair):
    ref, model = pair
    ids = torch.tensor([_prompt()])
    torch.manual_seed(7)  # the reference samples from the global generator
    seen = _reference_speech(ref, ids, speaker="chelsie", talker_do_sample=True, talker_max_new_tokens=12)
    inputs = _talker_inputs(ref, model, ids, seen, speaker="chelsie")
    got = generate_codes(model.talker, inputs, do_sample=True, seed=7, max_frames=11)
    assert torch.equal(got.codes, seen["codes"])
    assert got.lengths.tolist() == [7]  # this seed draws codec eos at frame 7, before the frame limit
    other = generate_codes(model.talker, inputs, do_sample=True, seed=8, max_frames=11)
    assert not torch.equal(other.codes[..., :5], got.codes[..., :5])


def test_speech_codes_match_reference_batch_left_padding(pair):
    ref, model = pair
    ids, mask = _batch_of_two()
    seen = _reference_speech(ref, ids, mask, talker_do_sample=False, talker_max_new_tokens=10)
    got = generate_codes(model.talker, _talker_inputs(ref, model, ids, seen, mask), do_sample=False, max_frames=9)
    assert torch.equal(got.codes, seen["codes"])


# -- bad input ----------------------------------------------------------------------------------------------------


def test_unknown_speaker_lists_the_voices(pair):
    _, model = pair
    cfg = model.config.talker_config
    assert speaker_id(cfg, "Chelsie") == 1051
    with pytest.raises(InputError, match="chelsie.*ethan"):
        speaker_id(cfg, "nobody")


def test_prompt_without_assistant_turn_and_bad_options(pair):
    ref, model = pair
    ids = torch.tensor([_prompt()[:-3]])  # no generation prompt
    seq = torch.cat([ids, torch.tensor([[40, 41, IM_END]])], 1)
    states = torch.randn(1, seq.shape[1], 32)
    with pytest.raises(InputError, match="assistant"):
        build_talker_inputs(model.talker, model.config, ref.thinker.get_input_embeddings(), ids, seq, states, states)
    ids = torch.tensor([_prompt()])
    seq = torch.cat([ids, torch.tensor([[40, 41, IM_END]])], 1)
    states = torch.randn(1, seq.shape[1], 32)
    inputs = build_talker_inputs(model.talker, model.config, ref.thinker.get_input_embeddings(), ids, seq, states,
                                 states)
    with pytest.raises(InputError, match="thinker_hidden_size"):
        build_talker_inputs(model.talker, model.config, ref.thinker.get_input_embeddings(), ids, seq, states[..., :8],
                            states)
    with pytest.raises(InputError, match="unknown voice"):
        build_talker_inputs(model.talker, model.config, ref.thinker.get_input_embeddings(), ids, seq, states, states,
                            voice="nobody")
    with pytest.raises(InputError, match="unknown speech option"):
        generate_codes(model.talker, inputs, max_new_tokens=3)
    with pytest.raises(InputError, match="max_frames"):
        generate_codes(model.talker, inputs, max_frames=0)


def test_speech_codes_match_reference_with_audio_and_image_in_the_prompt(pair):
    ref, model = pair
    ref.config.talker_config.audio_config = ref.config.thinker_config.audio_config  # reference needs it (see notes)
    g = torch.Generator().manual_seed(4)
    # user turn: <audio_start> 13 x <audio> <audio_end> <vision_start> 4 x <image> <vision_end> text <im_end>
    user = [IM_START, USER, NL, 203, *[200] * 13, 206, 204, *[201] * 4, 205, 40, 41, IM_END, NL]
    ids = torch.tensor([[IM_START, SYSTEM, NL, 30, IM_END, NL, *user, IM_START, ASSISTANT, NL]])
    grid, frames = torch.tensor([[1, 4, 4]]), torch.ones(1, 100, dtype=torch.long)  # 16 patches -> 4 tokens
    media = dict(pixel_values=torch.randn(16, 96, generator=g), image_grid_thw=grid,
                 input_features=torch.randn(1, 16, 100, generator=g), feature_attention_mask=frames)
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=8, **media)
    inputs = _talker_inputs(ref, model, ids, seen, image_grid_thw=grid, audio_feature_lengths=frames.sum(-1))
    want = seen["talker_inputs"]
    assert (inputs.embeds - want["inputs_embeds"]).abs().max().item() <= 1e-4  # hidden_projection at media
    want_pos, _ = ref.talker.get_rope_index(want["talker_input_ids"], grid, None, want["attention_mask"], False,
                                            frames.sum(-1), None)
    assert torch.equal(inputs.position_ids, want_pos.float())
    assert not torch.equal(inputs.position_ids[0], inputs.position_ids[1])  # the image grid spreads h and w
    got = generate_codes(model.talker, inputs, do_sample=False, max_frames=7)
    assert torch.equal(got.codes, seen["codes"])


def _batch_of_two():
    long, short = _prompt(9), _prompt(3, seed=5)[7:]  # the short one has no system turn
    ids = torch.zeros(2, len(long), dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[0], mask[0] = torch.tensor(long), 1
    ids[1, -len(short):], mask[1, -len(short):] = torch.tensor(short), 1
    return ids, mask


def test_speech_codes_match_reference_batch_sampled_rows_end_apart(pair):
    ref, model = pair
    ids, mask = _batch_of_two()
    torch.manual_seed(1)
    seen = _reference_speech(ref, ids, mask, talker_do_sample=True, talker_max_new_tokens=16)
    got = generate_codes(model.talker, _talker_inputs(ref, model, ids, seen, mask), do_sample=True, seed=1,
                         max_frames=15)
    assert got.lengths.tolist() == [14, 10]  # both rows say codec eos, at different frames
    assert torch.equal(got.codes, seen["codes"])  # incl. the zeros past row 1's end


def test_speak_with_the_omni_thinker_matches_reference(tmp_path):
    # Thinker states recomputed by omni's own Thinker (through omni.load) instead of taken from the reference
    from omni.models.qwen3_omni.speech import speak

    ref = _build(tmp_path)
    model = omni.load(tmp_path, components=("thinker", "talker"), quiet=True)
    ids = torch.tensor([_prompt()])
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=12)
    reply = seen["thinker"].sequences[:, ids.shape[1]:]
    got = speak(model, {"input_ids": ids}, reply, thinker_eos_token_ids=(IM_END,), do_sample=False, max_frames=11)
    assert torch.equal(got.codes, seen["codes"])


def test_talker_full_size_matches_reference_parameters():
    """The 30B-A3B Talker built on the meta device: every reference tensor, by official name and shape."""
    from transformers import Qwen3OmniMoeConfig
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as ref_mod

    from omni.models.qwen3_omni.weights import KEY_MAP

    cfg = omni.OmniConfig.from_name("qwen3-omni-30b-a3b")
    with torch.device("meta"):
        ref = ref_mod.Qwen3OmniMoeTalkerForConditionalGeneration(Qwen3OmniMoeConfig(**cfg.to_dict()).talker_config)
        model = omni.OmniModel(cfg, components=("talker",))
    assert model.thinker is None and next(model.talker.parameters()).is_meta
    assert sum(p.numel() for p in model.talker.parameters()) == sum(p.numel() for p in ref.parameters())
    # on disk each expert is its own tensor: 20 layers x 128 experts x 3 + the rest = 7,951 + 86 (fact sheet)
    official = [n for name, p in model.named_parameters() for n in KEY_MAP.to_official(name, n_stacked=p.shape[0])]
    assert len(official) == 7951 + 86 and all(n.startswith("talker.") for n in official)
    assert model.talker.code_predictor.lm_heads[14].weight.shape == (2048, 1024)


def test_speak_with_the_omni_thinker_audio_and_image_prompt(tmp_path):
    from omni.models.qwen3_omni.speech import speak

    ref = _build(tmp_path)
    ref.config.talker_config.audio_config = ref.config.thinker_config.audio_config  # reference needs it (see notes)
    model = omni.load(tmp_path, components=("thinker", "talker"), quiet=True)
    g = torch.Generator().manual_seed(6)
    user = [IM_START, USER, NL, 203, *[200] * 13, 206, 204, *[201] * 4, 205, 40, 41, IM_END, NL]
    ids = torch.tensor([[*user, IM_START, ASSISTANT, NL]])
    batch = dict(input_ids=ids, pixel_values=torch.randn(16, 96, generator=g), image_grid_thw=torch.tensor([[1, 4, 4]]),
                 input_features=torch.randn(1, 16, 100, generator=g),
                 feature_attention_mask=torch.ones(1, 100, dtype=torch.long))
    media = {k: v for k, v in batch.items() if k != "input_ids"}
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=8, **media)
    reply = seen["thinker"].sequences[:, ids.shape[1]:]
    got = speak(model, batch, reply, thinker_eos_token_ids=(IM_END,), do_sample=False, max_frames=7)
    assert torch.equal(got.codes, seen["codes"])


# -- OmniModel.generate / stream with speak=True ------------------------------------------------------------------


def test_generate_speak_matches_reference_waveform(tmp_path):
    """model.generate(speak=True) end to end (Thinker -> Talker -> Code2Wav) vs the reference's generate(return_audio)."""
    ref = _build(tmp_path)
    model = omni.load(tmp_path, quiet=True)  # every component
    ids = torch.tensor([_prompt()])
    sequences, ref_wav = ref.generate(ids, speaker="chelsie", return_audio=True, thinker_max_new_tokens=8,
                                      thinker_eos_token_id=IM_END, thinker_do_sample=False, talker_do_sample=False,
                                      talker_max_new_tokens=12)
    got = model.generate({"input_ids": ids}, max_new_tokens=8, eos_token_ids=(IM_END,), speak=True, voice="chelsie",
                         speech={"do_sample": False, "max_frames": 11})
    assert torch.equal(got.tokens, sequences[:, ids.shape[1]:])
    assert got.audio.shape == ref_wav.shape and int(got.audio_lengths[0]) == ref_wav.shape[-1]
    assert (got.audio - ref_wav).abs().max() < 1e-4

    # model.stream(speak=True) is checked against this generate in tests/test_generation.py


def test_generate_speak_checks_the_voice_and_components_first(tmp_path):
    _build(tmp_path)
    model = omni.load(tmp_path, components=("thinker", "talker"), quiet=True)
    batch = {"input_ids": torch.tensor([_prompt()])}
    with pytest.raises(omni.InputError, match="code2wav"):
        model.generate(batch, speak=True)
    model = omni.load(tmp_path, quiet=True)
    with pytest.raises(omni.InputError, match="available voices: \\['chelsie', 'ethan'\\]"):
        model.generate(batch, speak=True, voice="nobody")
    assert model.generate(batch, max_new_tokens=2).shape == (1, 2)  # still healthy
