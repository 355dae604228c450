"""Encoders and vocoder, omni vs transformers on the same weights: vision tower, audio tower, Code2Wav.

A part that omni does not implement yet is skipped with a message (the rows say so).
"""

from __future__ import annotations

import torch

import omni
from common import alternate


def run(ref, directory: str, size: dict, reps: int = 5):
    rows = []
    model = omni.load(directory, components=("thinker", "code2wav"), quiet=True)
    with torch.no_grad():
        rows += _vision(ref, model, size, reps)
        rows += _audio(ref, model, size, reps)
        rows += _code2wav(ref, model, size, reps)
    return rows


def _vision(ref, model, size, reps):
    vision = getattr(model.thinker, "vision", None)
    if vision is None:
        return [dict(case="vision tower", note="skipped: omni has no vision tower yet")]
    grid = torch.tensor([size["image"]])
    n = int(grid.prod())
    pixels = torch.randn(n, vision.patch_dim, generator=torch.Generator().manual_seed(0))
    t = alternate({"omni": lambda: vision(pixels, grid), "reference": lambda: ref.thinker.model.visual(pixels, grid_thw=grid)}, reps)
    return [dict(case=f"vision tower {n} patches fp32", omni=t["omni"], reference=t["reference"],
                 ratio=t["reference"] / t["omni"], note=f"{n / t['omni']:.0f} patches/s omni")]


def _audio(ref, model, size, reps):
    audio = getattr(model.thinker, "audio", None)
    if audio is None:
        return [dict(case="audio tower", note="skipped: omni has no audio tower yet (omni/models/qwen3_omni/audio.py)")]
    mels, frames = ref.config.thinker_config.audio_config.num_mel_bins, size["audio_frames"]
    feats = torch.randn(1, mels, frames, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, frames, dtype=torch.long)
    t = alternate({"omni": lambda: audio(feats, mask),
                   "reference": lambda: ref.thinker.get_audio_features(feats, feature_attention_mask=mask)}, reps)
    return [dict(case=f"audio tower {frames / 100:.0f} s fp32", omni=t["omni"], reference=t["reference"],
                 ratio=t["reference"] / t["omni"], note=f"{frames / 100 / t['omni']:.0f} s of audio per s omni")]


def _code2wav(ref, model, size, reps):
    c2w = getattr(model, "code2wav", None)
    if c2w is None:
        return [dict(case="code2wav", note="skipped: omni has no Code2Wav yet (omni/models/qwen3_omni/code2wav.py)")]
    cfg = ref.config.code2wav_config
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, size["code_frames"]),
                          generator=torch.Generator().manual_seed(0))
    t = alternate({"omni": lambda: c2w(codes), "reference": lambda: ref.code2wav(codes)}, reps)
    seconds = c2w(codes).shape[-1] / 24000
    return [dict(case=f"code2wav {size['code_frames']} frames fp32", omni=t["omni"], reference=t["reference"],
                 ratio=t["reference"] / t["omni"],
                 note=f"real-time factor {t['omni'] / seconds:.3f} omni, {t['reference'] / seconds:.3f} reference")]
