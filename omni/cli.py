"""The `omni` command line: demo, generate, info, convert.

    omni demo                                   the whole pipeline on the tiny random preset (offline, seconds)
    omni info --model qwen3-omni-30b-a3b        parameter table, total and active per token (no weights read)
    omni generate --model DIR --prompt "..."    chat: text, images, audio, video in; text (and speech) out
    omni convert --model DIR --out DIR2         re-shard, cast or keep a subset of a checkpoint (official layout)
"""

from __future__ import annotations

import argparse
import sys

from .errors import OmniError


def _add_model(p, help_text="checkpoint directory or hub repo id"):
    p.add_argument("--model", required=True, help=help_text)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: as stored)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.save, max_new_tokens=args.max_new_tokens, wav_out=args.wav, voice=args.voice)
    return 0


def cmd_generate(args) -> int:
    from .api import load

    from .release import release_of

    # speech needs every part (the release's vocoder included): the default; text needs the Thinker only
    components = None if args.speak else ("thinker",)
    model = load(args.model, components=components, dtype=args.dtype, device=args.device, quiet=args.quiet)
    content = [{"type": "image", "image": f} for f in args.image]
    content += [{"type": "audio", "audio": f} for f in args.audio]
    content += [{"type": "video", "video": f} for f in args.video]
    content.append({"type": "text", "text": args.prompt})
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": content})
    options = dict(
        max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
        compile=args.compile,
    )
    if args.speak:
        limit = release_of(model).speech_length_option  # the release's word for it: frames or codes
        options.update(speak=True, voice=args.voice, speech={limit: args.max_speech_frames})
    if args.stream:
        audio = []
        for piece in model.stream(messages, use_audio_in_video=args.audio_in_video, **options):
            if isinstance(piece, str):
                print(piece, end="", flush=True)
            else:
                audio.append(piece)
        print()
        if args.speak:
            import torch

            _write_speech(args.speak, torch.cat(audio) if audio else torch.zeros(0))
        return 0
    result = model.generate(messages, use_audio_in_video=args.audio_in_video, quiet=args.quiet, **options)
    print(result.text[0])
    if args.speak:
        _write_speech(args.speak, result.audio[0, 0, : int(result.audio_lengths[0])])
    return 0


def _write_speech(path: str, waveform) -> None:
    from .media.audio import write_wav

    write_wav(path, waveform)
    print(f"wrote {waveform.shape[-1] / 24000:.2f} s of speech to {path}", file=sys.stderr)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _active(decoder_cfg, decoder) -> int:
    """Parameters one token touches: all but the experts it is not routed to."""
    total = _count(decoder)
    inactive = 0
    for layer in decoder.layers:
        experts = getattr(layer.ffn, "experts", None)
        if experts is not None:
            per_expert = sum(p.numel() for p in experts.parameters()) // experts.n_experts
            inactive += per_expert * (experts.n_experts - decoder_cfg.num_experts_per_tok)
    return total - inactive


def parameter_table(cfg) -> list[tuple[str, int, int]]:
    """(component, parameters, active parameters per token) of the model `cfg` describes, counted on the meta
    device (no memory, no weights). Active = all but the experts a token is not routed to."""
    import torch

    from .model import OmniModel
    from .release import release_of

    with torch.device("meta"):
        model = OmniModel(cfg)
    rows = []
    th = model.thinker
    for name in ("vision", "audio"):
        if hasattr(th, name):
            n = _count(getattr(th, name))
            rows.append((f"thinker.{name}", n, n))
    t = cfg.thinker.text_config
    lm_total = _count(th.embed_tokens) + _count(th.decoder) + _count(th.lm_head)
    lm_active = _count(th.embed_tokens) + _active(t, th.decoder) + _count(th.lm_head)
    rows.append(("thinker LM", lm_total, lm_active))
    if getattr(model, "talker", None) is not None:
        tk = model.talker
        total = _count(tk)
        routed_away = _count(tk.decoder) - _active(tk.decoder.cfg, tk.decoder)
        name = "talker (+ code predictor)" if hasattr(tk, "code_predictor") else "talker"
        rows.append((name, total, total - routed_away))
    vocoder = release_of(cfg).vocoder
    if getattr(model, vocoder, None) is not None:
        n = _count(getattr(model, vocoder))
        rows.append((vocoder, n, n))
    return rows


def cmd_info(args) -> int:
    from .config import PRESETS, OmniConfig

    directory = None
    if args.model in PRESETS:
        cfg = OmniConfig.from_name(args.model)
    else:
        from .checkpoints.hub import resolve_config_dir

        directory = resolve_config_dir(args.model)
        cfg = OmniConfig.from_pretrained(directory)
    t = cfg.thinker.text_config
    print(f"model_type {cfg.model_type}")
    ffn = (f"{t.num_experts} experts (top-{t.num_experts_per_tok})" if t.num_experts
           else f"dense MLP {t.intermediate_size}")
    print(f"thinker LM: {t.num_hidden_layers} layers, width {t.hidden_size}, {t.num_attention_heads} heads / "
          f"{t.num_key_value_heads} kv heads x {t.dim_head}, {ffn}, vocab {t.vocab_size}")
    rows = parameter_table(cfg)
    print(f"\n{'component':28s} {'parameters':>16s} {'active/token':>16s}")
    for name, total, active in rows:
        print(f"{name:28s} {total:16,d} {active:16,d}")
    print(f"{'total':28s} {sum(r[1] for r in rows):16,d} {sum(r[2] for r in rows):16,d}")
    counted = " ".join(r[0] for r in rows)
    from .model import all_components

    _print_sizes(cfg)
    missing = [c for c in all_components()[1:] if getattr(cfg, f"{c}_config", None) is not None and c not in counted]
    if missing:
        print(f"(not implemented in this omni version, not counted: {', '.join(missing)})")
    from .release import release_of

    list_voices = release_of(cfg).voice_names
    if list_voices is not None:  # presets from the config, learned voices from <checkpoint>/voices/
        names = list_voices(cfg, directory)
        print(f"\nvoices: {', '.join(names['presets']) or 'none'} (presets); "
              f"{', '.join(names['learned']) or 'none'} (learned)")
    return 0


def _print_sizes(cfg) -> None:
    """Weight bytes in bf16 and quantized (the default scope, omni.quant), and what a pack-quantized
    checkpoint's config says it holds."""
    import torch

    from .model import OmniModel
    from .quant.convert import estimated_bytes
    from .quant.scheme import Scheme, parse_config

    with torch.device("meta"):
        model = OmniModel(cfg)
    bf16 = sum(p.numel() for p in model.parameters()) * 2
    print(f"\nweights: {bf16 / 1e9:.2f} GB in bf16", end="")
    for scheme in (Scheme(8, None), Scheme(4, 128)):
        packed, rest = estimated_bytes(model, scheme)
        print(f"; {(packed + rest) / 1e9:.2f} GB as {scheme.name}", end="")
    print(" (decoder layers quantized, the rest bf16)")
    qc = cfg.extra.get("quantization_config")
    if qc is not None:
        from .errors import CheckpointError

        try:
            groups = parse_config(qc, "config.json").groups
            print("this checkpoint is quantized: " + ", ".join(s.name for _, s in groups))
        except CheckpointError as e:
            print(f"this checkpoint is quantized in a way omni does not read: {e}")


def cmd_convert(args) -> int:
    from .api import load, save

    group = None if args.group_size == "channel" else int(args.group_size)
    model = load(args.model, components=args.components, dtype=args.dtype, device="cpu", quiet=args.quiet,
                 quantize=args.quantize, group_size=group)
    save(model, args.out, max_shard_size=args.max_shard_size)  # writes the tokenizer files too
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omni",
        description="Qwen omni-modal models (Qwen3-Omni, Qwen2.5-Omni) in clean PyTorch. Run `omni COMMAND --help` for "
                    "details.",
        epilog="examples:\n  omni demo\n  omni info --model qwen3-omni-30b-a3b\n"
               "  omni generate --model ./Qwen3-Omni-30B-A3B-Instruct --prompt \"Describe this.\" --image cat.png\n"
               "  omni convert --model ./Qwen3-Omni-30B-A3B-Instruct --out ./thinker-bf16 --components thinker "
               "--dtype bfloat16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo", help="run the tiny random preset end to end (offline, seconds)",
        description="Run the tiny random preset end to end (offline, seconds).",
    )
    d.add_argument("--save", default=None, help="keep the tiny checkpoint in this directory")
    d.add_argument("--max-new-tokens", type=int, default=16, help="reply length in tokens (default: 16)")
    d.add_argument("--wav", default=None, help="where to write the spoken reply (default: omni-demo.wav in --save "
                   "or the current directory)")
    d.add_argument("--voice", default="ethan", help="speaker name (default: ethan)")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser(
        "generate", help="chat with a checkpoint: text, images, audio, video in; text (+ speech) out",
        description="Chat with a checkpoint: text, images, audio, video in; text (+ speech) out.",
    )
    _add_model(g)
    g.add_argument("--prompt", required=True, help="the user's text, after any media")
    g.add_argument("--system", default=None, help="system prompt")
    g.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    g.add_argument("--audio", action="append", default=[], help="audio file (repeatable)")
    g.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    g.add_argument("--audio-in-video", action="store_true", help="also feed the videos' sound tracks")
    g.add_argument("--max-new-tokens", type=int, default=256, help="reply length limit in tokens")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    g.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: no limit)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0: no limit)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help=">1 discourages repeated tokens")
    g.add_argument("--seed", type=int, default=None, help="random seed for sampling (reproducible replies)")
    g.add_argument("--stream", action="store_true", help="print the reply as it is produced")
    g.add_argument("--compile", action="store_true",
                   help="run decode steps through torch.compile: 20-40 s once, then 2-3x faster per token on CPU")
    g.add_argument("--speak", default=None, metavar="OUT.wav", help="also synthesise speech into this wav file")
    g.add_argument("--voice", default="ethan", help="speaker name (see `omni info`; default: ethan)")
    g.add_argument("--max-speech-frames", type=int, default=4095,
                   help="speech length limit in codec frames (12.5 per second; default: the reference's 4095)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser(
        "info", help="config summary and parameter table (needs no weights)",
        description="Config summary and parameter table (needs no weights).",
    )
    i.add_argument("--model", required=True, help="checkpoint directory, hub repo id, or preset name")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser(
        "convert", help="re-shard and/or cast a checkpoint in the official layout",
        description="Re-shard and/or cast a checkpoint in the official layout.",
    )
    _add_model(c)
    c.add_argument("--out", required=True, help="output directory (config, shards, index, tokenizer)")
    c.add_argument("--max-shard-size", default="5GB", help="largest shard file, e.g. 5GB, 500MB")
    c.add_argument("--components", nargs="+", default=None, help="subset to keep, e.g. thinker")
    c.add_argument("--quantize", choices=("int4", "int8"), default=None,
                   help="write a weight-only quantized checkpoint (compressed-tensors pack-quantized; the Thinker's "
                        "and Talker's decoder layers), quantized while the shards stream in")
    c.add_argument("--group-size", choices=("32", "64", "128", "channel"), default="128",
                   help="input columns per scale with --quantize (default 128; channel: one scale per row)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=cmd_convert)
    return p


def _check_output(path: str | None, option: str, is_dir: bool) -> None:
    """An output path the command will write, checked before any work: its folder exists and can be written."""
    if path is None:
        return
    import os

    from .errors import InputError

    target = os.path.abspath(path)
    if os.path.exists(target) and os.path.isdir(target) != is_dir:
        raise InputError(f"{option} {path}: exists and is {'not ' if is_dir else ''}a directory")
    folder = target if is_dir and os.path.isdir(target) else os.path.dirname(target)
    if not os.path.isdir(folder):
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")


def main(argv=None) -> int:
    """Run one command. Every failure is one `omni: error: ...` line on stderr and a non-zero exit (set
    OMNI_TRACEBACK=1 to see the traceback of an unexpected one)."""
    import os

    args = build_parser().parse_args(argv)
    try:
        _check_output(getattr(args, "speak", None), "--speak", is_dir=False)
        _check_output(getattr(args, "wav", None), "--wav", is_dir=False)
        _check_output(getattr(args, "out", None), "--out", is_dir=True)
        _check_output(getattr(args, "save", None), "--save", is_dir=True)
        return args.func(args)
    except OmniError as e:
        print(f"omni: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("omni: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or the system (memory, disk): still one line, the traceback on request
        if os.environ.get("OMNI_TRACEBACK"):
            raise
        print(f"omni: error: {type(e).__name__}: {e} (set OMNI_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
