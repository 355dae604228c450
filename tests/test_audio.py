"""Parity of omni's AudioTokenizer (the AuT audio tower) with the reference, loaded through omni.load.

Tiny config from tests/reference.py: 16 mel bins, n_window 50 (chunks of 100 frames -> 13 tokens),
n_window_infer 200 (attention windows of 2 chunks = 26 tokens).
"""

import random

import pytest
import torch

import omni
from omni.models.qwen3_omni.config import Qwen3AudioConfig as AudioConfig
from omni.errors import ConfigError, InputError
from omni.models.qwen3_omni.audio import AudioTokenizer, audio_token_count

from reference import build_reference


@pytest.fixture(scope="module")
def thinkers(tmp_path_factory):
    """(reference thinker, omni Thinker) with the same weights, read through the production key map."""
    directory = tmp_path_factory.mktemp("audio")
    ref = build_reference(directory)
    model = omni.load(directory, components=("thinker",), quiet=True)
    return ref.thinker, model.thinker.eval()


@pytest.fixture(scope="module")
def pair(thinkers):
    ref, thinker = thinkers
    return ref, thinker.audio


def batch(lengths, n_mels=16, seed=0):
    """Right-padded random mel frames (B, n_mels, T) and their frame mask (B, T)."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    feats = torch.randn(len(lengths), n_mels, T, generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    return feats, mask


def max_diff(pair, lengths, seed=0):
    ref, model = pair
    feats, mask = batch(lengths, model.cfg.num_mel_bins, seed)
    with torch.no_grad():
        want = ref.get_audio_features(feats, feature_attention_mask=mask).last_hidden_state
        got = model(feats, mask)
    n = sum(int(audio_token_count(t)) for t in lengths)
    assert got.shape == want.shape == (n, model.cfg.output_dim)
    return (got - want).abs().max().item()


@pytest.mark.parametrize("lengths", [
    [37],  # shorter than one chunk
    [100],  # exactly one chunk
    [257],  # several chunks, partial last one
    [450],  # longer than one attention window (200 frames)
    [73, 430],  # two clips of different lengths: the short one is padded to a full chunk
    [37, 61],  # only partial chunks: padded to the longest one, shorter attention window
    [200, 1, 399, 100],
])
def test_parity_with_reference(pair, lengths):
    assert max_diff(pair, lengths) <= 1e-4


def test_mask_selects_frames_not_positions(pair):
    """Frames past a clip's mask are ignored, whatever they hold."""
    _, model = pair
    feats, mask = batch([120, 300])
    with torch.no_grad():
        a = model(feats, mask)
        feats[0, :, 120:] = 1e3
        b = model(feats, mask)
    assert torch.equal(a, b)


def test_token_count_matches_reference_formula():
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

    rng = random.Random(0)
    lengths = [rng.randrange(0, 5000) for _ in range(200)] + [0, 1, 99, 100, 101, 200, 30000]
    for n in lengths:
        assert audio_token_count(n) == int(_get_feat_extract_output_lengths(torch.tensor(n)))
    t = torch.tensor(lengths)
    assert torch.equal(audio_token_count(t), _get_feat_extract_output_lengths(t))


def test_meta_build_and_gradient_checkpointing(pair):
    _, model = pair
    with torch.device("meta"):
        meta = AudioTokenizer(model.cfg)
    assert meta.positions.is_meta
    meta.to_empty(device="cpu")
    meta.init_buffers()
    assert torch.equal(meta.positions, model.positions)

    feats, mask = batch([150, 260])
    model.train()
    try:
        model.gradient_checkpointing = True
        out = model(feats.requires_grad_(), mask)
        out.square().mean().backward()
        assert feats.grad is not None and model.conv1.weight.grad is not None
    finally:
        model.gradient_checkpointing = False
        model.zero_grad()
        model.eval()


def test_bad_inputs(pair):
    _, model = pair
    feats, mask = batch([50, 80])
    with pytest.raises(InputError, match="mel bins"):
        model(feats[:, :8], mask)
    with pytest.raises(InputError, match="feature_attention_mask"):
        model(feats, mask[:, :10])
    mask[1] = 0
    with pytest.raises(InputError, match="no valid mel frame"):
        model(feats, mask)


def test_bad_configs():
    with pytest.raises(ConfigError, match="n_window"):
        AudioTokenizer(AudioConfig(n_window=20, d_model=16, encoder_attention_heads=2, encoder_layers=1))
    with pytest.raises(ConfigError, match="n_window_infer"):
        AudioTokenizer(AudioConfig(n_window_infer=50, d_model=16, encoder_attention_heads=2, encoder_layers=1))
    with pytest.raises(ConfigError, match="activation_function"):
        AudioTokenizer(AudioConfig(activation_function="relu", d_model=16, encoder_attention_heads=2))


def test_thinker_logits_with_audio_match_reference(thinkers):
    """The tower wired into the Thinker: audio tokens land in their placeholders (ids from tests/reference.py)."""
    ref, thinker = thinkers
    feats, mask = batch([100, 260], seed=3)
    counts = audio_token_count(mask.sum(-1)).tolist()  # 13, 33
    rows = [[5, 6, 203] + [200] * n + [7, 8] for n in counts]
    ids = torch.zeros(2, max(map(len, rows)), dtype=torch.long)
    attn = torch.zeros_like(ids)
    for b, r in enumerate(rows):
        ids[b, : len(r)], attn[b, : len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=attn, input_features=feats, feature_attention_mask=mask).logits
        got = thinker(input_ids=ids, attention_mask=attn, input_features=feats, feature_attention_mask=mask).logits
    keep = attn.bool()
    assert (got[keep] - want[keep]).abs().max().item() <= 1e-4


def test_end_to_end_from_waveforms(tmp_path):
    """Waveforms -> omni log-mel -> omni tower equals WhisperFeatureExtractor -> reference tower (128 mel bins)."""
    from transformers import WhisperFeatureExtractor

    from omni.media.audio import log_mel_features

    ref = build_reference(tmp_path, seed=1, audio={"num_mel_bins": 128}).thinker
    tower = omni.load(tmp_path, components=("thinker",), quiet=True).thinker.audio.eval()
    g = torch.Generator().manual_seed(0)
    t = torch.arange(41_234) / 16000
    waves = [(0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(len(t), generator=g)).numpy(),
             (0.2 * torch.randn(9_999, generator=g)).numpy()]
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300,
                                 n_fft=400, return_attention_mask=True)
    official = fe(waves, sampling_rate=16000, padding=True, truncation=False, return_attention_mask=True,
                  return_tensors="pt")
    ours = log_mel_features(waves)
    with torch.no_grad():
        want = ref.get_audio_features(official["input_features"],
                                      feature_attention_mask=official["attention_mask"]).last_hidden_state
        got = tower(ours["input_features"], ours["feature_attention_mask"])
    assert got.shape == want.shape == (int(audio_token_count(257)) + int(audio_token_count(63)), 32)
    assert (got - want).abs().max().item() <= 1e-4


def test_no_mask_means_every_frame(pair):
    _, model = pair
    feats, mask = batch([140, 140])
    with torch.no_grad():
        assert torch.equal(model(feats), model(feats, mask))


def test_bfloat16_matches_reference_in_bfloat16(pair):
    """Same dtype on both sides: the tower casts its inputs and keeps its position table in the weights' dtype."""
    import copy

    ref, model = pair
    ref16, model16 = copy.deepcopy(ref).to(torch.bfloat16), copy.deepcopy(model).to(torch.bfloat16)
    feats, mask = batch([120, 333], seed=5)
    with torch.no_grad():
        want = ref16.get_audio_features(feats.bfloat16(), feature_attention_mask=mask).last_hidden_state
        got = model16(feats.bfloat16(), mask)
        full = model(feats, mask)
    assert got.dtype == torch.bfloat16
    # as close to the reference as the reference's own bf16 rounding is to fp32 (measured: equal outputs)
    rounding = (want.float() - full).abs().max().item()
    assert 0 < rounding < 1e-2
    assert (got.float() - want.float()).abs().max().item() <= rounding
