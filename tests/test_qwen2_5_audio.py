"""Parity of omni's Qwen2.5-Omni audio tower with the reference (Qwen2_5OmniAudioEncoder), fp32 <= 1e-4."""

import pytest
import torch

from omni.errors import InputError
from omni.models.qwen2_5_omni.audio import pooled_audio_token_count
from omni.models.qwen2_5_omni.audio import Qwen25AudioTokenizer

from reference_qwen2_5 import reference_and_tower


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return reference_and_tower(tmp_path_factory.mktemp("q25audio"), Qwen25AudioTokenizer, "audio")


def _compare(pair, lengths, seed=0):
    ref, model = pair
    width = max(lengths) + 3  # padded batch, as the feature extractor returns it
    feats = torch.randn(len(lengths), model.cfg.num_mel_bins, width, generator=torch.Generator().manual_seed(seed))
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        want = ref.get_audio_features(feats, feature_attention_mask=mask).last_hidden_state
        got = model(feats, mask)
    assert got.shape == want.shape
    assert got.shape[0] == int(pooled_audio_token_count(mask.sum(-1)).sum())
    return (got - want).abs().max().item()


def test_one_clip_of_several_chunks(pair):
    assert _compare(pair, [67]) <= 1e-4  # chunks of 2 * n_window = 20 frames: 3 full + a 7-frame tail


def test_batch_of_clips_of_mixed_lengths(pair):
    # odd and even step counts (the odd last step is dropped by the pooling), a clip shorter than one chunk,
    # one of exactly two chunks
    assert _compare(pair, [67, 13, 40, 5, 21], seed=1) <= 1e-4


def test_no_mask_means_every_frame(pair):
    _, model = pair
    feats = torch.randn(2, model.cfg.num_mel_bins, 30)
    with torch.no_grad():
        assert torch.equal(model(feats), model(feats, torch.ones(2, 30, dtype=torch.long)))


def test_token_count_formula():
    assert pooled_audio_token_count(100) == 25 and pooled_audio_token_count(3000) == 750
    assert pooled_audio_token_count(101) == 25 and pooled_audio_token_count(103) == 26
    with pytest.raises(InputError):
        pooled_audio_token_count(-1)


def test_bad_inputs_are_named_errors(pair):
    _, model = pair
    with pytest.raises(InputError, match="mel bins"):
        model(torch.randn(1, 7, 20))
    with pytest.raises(InputError, match="no valid mel frame"):
        model(torch.randn(2, model.cfg.num_mel_bins, 20), torch.tensor([[1] * 20, [0] * 20]))
