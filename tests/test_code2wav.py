"""Code2Wav parity with the reference vocoder, exact streaming, and input checks.

Two tiny references: the default CODE2WAV of tests/reference.py, and a deeper one (more and uneven upsampling
stages) so the stride arithmetic of streaming is exercised beyond powers of two.
"""

import copy
import math

import pytest
import torch

import omni
from omni.models.qwen3_omni.code2wav import Code2Wav
from omni.config import OmniConfig
from omni.models.qwen3_omni.config import Code2WavConfig
from omni.errors import InputError

from reference import CODE2WAV, build_reference

DEEP = dict(upsampling_ratios=[2, 3], upsample_rates=[3, 2, 2], decoder_dim=16, sliding_window=6, seed=3)


@pytest.fixture(scope="module", params=["default", "deep"])
def pair(request, tmp_path_factory):
    """(reference Qwen3OmniMoeForConditionalGeneration, omni Code2Wav loaded through the production key map)."""
    overrides = {} if request.param == "default" else dict(DEEP)
    seed = overrides.pop("seed", 0)
    d = tmp_path_factory.mktemp(f"c2w_{request.param}")
    ref = build_reference(d, seed=seed, code2wav=overrides)
    model = omni.load(d, components=("code2wav",), quiet=True)
    assert model.thinker is None and model.talker is None
    return ref, model.code2wav


def _codes(c2w, batch, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c2w.cfg.codebook_size, (batch, c2w.cfg.num_quantizers, frames), generator=g)


@pytest.mark.parametrize("batch,frames", [(1, 5), (1, 20), (2, 13)])
def test_forward_matches_reference(pair, batch, frames):
    ref, c2w = pair
    assert frames <= c2w.cfg.sliding_window or frames > 2 * c2w.cfg.sliding_window or batch == 2
    codes = _codes(c2w, batch, frames, seed=frames)
    with torch.no_grad():
        want = ref.code2wav(codes)
        got = c2w(codes)
    assert got.shape == want.shape == (batch, 1, c2w.wave_length(frames))
    assert want.abs().max() > 1e-3  # a real signal, not a clamped or empty one
    assert (got - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("chunk,context", [(7, 3), (4, 0), (300, 25)])
def test_chunked_decode_matches_reference(pair, chunk, context):
    ref, c2w = pair
    codes = _codes(c2w, 2, 17, seed=1)
    with torch.no_grad():
        want = ref.code2wav.chunked_decode(codes, chunk_size=chunk, left_context_size=context)
        got = c2w.chunked_decode(codes, chunk_size=chunk, left_context=context)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("chunk", [2, 7, 10, 100])
def test_stream_equals_full_decode(pair, chunk):
    _, c2w = pair
    codes = _codes(c2w, 2, 23, seed=2)  # 23 frames: no chunk size above divides it, and > 2 attention windows
    with torch.no_grad():
        full = c2w(codes)
    pieces = list(c2w.stream_decode(codes, chunk_size=chunk))
    assert all(p.shape[:2] == (2, 1) and p.shape[-1] > 0 for p in pieces)
    assert len(pieces) == math.ceil(23 / chunk)
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max().item() <= 1e-5


def test_stream_from_uneven_pieces(pair):
    """Frames arriving in irregular groups (as from a generator) are regrouped into chunks; same waveform."""
    _, c2w = pair
    codes = _codes(c2w, 1, 25, seed=4)
    with torch.no_grad():
        full = c2w(codes)
    cuts = [0, 2, 7, 8, 17, 25]
    source = (codes[..., a:b] for a, b in zip(cuts, cuts[1:]))
    streamed = torch.cat(list(c2w.stream_decode(source, chunk_size=4)), dim=-1)
    assert (streamed - full).abs().max().item() <= 1e-5

    # frame by frame through the low-level streamer: what it has returned after t frames is already final, i.e.
    # the first wave_length(t) samples of the decode of all 25 frames
    stream, got = c2w.streamer(), []
    for t in range(10):
        got.append(stream.push(codes[..., t : t + 1]))
        so_far = torch.cat(got, dim=-1)
        assert so_far.shape[-1] == c2w.wave_length(t + 1)
        assert (so_far - full[..., : so_far.shape[-1]]).abs().max().item() <= 1e-5


def test_lengths_and_receptive_field(pair):
    _, c2w = pair
    cfg = c2w.cfg
    assert c2w.samples_per_frame == math.prod(cfg.upsampling_ratios + cfg.upsample_rates)
    for frames in (1, 2, 9):
        with torch.no_grad():
            n = c2w(_codes(c2w, 1, frames)).shape[-1]
        assert n == c2w.wave_length(frames)
        assert n == frames * c2w.samples_per_frame - (c2w.samples_per_frame * 1 - c2w.wave_length(1))
    # first_frame_needed is exact: nudging that frame's transformer output moves the sample, the frame before not
    # (in float64: the change from the edge of the receptive field passes many 0.1-sized taps and can vanish in fp32)
    c2w = copy.deepcopy(c2w).double()
    with torch.no_grad():
        h = c2w.transformer(c2w.embed(_codes(c2w, 1, 40, seed=5))).transpose(1, 2)  # (1, D, 40)
        wav = c2w.vocode(h)[0, 0]
        sample = int((wav.abs() < 0.99).nonzero().max())  # the last sample the clamp leaves alone
        first = c2w.first_frame_needed(sample)
        assert 0 < first < 40
        for frame, moves in ((first, True), (first - 1, False)):
            nudged = h.clone()
            nudged[..., frame] += 1.0
            assert bool(c2w.vocode(nudged)[0, 0, sample] != wav[sample]) == moves


def test_release_layout_on_meta():
    """The 30B-A3B Code2Wav on the meta device: the reference's 230 tensors, by official name and shape."""
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeCode2WavConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeCode2Wav

    from omni.models.qwen3_omni.weights import KEY_MAP

    cfg = OmniConfig.from_name("qwen3-omni-30b-a3b").code2wav_config
    with torch.device("meta"):
        ours = Code2Wav(cfg)
        theirs = Qwen3OmniMoeCode2Wav(Qwen3OmniMoeCode2WavConfig(**cfg.to_dict()))
    assert ours.samples_per_frame == 1920  # 80 ms at 24 kHz
    want = {"code2wav." + k: tuple(v.shape) for k, v in theirs.state_dict().items() if k != "code_offset"}
    assert len(want) == 230
    got = {}
    for name, p in ours.named_parameters():
        (official,) = KEY_MAP.to_official("code2wav." + name)
        got[official] = tuple(p.shape)
    assert got == want


def test_bad_input():
    cfg = Code2WavConfig.from_dict(CODE2WAV)
    torch.manual_seed(0)
    c2w = Code2Wav(cfg).eval()
    good = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, 4))
    bad = {
        "float": good.float(),
        "rank 2": good[0],
        "rank 4": good[None],
        "quantizers": good[:, :-1],
        "negative": torch.where(good == good.min(), -1, good),
        "too large": torch.where(good == good.max(), cfg.codebook_size, good),
        "no frames": good[..., :0],
        "not a tensor": good.tolist(),
    }
    for what, codes in bad.items():
        with pytest.raises(InputError):
            c2w(codes)
            pytest.fail(f"no InputError for {what}")
    with pytest.raises(InputError, match="codebooks"):
        list(c2w.stream_decode(good[:, :-1]))
    with pytest.raises(InputError):
        list(c2w.stream_decode(good, chunk_size=0))
    with pytest.raises(InputError):
        c2w.chunked_decode(good, chunk_size=0)
    stream = c2w.streamer()
    stream.push(good)
    with pytest.raises(InputError, match="batch"):
        stream.push(torch.cat([good, good]))
