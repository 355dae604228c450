"""Qwen2.5-Omni Talker vs the reference: prompt logits (mixed, left-padded batch), greedy codec generation from a
real Thinker reply, and the whole speech path (Thinker states -> codes -> Token2Wav waveform) with the same noise.

The reference is a tiny random `Qwen2_5OmniForConditionalGeneration` with audio output; its tensors go into omni
through the release's key table (official names), in memory.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omni.models.qwen2_5_omni.weights import KEY_MAP
from omni.models.qwen2_5_omni.config import Qwen25ThinkerConfig
from omni.errors import ConfigError, InputError
from omni.models.qwen2_5_omni.config import Qwen25TalkerConfig
from omni.models.qwen2_5_omni.speech import build_talker_inputs, generate_codes
from omni.models.qwen2_5_omni.talker import Qwen25Talker
from omni.models.qwen2_5_omni.token2wav import Speaker, Token2Wav, Token2WavConfig

from reference import randomise
from reference_qwen2_5 import IDS, is_centred, thinker_config_dict
from test_token2wav import BIGVGAN
from test_token2wav import DIT as _DIT

DIT = {**_DIT, "num_embeds": 64}  # every talker id is a valid DiT code (the release: 8193 codes < 8448 talker ids)

TEXT_IDS = dict(tts_text_start_token_id=240, tts_text_end_token_id=241, tts_text_pad_token_id=242)
CODEC_IDS = dict(tts_codec_pad_token_id=60, tts_codec_start_token_id=61, tts_codec_end_token_id=62,
                 tts_codec_mask_token_id=63)
TALKER = dict(
    vocab_size=64, embedding_size=48, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, head_dim=12, max_position_embeddings=2048,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 2, 2]},
    spatial_merge_size=2, **TEXT_IDS, **CODEC_IDS, **IDS,
)
SPEAKER_BOS = 243


def _load(module: nn.Module, reference: nn.Module, part: str) -> nn.Module:
    """Fill an omni component from the reference's tensors (official names) through the key table."""
    state = {}
    for key, tensor in reference.state_dict().items():
        if not key.startswith(part + "."):
            continue
        mapped = KEY_MAP.to_omni(key)
        assert mapped is not None, f"no key-table row for {key}"
        state[mapped.name[len(part) + 1:]] = tensor
    module.load_state_dict(state, strict=True)
    return module.eval()


def build_pair():
    """The reference (random weights, one voice) and omni's Talker and Token2Wav loaded from it."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(0)
    cfg = Qwen2_5OmniConfig(thinker_config=thinker_config_dict(), talker_config=TALKER,
                            token2wav_config={"dit_config": DIT, "bigvgan_config": BIGVGAN})
    ref = Qwen2_5OmniForConditionalGeneration(cfg).float().eval()
    randomise(ref, centred=is_centred)
    with torch.no_grad():
        # codec end made likelier, so that the greedy reply of the generation test stops inside its budget
        ref.talker.codec_head.weight[TALKER["tts_codec_end_token_id"]] *= 3
    g = torch.Generator().manual_seed(1)
    ref.speaker_map["Chelsie"] = {"bos_token": SPEAKER_BOS, "cond": torch.randn(DIT["enc_emb_dim"], generator=g),
                                  "ref_mel": torch.randn(1, 20, DIT["mel_dim"], generator=g)}
    talker = _load(Qwen25Talker(Qwen25TalkerConfig.from_dict(TALKER)), ref, "talker")
    token2wav = _load(Token2Wav(Token2WavConfig.from_dict({"dit_config": DIT, "bigvgan_config": BIGVGAN})), ref,
                      "token2wav")
    return ref, talker, token2wav


@pytest.fixture(scope="module")
def pair():
    return build_pair()


@pytest.fixture(scope="module")
def thinker_cfg():
    return Qwen25ThinkerConfig.from_dict(thinker_config_dict())


def _thinker_embedding(ref) -> nn.Embedding:
    return nn.Embedding.from_pretrained(ref.thinker.get_input_embeddings().weight.detach().clone())


def _image_batch(seed=0):
    """Row 0: text, an image (2x2 merged tokens from a 1x4x4 patch grid), text. Row 1: text, left-padded."""
    g = torch.Generator().manual_seed(seed)
    text = lambda n: torch.randint(0, 190, (n,), generator=g)  # noqa: E731
    image = torch.tensor([IDS["vision_start_token_id"]] + [IDS["image_token_index"]] * 4 + [IDS["vision_end_token_id"]])
    row0 = torch.cat([text(3), image, text(2)])
    row1 = torch.cat([torch.zeros(4, dtype=torch.long), text(7)])
    ids = torch.stack([row0, row1])
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    return ids, mask, torch.tensor([[1, 4, 4]])


def test_prompt_logits_match_reference(pair, thinker_cfg):
    ref, talker, _ = pair
    ids, mask, grid = _image_batch()
    B, P = ids.shape
    G = 3
    g = torch.Generator().manual_seed(2)
    generated = torch.randint(0, 190, (B, G), generator=g)
    embeds = torch.randn(B, P + G - 1, 48, generator=g)
    hidden = torch.randn(B, P + G - 1, 48, generator=g)
    embed = _thinker_embedding(ref)
    inputs = build_talker_inputs(talker, thinker_cfg, embed, ids, generated, embeds, hidden, SPEAKER_BOS,
                                 attention_mask=mask, image_grid_thw=grid)
    with torch.no_grad():
        got = talker(inputs.embeds, inputs.position_ids, inputs.attention_mask).logits
        # the reference's own recipe (Qwen2_5OmniForConditionalGeneration.generate): zero the embeddings of media
        # placeholders, append the speaker BOS embedding and the first reply token; its forward adds the codec ids
        prompt = hidden[:, :P] + embeds[:, :P].masked_fill((ids == IDS["image_token_index"])[..., None], 0)
        x = torch.cat([prompt, embed(torch.full((B, 1), SPEAKER_BOS)), hidden[:, P:P + 1] + embeds[:, P:P + 1]], 1)
        text_ids = torch.cat([ids, torch.full((B, 1), SPEAKER_BOS), generated[:, :1]], 1)
        ref.talker.rope_deltas = None
        want = ref.talker(inputs_embeds=x, attention_mask=inputs.attention_mask, input_text_ids=text_ids,
                          image_grid_thw=grid, use_cache=False).logits
    real = inputs.attention_mask.bool()
    diff = (got - want)[real].abs().max().item()
    print(f"talker prompt logits max abs diff {diff:.2e}")
    assert diff <= 1e-4, diff


def _spy(obj, name: str, record: list):
    """Wrap a bound method so its return value is recorded (the method itself still runs)."""
    real = getattr(obj, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        record.append(out)
        return out

    setattr(obj, name, wrapper)
    return real


@pytest.mark.parametrize("batch", [2])  # batch 1: see test_speech_qwen2_5
def test_greedy_speech_matches_reference(pair, thinker_cfg, batch):
    """Reference generate (greedy Thinker and Talker) vs omni's Talker and Token2Wav fed the same Thinker states:
    identical codes, and the same waveforms from the same noise. Batch 2: the second row is left-padded."""
    ref, talker, token2wav = pair
    # seeds whose rows all speak: a row whose first code is a stop makes the reference's Token2Wav fail
    g = torch.Generator().manual_seed(4 if batch == 1 else 6)
    ids = torch.randint(0, 190, (batch, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1:, :3] = 0
    thinker_out, talker_out = [], []
    real_thinker = _spy(ref.thinker, "generate", thinker_out)
    real_talker = _spy(ref.talker, "generate", talker_out)
    try:
        torch.manual_seed(11)  # Token2Wav's noise is the only random draw (everything else is greedy)
        _, want_waves = ref.generate(
            input_ids=ids, attention_mask=mask, speaker="Chelsie", thinker_max_new_tokens=6,
            thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=40, token2wav_num_steps=4,
            # its stop ids default to the release's numbers (8292, 8294), not the config's
            talker_eos_token_id=[TALKER["tts_codec_pad_token_id"], TALKER["tts_codec_end_token_id"]])
    finally:
        ref.thinker.generate, ref.talker.generate = real_thinker, real_talker
    want_waves = [want_waves] if batch == 1 else want_waves
    steps = thinker_out[0].hidden_states  # per step: (embeddings, layer 1, ..., final normed)
    embeds = torch.cat([s[0] for s in steps], 1)
    hidden = torch.cat([s[-1] for s in steps], 1)
    generated = thinker_out[0].sequences[:, ids.shape[1]:]
    want_codes = talker_out[0][:, ids.shape[1] + 2:]

    inputs = build_talker_inputs(talker, thinker_cfg, _thinker_embedding(ref), ids, generated, embeds, hidden,
                                 SPEAKER_BOS, attention_mask=mask)
    out = generate_codes(talker, inputs, max_new_tokens=40, do_sample=False)
    assert torch.equal(out.codes, want_codes), (out.codes, want_codes)
    n = int(out.lengths[0])
    assert 0 < n < 40 and out.codes[0, n] == TALKER["tts_codec_end_token_id"]  # it stopped, on codec end
    voice = Speaker(SPEAKER_BOS, ref.speaker_map["Chelsie"]["cond"], ref.speaker_map["Chelsie"]["ref_mel"][0])
    torch.manual_seed(11)
    for row, want in enumerate(want_waves):  # one Token2Wav call per row, as the reference decodes them
        n = int(out.lengths[row])
        noise = torch.randn(1, n * DIT["repeats"], DIT["mel_dim"])
        wave = token2wav(out.codes[row:row + 1, :n], voice, noise=noise, num_steps=4)
        diff = (wave.flatten() - want.flatten()).abs().max().item()
        print(f"speech row {row}: {n} codes, waveform max abs diff {diff:.2e}")
        assert diff <= 1e-4, diff


def test_config_and_input_errors(pair, thinker_cfg):
    _, talker, _ = pair
    cfg = Qwen25TalkerConfig.from_dict({**TALKER, "model_type": "qwen2_5_omni_talker"})
    assert cfg.to_dict() == {**TALKER, "model_type": "qwen2_5_omni_talker"}
    assert cfg.image_token_id == IDS["image_token_index"]
    with pytest.raises(ConfigError, match="use_sliding_window"):
        Qwen25TalkerConfig.from_dict({**TALKER, "use_sliding_window": True})
    with pytest.raises(ConfigError, match="below vocab_size"):
        Qwen25TalkerConfig.from_dict({**TALKER, "tts_codec_pad_token_id": 64})
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(InputError, match="at least 2"):
        build_talker_inputs(talker, thinker_cfg, nn.Embedding(256, 48), ids, ids[:, :1], torch.zeros(1, 4, 48),
                            torch.zeros(1, 4, 48), SPEAKER_BOS)
    with pytest.raises(InputError, match="embeds and hidden"):
        build_talker_inputs(talker, thinker_cfg, nn.Embedding(256, 48), ids, ids[:, :2], torch.zeros(1, 4, 48),
                            torch.zeros(1, 4, 48), SPEAKER_BOS)


def test_sampled_codes_match_reference(pair, thinker_cfg):
    """With the release's sampling (temperature 0.9, top-k 40, top-p 0.8, repetition penalty 1.05) and the same
    global seed, omni draws the same codes as the reference: the logits processors agree to the bit."""
    ref, talker, _ = pair
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(0, 190, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    thinker_out, talker_out = [], []
    real_thinker = _spy(ref.thinker, "generate", thinker_out)
    real_talker = _spy(ref.talker, "generate", talker_out)
    try:
        torch.manual_seed(21)
        ref.generate(input_ids=ids, attention_mask=mask, speaker="Chelsie", thinker_max_new_tokens=6,
                     thinker_do_sample=False, talker_max_new_tokens=12, token2wav_num_steps=2,
                     talker_eos_token_id=[TALKER["tts_codec_pad_token_id"], TALKER["tts_codec_end_token_id"]])
    finally:
        ref.thinker.generate, ref.talker.generate = real_thinker, real_talker
    steps = thinker_out[0].hidden_states
    inputs = build_talker_inputs(
        talker, thinker_cfg, _thinker_embedding(ref), ids, thinker_out[0].sequences[:, ids.shape[1]:],
        torch.cat([s[0] for s in steps], 1), torch.cat([s[-1] for s in steps], 1), SPEAKER_BOS, attention_mask=mask)
    torch.manual_seed(21)
    out = generate_codes(talker, inputs, max_new_tokens=12)  # the release's sampling defaults
    want = talker_out[0][:, ids.shape[1] + 2:]
    assert torch.equal(out.codes, want), (out.codes, want)
    greedy = generate_codes(talker, inputs, max_new_tokens=12, do_sample=False)
    assert not torch.equal(greedy.codes, out.codes)  # it did sample
