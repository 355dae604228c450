"""Writing waveforms to disk (16-bit PCM wav through the standard library; no extra dependency)."""

from __future__ import annotations

import os
import wave

import numpy as np
import torch

SAMPLE_RATE = 24000  # Code2Wav output rate


def write_wav(path: str | os.PathLike, waveform, sample_rate: int = SAMPLE_RATE) -> None:
    """waveform: 1-D float samples in [-1, 1] (tensor or array)."""
    if torch.is_tensor(waveform):
        waveform = waveform.detach().float().cpu().numpy()
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
