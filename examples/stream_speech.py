"""Streaming speech: print the reply as the Thinker writes it, then append speech to a wav file as it is made.

    python examples/stream_speech.py --out reply.wav                   # tiny random model (noise, but real timing)
    python examples/stream_speech.py --model ./Qwen3-Omni-30B-A3B-Instruct --device cuda --dtype bfloat16 \
        --prompt "Tell me a short story." --out story.wav

`model.stream(..., speak=True)` yields text pieces (str), then waveform chunks (1-D tensors at 24 kHz) every
--chunk-frames codec frames (80 ms each). Code2Wav is causal, so every chunk is final: it can be played (here:
written) at once, and the chunks together equal decoding the whole reply at the end. (A Qwen2.5-Omni model streams
its Token2Wav in DiT windows: close to the whole decode, see docs/generation.md.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import wave

import numpy as np
import torch

import omni
from omni.demo import build_tiny_checkpoint

SAMPLE_RATE = 24000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint directory or hub repo id (default: a tiny random one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: as stored)")
    p.add_argument("--prompt", default="Say something nice.")
    p.add_argument("--voice", default="ethan")
    p.add_argument("--out", default="reply.wav", help="wav file the speech is appended to, chunk by chunk")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="codec frames per audio chunk (default: the release's, 8 Qwen3-Omni frames of 80 ms or "
                        "36 Qwen2.5-Omni codes of 20 ms)")
    p.add_argument("--max-speech-frames", type=int, default=4095)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    path = args.model or build_tiny_checkpoint(tempfile.mkdtemp(prefix="omni-tiny-"))
    model = omni.load(path, dtype=args.dtype, device=args.device, quiet=True)
    conversation = [{"role": "user", "content": args.prompt}]

    start, first_audio, samples, text = time.perf_counter(), None, 0, []
    with wave.open(args.out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)  # 16-bit PCM
        wav.setframerate(SAMPLE_RATE)
        for piece in model.stream(conversation, max_new_tokens=args.max_new_tokens, speak=True, voice=args.voice,
                                  audio_chunk_frames=args.chunk_frames, seed=args.seed,
                                  speech={"max_frames": args.max_speech_frames}):
            if isinstance(piece, str):
                text.append(piece)
                print(piece, end="", flush=True)
                continue
            if first_audio is None:
                first_audio = time.perf_counter() - start
                print(f"\n[first audio after {first_audio:.2f} s]", file=sys.stderr)
            pcm = (torch.clamp(piece.float(), -1, 1) * 32767).round().to(torch.int16).cpu().numpy()
            wav.writeframes(pcm.astype(np.dtype("<i2")).tobytes())
            samples += pcm.shape[0]
    print()
    print(f"wrote {samples / SAMPLE_RATE:.2f} s of speech to {args.out}", file=sys.stderr)
    return {"text": "".join(text), "samples": samples, "first_audio_s": first_audio}


if __name__ == "__main__":
    main()
