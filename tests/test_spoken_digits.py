"""examples/train_spoken_digits.py, reduced to run in about a minute: the tiny model, trained from scratch on
espeak-ng speech, must drive its loss far below the start and transcribe held-out voices well above chance."""

import importlib.util
import os
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")


def example():
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "train_spoken_digits.py")
    spec = importlib.util.spec_from_file_location("train_spoken_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_voices_and_speeds_are_never_trained_on():
    T = example()
    assert not set(T.TRAIN["variants"]) & set(T.HELD_OUT["variants"])
    assert not set(T.TRAIN["speeds"]) & set(T.HELD_OUT["speeds"])
    wave = T.synthesize("4 2", "en-us+f4", 150, 50)
    assert wave.dtype == np.float32 and 0.3 * T.SAMPLE_RATE < len(wave) < 3 * T.SAMPLE_RATE
    assert np.abs(wave).max() > 0.05  # speech, not silence
    assert T.edit_distance("12345", "1245") == 1 and T.edit_distance("", "12") == 2


@pytest.mark.slow
def test_spoken_digits_learns(tmp_path):
    pytest.importorskip("omni.media.audio", reason="the audio tokenizer has not landed")
    T = example()
    # 1-2 digit strings, many small steps (batch 16 learned faster per CPU second than batch 32 here). About 100
    # CPU seconds, seeded end to end; one thread: on a busy machine two OpenMP threads wait on each other
    steps = 800
    history = T.main(["--steps", str(steps), "--batch-size", "16", "--train-size", "1000", "--eval-size", "96",
                      "--eval-every", str(steps), "--train-min-digits", "1", "--min-digits", "1", "--max-digits", "2",
                      "--warmup", "40", "--lr", "3e-3", "--threads", "1", "--plot", str(tmp_path / "curve.png"),
                      "--workdir", str(tmp_path / "tok")])
    first, last = np.mean(history["loss"][:10]), np.mean(history["loss"][-50:])
    assert last < 0.1 * first, (first, last)
    # chance: one digit in ten; a model that ignored the audio would stay near it
    assert history["final"]["digit_accuracy"] >= 0.6, history["final"]
    assert os.path.getsize(tmp_path / "curve.png") > 10_000
