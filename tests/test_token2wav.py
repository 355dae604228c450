"""Token2Wav (Qwen2.5-Omni) vs the reference: BigVGAN waveform, DiT mel (same initial noise), whole waveform.

Tiny random reference models are built in memory; their state dicts go into omni through the release's key table
(official names, prefixed `token2wav.` as on disk), so a naming mismatch fails loudly here.
"""

from __future__ import annotations

import pytest
import torch

from omni.models.qwen2_5_omni.weights import KEY_MAP
from omni.errors import ConfigError, InputError
from omni.errors import CheckpointError
from omni.models.qwen2_5_omni.token2wav import DiT, BigVGAN, Speaker, Token2Wav, Token2WavConfig, load_speakers, save_speakers

DIT = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=2, head_dim=16, ff_mult=2, emb_dim=16,
    block_size=4, look_ahead_layers=[2], look_backward_layers=[0, 3], repeats=2, num_embeds=31, mel_dim=8,
    enc_emb_dim=8, enc_dim=8, enc_channels=[16, 16, 16, 16, 48], enc_kernel_sizes=[5, 3, 3, 3, 1],
    enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=8, enc_res2net_scale=2, enc_se_channels=8,
    max_position_embeddings=256,
)
BIGVGAN = dict(
    mel_dim=8, upsample_initial_channel=32, resblock_kernel_sizes=[3, 7],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], upsample_rates=[5, 3, 2], upsample_kernel_sizes=[11, 7, 4],
)



def _randomise(model, seed):
    """Default init leaves norms at 1 and biases at 0: randomise everything so every weight matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(0.1 * torch.randn_like(p))
    return model.float().eval()


def reference_token2wav(seed=0):
    from transformers.models.qwen2_5_omni import configuration_qwen2_5_omni as C
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as M

    cfg = C.Qwen2_5OmniToken2WavConfig(dit_config=DIT, bigvgan_config=BIGVGAN)
    return _randomise(M.Qwen2_5OmniToken2WavModel(cfg), seed)


def omni_state(reference, part: str = "") -> dict:
    """The reference Token2Wav's tensors (official names, `token2wav.` + its own) under omni's names, through the
    key table; `part` keeps one submodule (e.g. "bigvgan") and strips its prefix."""
    out = {}
    for key, tensor in reference.state_dict().items():
        mapped = KEY_MAP.to_omni("token2wav." + key)
        prefix = f"token2wav.{part}." if part else "token2wav."
        if part and not key.startswith(f"code2wav_{part}_model."):
            continue
        assert mapped is not None, f"no key-table row for token2wav.{key}"
        assert mapped.name.startswith(prefix), (key, mapped.name)
        out[mapped.name[len(prefix):]] = tensor
    return out


@pytest.fixture(scope="module")
def reference():
    return reference_token2wav()


@pytest.fixture(scope="module")
def config():
    return Token2WavConfig.from_dict({"dit_config": DIT, "bigvgan_config": BIGVGAN})


def test_bigvgan_waveform_matches_reference(reference, config):
    vocoder = BigVGAN(config.bigvgan_config).eval()
    state = omni_state(reference, "bigvgan")
    vocoder.load_state_dict(state, strict=True)
    torch.manual_seed(1)
    mel = torch.randn(1, 8, 13) - 2.0  # natural-log amplitudes, as the DiT produces
    with torch.no_grad():
        want = reference.code2wav_bigvgan_model(mel)
        got = vocoder(mel)
    assert got.shape == (1, 13 * vocoder.hop_length)
    diff = (got.flatten() - want.flatten()).abs().max().item()
    assert diff <= 1e-4, diff


@pytest.fixture(scope="module")
def dit(reference, config):
    model = DiT(config.dit_config).eval()
    model.load_state_dict(omni_state(reference, "dit"), strict=True)
    return model


def _dit_inputs(seed=0, batch=1, n_codes=11, ref_frames=20):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(1, DIT["num_embeds"] + 1, (batch, n_codes), generator=g)
    speaker = torch.randn(batch, DIT["enc_emb_dim"], generator=g)
    ref_mel = torch.randn(batch, ref_frames, DIT["mel_dim"], generator=g)
    return codes, speaker, ref_mel


def test_dit_velocity_matches_reference(reference, dit):
    """One evaluation of the guided velocity field (conditional and unconditional rows), across block edges."""
    codes, speaker, ref_mel = _dit_inputs(batch=2)
    T = codes.shape[1] * DIT["repeats"]
    x = torch.randn(2, T, DIT["mel_dim"])
    t = torch.tensor(0.37)
    with torch.no_grad():
        want = reference.code2wav_dit_model(
            hidden_states=x, condition_vector=ref_mel, speaker_embedding=speaker[:, None].expand(-1, T, -1),
            quantized_code=codes, time_step=t, apply_cfg=True)
        got = dit(torch.cat([x, x]), t, dit.condition(codes, speaker, ref_mel, guidance=True))
    diff = (got - want).abs().max().item()
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("guidance_scale, num_steps", [(0.5, 10), (0.0, 4)])
def test_dit_mel_matches_reference(reference, dit, guidance_scale, num_steps):
    """The whole sampler (10 RK 3/8 steps, sway, guidance), both starting from the same noise."""
    codes, speaker, ref_mel = _dit_inputs(seed=1)
    T = codes.shape[1] * DIT["repeats"]
    torch.manual_seed(5)
    noise = torch.randn(1, T, DIT["mel_dim"])
    torch.manual_seed(5)  # the reference draws its noise first thing, with this shape
    want = reference.code2wav_dit_model.sample(speaker, ref_mel, codes, num_steps, guidance_scale)
    got = dit.sample(codes, speaker, ref_mel, noise=noise, num_steps=num_steps, guidance_scale=guidance_scale)
    assert got.shape == (1, DIT["mel_dim"], T)
    diff = (got - want).abs().max().item()
    assert diff <= 1e-4, diff


def test_dit_rejects_bad_input(dit):
    codes, speaker, ref_mel = _dit_inputs()
    with pytest.raises(InputError, match="max_position_embeddings"):
        dit.sample(torch.ones(1, 200, dtype=torch.long), speaker, ref_mel)
    with pytest.raises(InputError, match="noise must have shape"):
        dit.sample(codes, speaker, ref_mel, noise=torch.zeros(1, 3, 8))
    with pytest.raises(InputError, match="codec table"):
        dit.sample(codes + DIT["num_embeds"], speaker, ref_mel)  # e.g. a Talker control id
    with pytest.raises(InputError, match="reference_mel"):
        dit.sample(codes, speaker, ref_mel.transpose(1, 2))


def test_bigvgan_batch_rows_are_independent(config):
    torch.manual_seed(0)
    vocoder = _randomise(BigVGAN(config.bigvgan_config), 0)
    mel = torch.randn(2, 8, 9)
    with torch.no_grad():
        both = vocoder(mel)
        second = vocoder(mel[1:])
    torch.testing.assert_close(both[1:], second, atol=1e-5, rtol=0)


def test_bigvgan_rejects_wrong_layout(config):
    vocoder = BigVGAN(config.bigvgan_config)
    with pytest.raises(InputError, match="transpose"):
        vocoder(torch.zeros(1, 13, 8))


def test_config_round_trip_and_validation():
    d = {"model_type": "qwen2_5_omni_token2wav", "dit_config": {"dim": 64, "depth": 2, "heads": 4, "emb_dim": 8},
         "bigvgan_config": {"mel_dim": 80}, "something_new": 1}
    cfg = Token2WavConfig.from_dict(d)
    assert (cfg.dit_config.hidden_size, cfg.dit_config.num_hidden_layers, cfg.dit_config.num_attention_heads) == (
        64, 2, 4)
    assert cfg.to_dict() == d
    with pytest.raises(ConfigError, match="mel_dim"):
        Token2WavConfig.from_dict({"dit_config": {"mel_dim": 80}, "bigvgan_config": {"mel_dim": 100}})
    with pytest.raises(ConfigError, match="sum of the SE-Res2Net"):
        Token2WavConfig.from_dict({"dit_config": {"enc_channels": [8, 8, 8, 8, 8]}})
    with pytest.raises(ConfigError, match="same length"):
        Token2WavConfig.from_dict({"bigvgan_config": {"upsample_rates": [5, 3]}})


def test_token2wav_waveform_matches_reference(reference, config, tmp_path):
    """Codes -> waveform end to end, the voice read back from a speaker file, the same noise in both."""
    model = Token2Wav(config).eval()
    model.load_state_dict(omni_state(reference), strict=True)
    codes, speaker, ref_mel = _dit_inputs(seed=2, n_codes=9)
    save_speakers({"Chelsie": {"bos_token": 7, "cond": speaker[0], "ref_mel": ref_mel[0]}}, tmp_path / "spk.safetensors")
    voice = load_speakers(tmp_path / "spk.safetensors")["Chelsie"]
    assert voice.bos_token == 7
    T = codes.shape[1] * DIT["repeats"]
    torch.manual_seed(3)
    noise = torch.randn(1, T, DIT["mel_dim"])
    torch.manual_seed(3)
    with torch.no_grad():
        want = reference(codes, speaker, ref_mel, num_steps=4)  # 10 steps: see the DiT mel test
    got = model(codes, voice, noise=noise, num_steps=4)
    assert got.shape == (1, codes.shape[1] * model.samples_per_code)
    diff = (got.flatten() - want.flatten()).abs().max().item()
    print(f"token2wav waveform max abs diff {diff:.2e}")
    assert diff <= 1e-4, diff


def test_speaker_file_errors(tmp_path):
    (tmp_path / "spk_dict.pt").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="never loads"):
        load_speakers(tmp_path)
    from safetensors.torch import save_file

    save_file({"Ethan.cond": torch.zeros(4)}, tmp_path / "spk_dict.safetensors")
    with pytest.raises(CheckpointError, match="lacks"):
        load_speakers(tmp_path)
    save_file({"Ethan": torch.zeros(4)}, tmp_path / "spk_dict.safetensors")
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_speakers(tmp_path)


def test_token2wav_needs_a_voice(config):
    model = Token2Wav(config)
    with pytest.raises(InputError, match="speaker preset"):
        model(torch.ones(1, 4, dtype=torch.long))
    voice = Speaker(1, torch.zeros(DIT["enc_emb_dim"]), torch.zeros(5, DIT["mel_dim"]))
    assert model(torch.ones(2, 0, dtype=torch.long), voice).shape == (2, 0)  # no codes: no samples


def test_convert_speakers_example(tmp_path, monkeypatch):
    """docs/examples/convert_speakers.py turns a spk_dict.pt (pickled by torch, as released) into what omni reads."""
    import runpy
    import sys
    from pathlib import Path

    cond, ref_mel = torch.randn(8), torch.randn(1, 20, 8)  # the release stores ref_mel with a batch axis
    torch.save({"Ethan": {"bos_token": 151870, "cond": cond, "ref_mel": ref_mel}}, tmp_path / "spk_dict.pt")
    script = Path(__file__).parents[1] / "docs" / "examples" / "convert_speakers.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    voice = load_speakers(tmp_path)["Ethan"]
    assert voice.bos_token == 151870
    assert torch.equal(voice.cond, cond) and torch.equal(voice.ref_mel, ref_mel[0])


def test_released_size_builds_on_meta():
    """The released Token2Wav (config defaults = the release's numbers), on the meta device: tensor for tensor the
    reference's sizes, and the parameter counts the release is known by (DiT 333,607,760; BigVGAN 115,443,504)."""
    from transformers.models.qwen2_5_omni import configuration_qwen2_5_omni as C
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as M

    with torch.device("meta"):
        ref = M.Qwen2_5OmniToken2WavModel(C.Qwen2_5OmniToken2WavConfig())
        model = Token2Wav(Token2WavConfig())
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ref.parameters())
    assert sum(p.numel() for p in model.dit.parameters()) == 333_607_760
    assert sum(p.numel() for p in model.bigvgan.parameters()) == 115_443_504
