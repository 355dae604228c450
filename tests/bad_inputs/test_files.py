"""Never lose a user's file: saves that fail part-way leave the previous checkpoint whole and loadable, files that
are not the checkpoint's survive every save, write_wav checks before it opens, and bad save / load arguments are
named errors raised before anything is written."""

from __future__ import annotations

import errno
import hashlib
import os

import numpy as np
import pytest
import torch

import omni
from omni.checkpoints import commit as commit_module
from omni.checkpoints import io as io_module
from omni.errors import CheckpointError, MediaError

SHARD = "300KB"  # the tiny model in several shards, so that shard names clash between two saves


def _digest(directory) -> dict[str, str]:
    """Every file below `directory` -> its sha256 (what "unchanged" means here)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def saved(tiny_model, tmp_path):
    """A sharded checkpoint with a LoRA adapter, notes and a folder of the user's beside it."""
    directory = tmp_path / "ckpt"
    omni.save(tiny_model, directory, max_shard_size=SHARD)
    (directory / "adapter_model.safetensors").write_bytes(b"not omni's")
    (directory / "notes.txt").write_text("mine")
    (directory / "runs").mkdir()
    (directory / "runs" / "log.txt").write_text("mine too")
    return directory


def _user_files(directory) -> dict[str, str]:
    digest = _digest(directory)
    return {k: v for k, v in digest.items() if k in ("adapter_model.safetensors", "notes.txt", "runs/log.txt")}


def test_foreign_files_survive_saves(tiny_model, saved):
    mine = _user_files(saved)
    omni.save(tiny_model, saved)  # sharded -> one file: the old shards go, the user's files stay
    assert _user_files(saved) == mine and len(mine) == 3
    assert not [n for n in os.listdir(saved) if n.startswith("model-")]
    omni.save(tiny_model, saved, max_shard_size=SHARD)  # and back
    assert _user_files(saved) == mine and not (saved / "model.safetensors").exists()
    assert not [n for n in os.listdir(saved) if n.startswith(".omni")]  # no staging or second names left behind
    assert omni.load(saved, quiet=True).thinker is not None


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_save_that_fails_while_writing_changes_nothing(tiny_model, saved, monkeypatch, failure):
    before = _digest(saved)
    real, calls = io_module.save_file, []

    def failing(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the second shard: the first one is already written (to the staging folder)
            raise failure
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(io_module, "save_file", failing)
    with pytest.raises(CheckpointError if isinstance(failure, OSError) else KeyboardInterrupt) as info:
        omni.save(tiny_model, saved, max_shard_size="200KB")
    if isinstance(failure, OSError):
        assert "No space left" in str(info.value) and "as it was before the save" in str(info.value)
    assert _digest(saved) == before  # byte for byte, and no staging folder left
    monkeypatch.undo()
    assert omni.load(saved, quiet=True).thinker is not None


def test_a_commit_cut_at_any_step_leaves_a_loadable_checkpoint(tiny_model, saved, monkeypatch):
    """Stop the commit's renames after n of them, for every n: some checkpoint (old or new) still loads, whole."""
    reference = omni.load(saved, quiet=True)
    n = 0
    while True:
        real, count = os.replace, [0]

        def cut(src, dst, real=real, count=count, n=n):
            if count[0] == n:
                raise OSError(errno.EIO, "injected")
            count[0] += 1
            return real(src, dst)

        monkeypatch.setattr(commit_module.os, "replace", cut)
        try:
            omni.save(tiny_model, saved, max_shard_size="200KB")
            done = True
        except CheckpointError as e:
            assert "still the one that loads" in str(e) or "as it was before" in str(e)
            done = False
        monkeypatch.undo()
        back = omni.load(saved, quiet=True)
        for (name, p), q in zip(reference.named_parameters(), back.parameters()):
            assert torch.equal(p, q), name
        assert len(_user_files(saved)) == 3
        if done:
            break
        n += 1
    assert n > 3  # the cut really hit every step of a multi-file commit


def test_in_place_convert(saved):
    from omni.cli import main

    assert main(["convert", "--model", str(saved), "--out", str(saved), "--dtype", "bfloat16", "--quiet"]) == 0
    back = omni.load(saved, quiet=True)
    assert back.thinker.lm_head.weight.dtype == torch.bfloat16
    assert len(_user_files(saved)) == 3


def test_bad_save_and_load_arguments_write_nothing(tiny_model, tiny_dir, tmp_path):
    target = tmp_path / "out"
    with pytest.raises(CheckpointError, match="max_shard_size must be a positive byte count"):
        omni.save(tiny_model, target, max_shard_size="lots")
    with pytest.raises(CheckpointError, match="max_shard_size"):
        omni.save(tiny_model, target, max_shard_size=0)
    with torch.device("meta"):
        ghost = omni.OmniModel(tiny_model.config, components=("thinker",))
    with pytest.raises(CheckpointError, match="meta device"):
        omni.save(ghost, target)
    with pytest.raises(CheckpointError, match="takes an OmniModel"):
        omni.save({"weights": 1}, target)
    assert not target.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        omni.save(tiny_model, tmp_path / "file")
    with pytest.raises(CheckpointError, match="torch.int8 would not hold the weights"):
        omni.load(tiny_dir, dtype=torch.int8, quiet=True)
    with pytest.raises(CheckpointError, match="device must be"):
        omni.load(tiny_dir, device="gpu0", quiet=True)
    with pytest.raises(CheckpointError, match="is not available here"):
        omni.load(tiny_dir, device="cuda:7", quiet=True) if not torch.cuda.is_available() else omni.load(
            tiny_dir, device="cuda:999", quiet=True)
    with pytest.raises(CheckpointError, match="quiet must be True or False"):
        omni.load(tiny_dir, quiet="no")
    with pytest.raises(omni.ConfigError, match="components must be a component name"):
        omni.load(tiny_dir, components=5, quiet=True)


@pytest.mark.parametrize("waveform, sample_rate, fragment", [
    (np.array([0.1, np.nan]), 24000, "NaN or infinite"),
    (np.zeros((2, 3, 4)), 24000, "(samples,) or (channels, samples)"),
    (np.zeros((1000, 2)), 24000, "pass waveform.T"),
    (np.array(["a"]), 24000, "float or integer samples"),
    (np.zeros(10), 0, "sample_rate must be an integer in 1..1000000"),
    (np.zeros(10), 44.1, "sample_rate"),
])
def test_write_wav_checks_before_it_opens(tmp_path, waveform, sample_rate, fragment):
    path = tmp_path / "keep.wav"
    omni.write_wav(path, np.zeros(100))
    before = path.read_bytes()
    with pytest.raises(MediaError) as info:
        omni.write_wav(path, waveform, sample_rate)
    assert fragment in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.wav"]


def test_write_wav_channels_and_pcm(tmp_path):
    import wave

    stereo = np.stack([np.full(5, 0.5), np.full(5, -0.5)])
    omni.write_wav(tmp_path / "s.wav", torch.from_numpy(stereo))
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert w.getnchannels() == 2 and w.getnframes() == 5
        frames = np.frombuffer(w.readframes(5), dtype="<i2").reshape(5, 2)
    assert (frames[:, 0] == 16384).all() and (frames[:, 1] == -16384).all()  # interleaved, not flattened
    omni.write_wav(tmp_path / "i.wav", np.array([0, 1000, -1000], dtype=np.int16))  # PCM is PCM, not [-1, 1]
    with wave.open(str(tmp_path / "i.wav")) as w:
        assert np.frombuffer(w.readframes(3), dtype="<i2").tolist() == [0, 1000, -1000]
    with pytest.raises(MediaError, match="does not exist"):
        omni.write_wav(tmp_path / "nowhere" / "x.wav", np.zeros(3))
    with pytest.raises(MediaError, match="is a directory"):
        omni.write_wav(tmp_path, np.zeros(3))


def test_interrupted_wav_leaves_the_old_file(tmp_path, monkeypatch):
    import wave

    path = tmp_path / "keep.wav"
    omni.write_wav(path, np.zeros(100))
    before = path.read_bytes()

    def broken(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(wave.Wave_write, "writeframes", broken)
    with pytest.raises(KeyboardInterrupt):
        omni.write_wav(path, np.ones(100) * 0.5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.wav"]
