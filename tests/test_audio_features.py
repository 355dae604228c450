"""Audio preprocessing: log-mel parity with WhisperFeatureExtractor as the official Qwen3-Omni processor calls it,
resampling accuracy, file / array loading, and bad input."""

import numpy as np
import pytest
import torch

from omni.errors import MediaError
from omni.media.audio import load_audio, log_mel_features, mel_filters, resample

SR = 16000


@pytest.fixture(scope="module")
def whisper():
    from transformers import WhisperFeatureExtractor

    # preprocessor_config.json of the release (feature_size 128, chunk_length 300, return_attention_mask)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR, hop_length=160, chunk_length=300, n_fft=400,
                                 padding_value=0.0, dither=0.0, return_attention_mask=True)

    def call(waves):  # the official processor's audio kwargs
        out = fe(waves, sampling_rate=SR, padding=True, truncation=False, return_attention_mask=True,
                 return_tensors="pt")
        return out["input_features"], out["attention_mask"]

    call.fe = fe
    return call


def speech_like(n, f0=180.0, seed=0):
    """Harmonic tone with a slow pitch and amplitude wobble, plus a little noise."""
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * wave + 0.01 * rng.standard_normal(n)).astype(np.float32)


def noise(n, seed=1):
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_mel_filters_match_reference(whisper):
    assert np.abs(whisper.fe.mel_filters.T - mel_filters().numpy()).max() <= 1e-8


@pytest.mark.parametrize("waves", [
    [speech_like(16000)],  # exactly 100 frames
    [speech_like(12345)],  # not a multiple of the hop
    [noise(4001)],
    [np.zeros(3200, np.float32)],  # silence: everything at the floor
    [speech_like(24160), noise(7777), np.zeros(999, np.float32), speech_like(161, seed=3)],  # batch, 4 lengths
    [noise(480_161)],  # 30.01 s: longer than Whisper's 30 s window, nothing is cut
], ids=["1s", "odd", "noise", "silence", "batch", "long"])
def test_log_mel_matches_whisper_extractor(whisper, waves):
    want, want_mask = whisper(waves)
    got = log_mel_features(waves)
    feats, mask = got["input_features"], got["feature_attention_mask"]
    assert feats.shape == want.shape and feats.dtype == torch.float32
    assert (feats - want).abs().max().item() <= 1e-4
    assert torch.equal(mask, want_mask.to(mask.dtype))
    assert mask.sum(-1).tolist() == [min(-(-len(w) // 160), max(len(v) for v in waves) // 160) for w in waves]


def test_log_mel_resamples_other_rates(whisper):
    wave = speech_like(44100)[:44100]
    got = log_mel_features([wave], sr=44100)
    want, _ = whisper([resample(wave, 44100, SR)])
    assert (got["input_features"] - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("orig", [44100, 48000, 22050, 8000, 16001])
def test_resample_keeps_a_tone(orig):
    n = orig  # one second
    x = np.sin(2 * np.pi * 1000 * np.arange(n) / orig).astype(np.float32)
    y = resample(x, orig, SR)
    assert y.dtype == np.float32 and len(y) == -(-n * SR // orig)
    want = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / SR)
    inner = slice(300, len(y) - 300)  # away from the zero-padded ends
    assert np.abs(y[inner] - want[inner]).max() < 1e-4


@pytest.mark.parametrize("orig", [44100, 48000])
def test_resample_removes_what_16k_cannot_hold(orig):
    x = np.sin(2 * np.pi * 11000 * np.arange(orig) / orig).astype(np.float32)  # above the 8 kHz Nyquist
    y = resample(x, orig, SR)
    assert np.sqrt(np.mean(y[300:-300] ** 2)) < 1e-4


def test_load_from_arrays_and_tensors():
    x = speech_like(48000)
    stereo = np.stack([x, 0.5 * x])  # (channels, samples)
    got = load_audio(stereo, orig_sr=48000)
    assert got.dtype == np.float32 and got.ndim == 1 and len(got) == 16000
    np.testing.assert_allclose(got, resample(0.75 * x, 48000, SR), atol=1e-6)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(stereo.T), orig_sr=48000), got)  # (samples, ch)
    np.testing.assert_array_equal(load_audio((x, 16000)), x)
    pcm = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm, orig_sr=SR), x, atol=1e-4)


def test_load_files(tmp_path):
    sf = pytest.importorskip("soundfile")
    x = speech_like(22050)
    sf.write(tmp_path / "a.wav", np.stack([x, x], 1), 22050, subtype="FLOAT")
    sf.write(tmp_path / "a.flac", x, 22050)
    wav = load_audio(tmp_path / "a.wav")
    np.testing.assert_allclose(wav, resample(x, 22050, SR), atol=1e-6)
    flac = load_audio(str(tmp_path / "a.flac"), sampling_rate=SR)
    np.testing.assert_allclose(flac, wav, atol=1e-4)  # 16-bit flac


def test_load_compressed_and_video_tracks(tmp_path):
    av = pytest.importorskip("av")
    x = speech_like(24000)  # 1.5 s at 16 kHz
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=SR)
        audio.layout = "mono"
        for i in range(15):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 10, np.uint8), format="rgb24")
            out.mux(video.encode(frame))
        for s in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, s:s + 1024], format="flt", layout="mono")
            frame.sample_rate = SR
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        out.mux(video.encode(None))
    got = load_audio(path)
    assert got.dtype == np.float32 and abs(len(got) - len(x)) <= 2048  # the codec adds priming / padding
    assert 0.5 < np.sqrt(np.mean(got ** 2)) / np.sqrt(np.mean(x ** 2)) < 2.0


def test_bad_input(tmp_path):
    with pytest.raises(MediaError, match="empty"):
        load_audio(np.zeros(0, np.float32), orig_sr=SR)
    with pytest.raises(MediaError, match="NaN"):
        load_audio(np.array([0.0, np.nan, 0.1], np.float32), orig_sr=SR)
    with pytest.raises(MediaError, match="NaN"):
        log_mel_features([np.full(1600, np.inf, np.float32)])
    with pytest.raises(MediaError, match="sample rate"):
        load_audio(np.ones(100, np.float32), orig_sr=0)
    with pytest.raises(MediaError, match="orig_sr"):
        load_audio(np.ones(100, np.float32))
    with pytest.raises(MediaError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(MediaError, match="cannot read audio"):
        load_audio(junk)
    with pytest.raises(MediaError, match="samples"):
        log_mel_features([np.ones(100, np.float32)])
    with pytest.raises(MediaError, match="non-empty list"):
        log_mel_features([])
    with pytest.raises(MediaError, match="sr"):
        log_mel_features([np.ones(1600, np.float32)], sr=0)
