"""Speech recognition and captioning with the Thinker alone: audio, an image or a video in, text out.

    python examples/transcribe.py                                        # tiny random model, a synthetic tone
    python examples/transcribe.py --model Qwen/Qwen3-Omni-30B-A3B-Instruct --device cuda --dtype bfloat16 \
        --audio meeting.wav
    python examples/transcribe.py --model ./Qwen3-Omni-30B-A3B-Captioner --audio street.wav --task caption
    python examples/transcribe.py --model ... --image photo.jpg          # describe a picture
    python examples/transcribe.py --model ... --video clip.mp4 --audio-in-video

Only the Thinker is loaded (components=("thinker",)): no Talker or Code2Wav weights are read or downloaded.
Several files are transcribed as one batch. The Captioner release expects the audio alone, with no instruction.
"""

from __future__ import annotations

import argparse
import tempfile

import omni
from omni.demo import build_tiny_checkpoint, synthetic_media

INSTRUCTIONS = {
    "transcribe": "Transcribe the audio into text.",
    "caption": None,  # the Captioner takes the audio with no text
    "describe": "Describe this in detail.",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint directory or hub repo id (default: a tiny random one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: as stored)")
    p.add_argument("--audio", nargs="*", default=[], help="audio files, one request each")
    p.add_argument("--image", nargs="*", default=[], help="image files, one request each")
    p.add_argument("--video", nargs="*", default=[], help="video files, one request each")
    p.add_argument("--audio-in-video", action="store_true", help="also hear the videos' sound tracks")
    p.add_argument("--task", choices=sorted(INSTRUCTIONS), default=None,
                   help="default: transcribe for audio, describe for images and videos")
    p.add_argument("--max-new-tokens", type=int, default=256)
    return p.parse_args(argv)


def request(kind: str, item, task: str | None) -> list[dict]:
    instruction = INSTRUCTIONS[task or ("transcribe" if kind == "audio" else "describe")]
    content = [{"type": kind, kind: item}]
    if instruction:
        content.append({"type": "text", "text": instruction})
    return [{"role": "user", "content": content}]


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    path = args.model or build_tiny_checkpoint(tempfile.mkdtemp(prefix="omni-tiny-"))
    model = omni.load(path, components=("thinker",), dtype=args.dtype, device=args.device, quiet=True)
    items = [("audio", a) for a in args.audio] + [("image", i) for i in args.image]
    items += [("video", v) for v in args.video]
    if not items:  # the synthetic tone of `omni demo`
        items = [("audio", synthetic_media()[1])]
    conversations = [request(kind, item, args.task) for kind, item in items]
    reply = model.generate(conversations, max_new_tokens=args.max_new_tokens,
                           use_audio_in_video=args.audio_in_video)
    for (kind, item), text in zip(items, reply.text):
        name = item if isinstance(item, str) else f"<synthetic {kind}>"
        print(f"{name}: {text}")
    return reply.text


if __name__ == "__main__":
    main()
