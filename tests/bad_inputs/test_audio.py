"""Bad and unusual audio: unusable clips raise MediaError (an InputError) saying what is wrong and what to do;
valid but unusual ones (stereo, 8 / 48 kHz, silence, 20 minutes) are handled correctly, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

import omni
from omni.errors import InputError, MediaError
from omni.models.qwen3_omni.audio import audio_token_count
from omni.media.audio import SAMPLE_RATE, load_audio, log_mel_features

from .conftest import peak_rss_growth


def _tone(seconds: float = 1.0, rate: int = SAMPLE_RATE, hz: float = 440.0, channels: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave  # (N, 2) like soundfile


def _healthy() -> None:
    out = log_mel_features([_tone()])
    assert out["input_features"].shape == (1, 128, 100)


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("make, fragments", [
    (lambda p: load_audio((np.zeros(0, np.float32), 16000)), ["no samples", "empty audio"]),
    (lambda p: load_audio((np.array([0.1, np.nan] * 800, np.float32), 16000)), ["NaN or infinite", "clean"]),
    (lambda p: load_audio((np.array([0.1, np.inf] * 800, np.float32), 16000)), ["NaN or infinite"]),
    (lambda p: log_mel_features([np.zeros(1, np.float32)]), ["has 1 samples", "at least 160"]),
    (lambda p: load_audio(np.zeros(1600, np.float32)), ["without its sample rate", "orig_sr"]),
    (lambda p: load_audio((np.zeros(1600, np.float32), -8000)), ["positive whole number of Hz", "-8000"]),
    (lambda p: load_audio((np.zeros(1600, np.float32), 44100.5)), ["positive whole number of Hz"]),
    (lambda p: load_audio((np.zeros((2, 2, 800), np.float32), 16000)), ["1-D (samples) or 2-D", "(2, 2, 800)"]),
    (lambda p: load_audio((np.array(["a", "b"] * 400), 16000)), ["must be numbers"]),
    (lambda p: load_audio(str(p / "missing.wav")), ["audio file not found", "missing.wav"]),
    (lambda p: load_audio({"array": [0.0]}), ["cannot load audio from a dict", "file path"]),
    (lambda p: log_mel_features([]), ["non-empty list"]),
], ids=["empty", "nan", "inf", "one-sample", "no-rate", "negative-rate", "fractional-rate", "3-d", "strings",
        "missing-file", "dict", "no-clips"])
def test_unusable_audio(tmp_path, make, fragments):
    with pytest.raises(MediaError) as info:
        make(tmp_path)
    assert isinstance(info.value, InputError)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    _healthy()


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00\x00\x00WAVEfmt not a real header", bytes(range(256)) * 8],
                         ids=["zero-bytes", "bad-header", "noise"])
def test_corrupt_audio_file(tmp_path, content):
    path = tmp_path / "clip.wav"
    path.write_bytes(content)
    with pytest.raises(MediaError, match="cannot read audio from .*clip.wav.*is it an audio or video file"):
        load_audio(str(path))
    _healthy()


def test_truncated_wav_keeps_what_is_there(tmp_path):
    """A wav cut mid-stream still decodes (libsndfile reads the frames present), to the samples that are there."""
    path = tmp_path / "cut.wav"
    soundfile.write(path, _tone(1.0), SAMPLE_RATE, subtype="FLOAT")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    wave = load_audio(str(path))
    assert 0 < len(wave) < SAMPLE_RATE
    np.testing.assert_allclose(wave, _tone(1.0)[: len(wave)], atol=1e-6)


def test_silence_is_valid():
    """All-zero audio: log10 floor 1e-10 -> (-10 + 4) / 4 = -1.5 everywhere, as WhisperFeatureExtractor gives."""
    out = log_mel_features([np.zeros(SAMPLE_RATE, np.float32)])
    assert out["input_features"].shape == (1, 128, 100)
    assert bool((out["input_features"] == -1.5).all())
    assert int(out["feature_attention_mask"].sum()) == 100


def test_one_sample_file_is_refused_by_the_processor(tiny_dir, tmp_path):
    path = tmp_path / "one.wav"
    soundfile.write(path, np.zeros(1, np.float32), SAMPLE_RATE)
    processor = omni.Processor.from_pretrained(tiny_dir)
    with pytest.raises(MediaError, match="has 1 samples; at least 160"):
        processor([{"role": "user", "content": [{"type": "audio", "audio": str(path)}]}])
    batch = processor([{"role": "user", "content": [{"type": "audio", "audio": _tone()}]}])
    assert batch["input_features"].shape == (1, 128, 100)


@pytest.mark.parametrize("as_file", [False, True], ids=["array", "file"])
def test_stereo_is_averaged(tmp_path, as_file):
    stereo = _tone(0.5, channels=2)  # (N, 2): right = half the left
    if as_file:
        soundfile.write(tmp_path / "st.wav", stereo, SAMPLE_RATE, subtype="FLOAT")
        wave = load_audio(str(tmp_path / "st.wav"))
    else:
        wave = load_audio((stereo.T.copy(), SAMPLE_RATE))  # channels first works too (the shorter axis)
    np.testing.assert_allclose(wave, stereo.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 48000, 44100])
def test_other_sample_rates_are_resampled(tmp_path, rate):
    soundfile.write(tmp_path / "r.wav", _tone(1.0, rate, hz=440.0), rate, subtype="PCM_16")
    wave = load_audio(str(tmp_path / "r.wav"))
    assert len(wave) == SAMPLE_RATE  # ceil(N * 16000 / rate)
    assert abs(_peak_hz(wave, SAMPLE_RATE) - 440.0) <= 1.0
    assert abs(float(np.abs(wave[2000:-2000]).max()) - 0.3) < 0.01  # amplitude kept (PCM_16 quantisation)


def test_twenty_minutes_in_bounded_memory(tiny_model, tmp_path):
    """20 minutes at 16 kHz (19.2 M samples): file -> waveform -> log-mel in bounded extra memory (measured ~0.43 GB:
    the STFT runs a minute of frames at a time; all at once it was ~0.7 GB), the token count the processor will
    expand to, and the (tiny) audio tower over all of it (windowed attention: ~0.4 GB)."""
    n = 20 * 60 * SAMPLE_RATE
    path = tmp_path / "long.wav"
    soundfile.write(path, (0.1 * np.sin(np.arange(n, dtype=np.float32) * 0.05)), SAMPLE_RATE, subtype="PCM_16")
    with peak_rss_growth() as grew:
        wave = load_audio(str(path))
        out = log_mel_features([wave])
        frames = out["feature_attention_mask"].sum(-1)
        del wave
    assert int(frames) == n // 160
    assert int(audio_token_count(frames.long(), 50)) == 15600  # 13 tokens per 100-frame chunk
    assert grew["bytes"] < 32 * n, f"peak RSS grew by {grew['bytes'] / 2**20:.0f} MiB"  # 32 B/sample: < 590 MiB
    with peak_rss_growth() as grew, torch.no_grad():
        embeddings = tiny_model.thinker.audio(out["input_features"], out["feature_attention_mask"])
    assert embeddings.shape == (15600, 64) and bool(torch.isfinite(embeddings).all())
    assert grew["bytes"] < 48 * n, f"the audio tower grew peak RSS by {grew['bytes'] / 2**20:.0f} MiB"
    _healthy()
