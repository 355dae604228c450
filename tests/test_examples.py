"""Every example runs on the tiny preset with small arguments, in a subprocess as a user would run it.

examples/finetune.py and examples/train_spoken_digits.py are exercised by tests/test_training.py
(checkpoint + exact resume) and tests/test_spoken_digits.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def wav_samples(path) -> int:
    with wave.open(str(path), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 24000)
        return f.getnframes()


def test_transcribe_audio_and_image_batch(tmp_path):
    from PIL import Image

    from omni.demo import synthetic_media
    from omni.media.audio import write_wav

    image, audio, _ = synthetic_media()
    Image.fromarray(image).save(tmp_path / "picture.png")
    write_wav(tmp_path / "clip.wav", audio, sample_rate=16000)
    r = run_example("transcribe.py", "--audio", "clip.wav", "--image", "picture.png", "--max-new-tokens", "3",
                    cwd=tmp_path)
    lines = [line for line in r.stdout.splitlines() if line.startswith(("clip.wav:", "picture.png:"))]
    assert [line.split(":")[0] for line in lines] == ["clip.wav", "picture.png"], r.stdout


@pytest.mark.slow
def test_multimodal_chat_writes_the_spoken_reply(tmp_path):
    r = run_example("multimodal_chat.py", "--max-new-tokens", "4", "--max-speech-frames", "3", "--wav", "out.wav",
                    cwd=tmp_path)
    n = wav_samples(tmp_path / "out.wav")
    assert 0 < n <= 3 * 1920  # at most 3 codec frames of 80 ms at 24 kHz
    assert f"wrote {n / 24000:.2f} s of speech" in r.stderr


@pytest.mark.slow
def test_stream_speech_appends_chunks_to_the_wav(tmp_path):
    r = run_example("stream_speech.py", "--max-new-tokens", "4", "--max-speech-frames", "4", "--chunk-frames", "2",
                    "--out", "streamed.wav", cwd=tmp_path)
    n = wav_samples(tmp_path / "streamed.wav")
    assert 0 < n <= 4 * 1920
    assert "first audio after" in r.stderr and f"wrote {n / 24000:.2f} s of speech" in r.stderr
