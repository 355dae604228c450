"""One multimodal turn: an image, a sound, a video and a question in; a text reply and its speech out.

    python examples/multimodal_chat.py                                  # tiny random model, synthetic media
    python examples/multimodal_chat.py --model ./Qwen3-Omni-30B-A3B-Instruct --device cuda --dtype bfloat16 \
        --image cat.jpg --audio question.wav --video clip.mp4 --prompt "Answer the question." --wav reply.wav

Without --model a random `tiny` checkpoint is built in a temporary directory: everything runs, the reply is noise.
Without media arguments the synthetic image, tone and video of `omni demo` are used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import omni
from omni.demo import build_tiny_checkpoint, synthetic_media
from omni.media.audio import write_wav


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="checkpoint directory or hub repo id (default: a tiny random one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: as stored)")
    p.add_argument("--image", default=None, help="image file (default: a synthetic gradient)")
    p.add_argument("--audio", default=None, help="audio file (default: a synthetic two-tone clip)")
    p.add_argument("--video", default=None, help="video file (default: a synthetic moving square)")
    p.add_argument("--prompt", default="What do you see and hear?")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--voice", default="ethan", help="speaker (chelsie, ethan, aiden in the release)")
    p.add_argument("--wav", default="reply.wav", help="where the spoken reply goes")
    p.add_argument("--max-speech-frames", type=int, default=4095, help="speech limit, 12.5 frames per second")
    p.add_argument("--text-only", action="store_true", help="no speech: load and run the Thinker alone")
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    path = args.model or build_tiny_checkpoint(tempfile.mkdtemp(prefix="omni-tiny-"))
    components = ("thinker",) if args.text_only else None  # None: everything the checkpoint has
    model = omni.load(path, components=components, dtype=args.dtype, device=args.device, quiet=True)

    image, audio, video = synthetic_media()
    conversation = [{"role": "user", "content": [
        {"type": "image", "image": args.image or image},
        {"type": "audio", "audio": args.audio or audio},
        {"type": "video", "video": args.video or video},
        {"type": "text", "text": args.prompt},
    ]}]
    if args.text_only:
        reply = model.generate(conversation, max_new_tokens=args.max_new_tokens)
    else:
        reply = model.generate(conversation, max_new_tokens=args.max_new_tokens, speak=True, voice=args.voice,
                               speech={"max_frames": args.max_speech_frames})
    print(reply.text[0])
    if not args.text_only:
        samples = int(reply.audio_lengths[0])
        write_wav(args.wav, reply.audio[0, 0, :samples])  # 24 kHz mono
        print(f"wrote {samples / 24000:.2f} s of speech to {args.wav}", file=sys.stderr)
    return reply.text[0]


if __name__ == "__main__":
    main()
