"""Token2Wav (Qwen2.5-Omni) vs the reference: BigVGAN waveform, DiT mel (same initial noise), whole waveform.

Tiny random reference models are built in memory; their state dicts go into omni through the release's key table
(official names, prefixed `token2wav.` as on disk), so a naming mismatch fails loudly here.
"""

from __future__ import annotations

import pytest
import torch

from omni.checkpoints.keymap import KeyMap
from omni.errors import ConfigError, InputError
from omni.token2wav import BigVGAN, Token2WavConfig

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

# TODO(part 1): move into omni/checkpoints/qwen2_5_omni.py `_TOKEN2WAV` once that file exists.
_TOKEN2WAV = {
    "token2wav.code2wav_bigvgan_model.conv_pre.{*}": "token2wav.bigvgan.conv_pre.{*}",
    "token2wav.code2wav_bigvgan_model.ups.{}.0.{*}": "token2wav.bigvgan.upsamples.{}.{*}",
    "token2wav.code2wav_bigvgan_model.resblocks.{*}": "token2wav.bigvgan.resblocks.{*}",
    "token2wav.code2wav_bigvgan_model.activation_post.{*}": "token2wav.bigvgan.activation_post.{*}",
    "token2wav.code2wav_bigvgan_model.conv_post.{*}": "token2wav.bigvgan.conv_post.{*}",
}
KEY_MAP = KeyMap(_TOKEN2WAV)


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
