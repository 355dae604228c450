"""Speech output, omni vs transformers on the same weights: the whole spoken reply, and time to first audio.

Both sides answer the same prompt with the same number of text tokens and speech frames (greedy everywhere).
- spoken reply: omni `model.generate(batch, speak=True)` vs the reference `generate(..., return_audio=True)`.
- time to first audio: omni streams (Thinker reply, then the Talker's frames through the streaming Code2Wav decoder,
  `chunk` frames at a time); the reference has no streaming API, so its first audio is its whole waveform.
"""

from __future__ import annotations

import time

import torch

import omni
from build import chat_prompt
from common import alternate
from omni.generation import generate_tokens
from omni.sampling import SamplingConfig
from omni.models.qwen3_omni.speech import stream_speech


def run(ref, directory: str, size: dict, reps: int = 3, chunk: int = 8):
    s = size["speech"]
    P, N, F = s["prompt"], s["new_tokens"], s["frames"]
    model = omni.load(directory, quiet=True)
    voice = next(iter(model.config.talker_config.speaker_id))
    body = torch.randint(11, 150, (P,), generator=torch.Generator().manual_seed(0)).tolist()
    ids = torch.tensor([chat_prompt(body)])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    speech = {"do_sample": False, "max_frames": F}

    def omni_reply():
        return model.generate(batch, max_new_tokens=N, eos_token_ids=(), speak=True, voice=voice, speech=speech)

    def ref_reply():
        return ref.generate(ids, speaker=voice, return_audio=True, thinker_max_new_tokens=N,
                            thinker_min_new_tokens=N, thinker_do_sample=False, talker_do_sample=False,
                            talker_max_new_tokens=F + 1)

    def omni_first_audio():
        t0 = time.perf_counter()
        reply = generate_tokens(model.thinker, batch, SamplingConfig(max_new_tokens=N))[0].tolist()
        next(stream_speech(model, batch, reply, voice, speech, chunk))
        return time.perf_counter() - t0

    with torch.no_grad():
        frames = omni_reply().codes.shape[-1]
        t = alternate({"omni": omni_reply, "reference": ref_reply}, reps)
        first = sorted(omni_first_audio() for _ in range(reps))[reps // 2]
    seconds = model.code2wav.chunked_length(frames) / 24000
    return [
        dict(case=f"spoken reply ({N} tok, {frames} frames)", omni=t["omni"], reference=t["reference"],
             ratio=t["reference"] / t["omni"], note=f"{seconds:.1f} s of speech; real-time factor "
             f"{t['omni'] / seconds:.2f} omni, {t['reference'] / seconds:.2f} reference"),
        dict(case=f"time to first audio (chunk {chunk})", omni=first, reference=t["reference"],
             ratio=t["reference"] / first, note="omni streams; the reference returns all audio at once"),
    ]
