"""Determinism: the same inputs and seed give identical outputs (sampled text tokens, speech codes and the
waveform), bit for bit, in two fresh interpreters, whatever ran before in the process; another seed gives
another sample (so the comparison can fail)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

RUN = r"""
import sys
import torch
from safetensors.torch import save_file
import omni
from omni.demo import synthetic_media

checkpoint, out, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
model = omni.load(checkpoint, quiet=True)
image, audio, _ = synthetic_media()
conversation = [{"role": "user", "content": [
    {"type": "image", "image": image}, {"type": "audio", "audio": audio},
    {"type": "text", "text": "What do you see and hear?"}]}]
tensors = {}
for seed in seeds:
    reply = model.generate(conversation, max_new_tokens=6, min_new_tokens=6, do_sample=True, temperature=1.3,
                           top_k=50, seed=seed, speak=True, voice="chelsie", speech={"max_frames": 6})
    for key in ("tokens", "codes", "audio"):
        tensors[f"{seed}.{key}"] = getattr(reply, key).contiguous()
save_file(tensors, out)
"""


def _run(checkpoint: str, out: str, *seeds: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", RUN, checkpoint, out, *map(str, seeds)], check=True, env=env, timeout=300)
    return load_file(out)


@pytest.mark.slow
def test_same_seed_same_outputs_across_processes(tmp_path):
    from omni.demo import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(str(tmp_path / "tiny"), seed=0)
    first = _run(checkpoint, str(tmp_path / "a.safetensors"), 1234, 99)
    second = _run(checkpoint, str(tmp_path / "b.safetensors"), 99, 1234)  # other order: no state carried over
    assert first["1234.tokens"].shape == (1, 6)
    assert first["1234.codes"].shape[-1] >= 1 and first["1234.audio"].shape[-1] > 0
    for seed in (1234, 99):
        for key in ("tokens", "codes", "audio"):
            assert torch.equal(first[f"{seed}.{key}"], second[f"{seed}.{key}"]), f"seed {seed}: {key} differ"
    assert not torch.equal(first["1234.tokens"], first["99.tokens"])
    assert not torch.equal(first["1234.codes"], first["99.codes"])
