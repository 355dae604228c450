"""examples/train_talker_digits.py, reduced to run in about a minute: the tiny Talker, trained from random weights
with speech_loss, speaks held-out digit strings in its voices (greedy, every code of a frame exact), and
learn_voice teaches it a held-out voice while the trained voices' codes stay bit-identical."""

import importlib.util
import os

import pytest
import torch


def example():
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "train_talker_digits.py")
    spec = importlib.util.spec_from_file_location("train_talker_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_codec_and_batches():
    T = example()
    codec = T.ToyCodec(groups=16, frames=2, vocab=2048, seed=0, bits=4)
    bits = T.voice_bits(codec, 4, seed=1)
    assert len({tuple(b.tolist()) for b in bits}) == 5  # the held-out voice is none of the trained ones
    a, b = codec.speak("31", bits[0]), codec.speak("3", bits[0])
    assert a.shape == (16, 4) and torch.equal(a[:, :2], b)  # a string is its digits' patterns, concatenated
    assert not torch.equal(codec.speak("3", bits[1]), b)  # another voice, other codes
    batch, reply, codes, lengths = T.make_batch(["31", "4"], codec, bits[0])
    assert reply.tolist() == [[51, 32, 49, T.IM_END], [52, T.IM_END, T.IM_END, T.IM_END]]
    assert codes.shape == (2, 16, 4) and lengths.tolist() == [4, 2]


@pytest.mark.slow
def test_talker_learns_to_speak_digits_and_a_new_voice(tmp_path):
    T = example()
    # 3 voices of 2 timbre bits, 1-3 digits, 300 steps: about a minute on one thread (0.962 measured)
    history = T.main(["--steps", "300", "--voices", "3", "--timbre-bits", "2", "--max-digits", "3",
                      "--train-size", "600", "--eval-size", "24", "--eval-every", "300", "--warmup", "30",
                      "--voice-steps", "40", "--voice-examples", "32", "--plot", str(tmp_path / "curve.png")])
    assert history["final"]["frame_accuracy"] >= 0.9, history["final"]
    # learn_voice leaves every trained voice bit-identical and lowers the new voice's loss; 3 trained voices are
    # too few for a vector to reach a 4th combination (48 are enough: docs/training.md, the 8-minute default run)
    assert history["voice"]["others_identical"]
    assert min(history["voice_loss"]) < history["voice_loss"][0], history["voice_loss"]
    assert os.path.getsize(tmp_path / "curve.png") > 10_000
