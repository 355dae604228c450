"""The whole speaking Qwen3-Omni, quantized, on one CPU box: build, save, reload in a fresh process, answer, speak.

    python benchmarks/full_size.py --preset qwen3-omni-30b-a3b --quantize int4 --out DIR --json FILE
    python benchmarks/full_size.py ... --layers 12          # same widths, 12 Thinker layers (quick checks)

1. build   the preset's configuration with random weights written directly in the checkpoint's final form,
           tensor by tensor: packed int4/int8 tensors (compressed-tensors `pack-quantized`, official key names)
           for the quantized layers, bf16 for the rest; at most one shard (2 GB) is in memory at a time. No float
           copy of the model ever exists, so the build fits wherever the result does.
2. run     (a fresh process) omni.load(DIR), then one request: a 448x448 image, 5 s of audio and a text question
           (about 300 prompt tokens), 32 greedy tokens, then 2 s of speech through the Talker, the code predictor
           and Code2Wav (streamed, so the first audio chunk is timed).

Written to FILE (JSON) and printed: peak RSS of each stage (GB = 10^9 bytes), checkpoint bytes, load seconds,
prefill and decode tokens/s, the bytes one decode step must read (quantized weights of every layer, the 8 routed
experts of 128 per MoE layer, lm_head, KV cache) and the read bandwidth measured in the same run (so the share of
the limit reached), time to first audio and the real-time factor of the speech.

Random weights: every matrix is drawn at std 0.02 (int4 codes uniform, scales set to match); the Thinker's token
embedding at std 10, which spreads the routing over the experts as trained weights do (REFERENCE_NOTES: std 0.02
everywhere sends 16 tokens to only 15-25 experts, std 10 to 76-88). The Talker's codec-eos logit row is zeroed so
that the random Talker speaks for the whole 2 s. `--scope wide` also quantizes the vision and audio towers'
linear layers and the Thinker's lm_head to int8 (see docs/quantization.md for why the default scope alone does not
fit the checkpoint budget); `--lm-head int4` makes that lm_head int4 group 128 instead (the CPU int4 kernel reads it
in about half the int8 kernel's time: a decode step's largest single read).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SHARD_BYTES = 2 * 10**9


def peak_rss_gb() -> float:
    """Peak resident set so far, in GB (10^9 bytes, the unit of the checkpoint's size and of the targets)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def config_of(preset: str, layers: int | None):
    import omni

    cfg = omni.OmniConfig.from_name(preset)
    if layers:
        d = cfg.to_dict()
        text = d["thinker_config"]["text_config"]
        if not 3 <= layers <= text["num_hidden_layers"]:
            sys.exit(f"--layers must be in 3..{text['num_hidden_layers']} (the vision features enter layers 0-2)")
        text["num_hidden_layers"] = layers
        talker = d["talker_config"]
        talker["text_config"]["num_hidden_layers"] = min(layers, talker["text_config"]["num_hidden_layers"])
        talker["accept_hidden_layer"] = min(talker["accept_hidden_layer"], layers)
        cfg = omni.OmniConfig.from_dict(d)
    return cfg


# -- 1. build ------------------------------------------------------------------------------------------------------


def planned_model(cfg, quantize: str, group_size: int | None, scope: str, lm_head: str = "int8"):
    """The model on the meta device with its quantized layers in place (no memory), and the schemes used."""
    from omni.model import OmniModel
    from omni.quant.convert import prepare_empty, quantizable
    from omni.quant.scheme import scheme_from_options

    with torch.device("meta"):
        model = OmniModel(cfg)
    main = scheme_from_options(quantize, group_size)
    wide = scheme_from_options("int8", None)
    names = quantizable(model)
    chosen = {n: main for n in names}
    if scope == "wide":
        towers = ("thinker.vision.", "thinker.audio.")
        chosen.update({n: wide for n in quantizable(model, lambda n, m: n.startswith(towers)
                                                     and isinstance(m, torch.nn.Linear))})
        chosen["thinker.lm_head"] = wide if lm_head == "int8" else scheme_from_options("int4", 128)
    prepare_empty(model, chosen.__getitem__, list(chosen), "meta", torch.bfloat16)
    return model


def random_float(name: str, shape, g: torch.Generator) -> torch.Tensor:
    if name.endswith("bias") or "norm" in name.rsplit(".", 2)[-2]:
        t = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
    else:
        std = 10.0 if name == "thinker.embed_tokens.weight" else 0.02
        t = torch.randn(shape, generator=g) * std
    return t.to(torch.bfloat16)


def packed_tensors(pw, g: torch.Generator) -> dict:
    """Random compressed-tensors parts of one (out, in) quantized weight: codes uniform, scales for std ~0.02."""
    s = pw.scheme
    n, k = pw.out_features, pw.in_features
    words = math.ceil(k * s.bits / 32)
    packed = torch.randint(-2**31, 2**31 - 1, (n, words), dtype=torch.int32, generator=g)
    code_std = math.sqrt(((2**s.bits) ** 2 - 1) / 12)  # std of codes uniform over 2^bits values
    scale = torch.full((n, s.scale_columns(k)), 0.02 / code_std, dtype=torch.bfloat16)
    return {"weight_packed": packed, "weight_scale": scale, "weight_shape": torch.tensor([n, k])}


def checkpoint_tensors(model, g):
    """(official key, tensor) for the whole model, made one at a time."""
    from omni.quant.experts import PROJECTIONS, QuantExperts
    from omni.quant.modules import QuantLinear
    from omni.release import release_of

    key_map = release_of(model).weights.key_map
    for name, p in model.named_parameters():
        stacked = key_map.is_stacked(name)
        keys = key_map.to_official(name, p.shape[0] if stacked else 0)
        if not stacked:
            yield keys[0], random_float(name, p.shape, g)
        else:
            for e, key in enumerate(keys):
                yield key, random_float(name, p.shape[1:], g)
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            items = [(m.weight, key_map.to_official(name + ".weight")[0])]
        elif isinstance(m, QuantExperts):
            items = [(getattr(m, p), key) for p in PROJECTIONS
                     for key in key_map.to_official(f"{name}.{p}", m.n_experts)]
        else:
            continue
        for pw, key in items:
            for part, t in packed_tensors(pw, g).items():
                yield key[: -len("weight")] + part, t


def build(args, cfg) -> dict:
    from omni.quant import save_config

    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    model = planned_model(cfg, args.quantize, args.group_size, args.scope, args.lm_head)
    g = torch.Generator().manual_seed(0)
    shard, size, parts, weight_map, total = {}, 0, [], {}, 0

    def flush():
        nonlocal shard, size
        path = os.path.join(args.out, f".part-{len(parts):05d}.safetensors")
        save_file(shard, path, metadata={"format": "pt"})
        parts.append((path, list(shard)))
        shard, size = {}, 0

    for key, t in checkpoint_tensors(model, g):
        n = t.numel() * t.element_size()
        if shard and size + n > SHARD_BYTES:
            flush()
        shard[key] = t
        size += n
        total += n
    flush()
    for i, (path, keys) in enumerate(parts):
        name = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
        os.replace(path, os.path.join(args.out, name))
        weight_map.update({k: name for k in keys})
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f)
    config = save_config(model, cfg.to_dict())
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return {"build_seconds": round(time.perf_counter() - t0, 1), "checkpoint_bytes": total,
            "checkpoint_gb": round(total / 1e9, 2), "build_peak_rss_gb": round(peak_rss_gb(), 2)}


# -- 2. run --------------------------------------------------------------------------------------------------------


def request(cfg):
    """A 448x448 image, 5 s of audio and a question, as the processor lays them out (about 300 tokens)."""
    import numpy as np

    from omni.media.audio import log_mel_features
    from omni.media.image import preprocess_images
    from omni.release import release_of

    vision = cfg.thinker_config.vision_config
    ys, xs = np.mgrid[0:448, 0:448]
    rgb = np.stack([xs % 256, ys % 256, (xs + ys) % 256], -1).astype(np.uint8)
    image = preprocess_images(rgb, patch_size=vision.patch_size, merge_size=vision.spatial_merge_size,
                              min_pixels=448 * 448, max_pixels=448 * 448)
    t = np.arange(5 * 16000) / 16000
    audio = log_mel_features([(0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype("float32")])
    n_audio = int(release_of(cfg).audio_token_count(int(audio["feature_attention_mask"].sum()),
                                                    cfg.thinker_config.audio_config.n_window))
    n_image = int(image["image_grid_thw"].prod()) // vision.spatial_merge_size**2
    th = cfg.thinker_config
    vision_end, audio_end = th.vision_start_token_id + 1, th.audio_start_token_id + 1  # the release's id order
    question = list(range(1000, 1040))  # 40 ordinary text tokens
    ids = ([cfg.im_start_token_id, cfg.user_token_id, 198, th.vision_start_token_id] + [th.image_token_id] * n_image
           + [vision_end, th.audio_start_token_id] + [th.audio_token_id] * n_audio
           + [audio_end] + question + [cfg.im_end_token_id, 198, cfg.im_start_token_id,
                                                   cfg.assistant_token_id, 198])
    batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
             "pixel_values": image["pixel_values"].to(torch.bfloat16), "image_grid_thw": image["image_grid_thw"],
             "input_features": audio["input_features"].to(torch.bfloat16),
             "feature_attention_mask": audio["feature_attention_mask"]}
    return batch


def decode_bytes(model, prompt: int, new: int) -> int:
    """Bytes one Thinker decode step reads: its layers' weights (the routed experts' share: top_k of E per layer),
    the final norm and lm_head, and the KV cache at the mean length."""
    from omni.quant.experts import QuantExperts
    from omni.quant.modules import PackedWeight

    t = model.thinker.cfg.text_config
    total = 0
    for name, m in model.thinker.named_modules():
        if not (name.startswith(("decoder", "lm_head"))):
            continue
        if isinstance(m, QuantExperts):
            total += sum(getattr(m, p).nbytes() for p in ("gate_proj", "up_proj", "down_proj")) * t.num_experts_per_tok // m.n_experts
        elif isinstance(m, PackedWeight) and ".experts." not in name:
            total += m.nbytes()
        total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    kv = 2 * t.num_hidden_layers * t.num_key_value_heads * t.dim_head * (prompt + new // 2) * 2
    return total + kv


def run(args) -> dict:
    import omni
    from omni.generation import decode_steps
    from omni.models.qwen3_omni.speech import iter_frames, reply_talker_inputs
    from omni.sampling import SamplingConfig

    from common import read_bandwidth

    from omni.quant.modules import set_cpu_kernel

    torch.set_num_threads(args.threads or torch.get_num_threads())
    set_cpu_kernel(args.cpu_kernel)  # before the load: "torch" picks another in-memory layout
    # measured before the model exists: its 1 GiB buffer, freed at once, then adds nothing to the peak below
    out = {"read_bandwidth_gbs": round(read_bandwidth(1024) / 1e9, 1)}
    t0 = time.perf_counter()
    model = omni.load(args.out, quiet=True)
    out["load_seconds"] = round(time.perf_counter() - t0, 1)
    out["rss_after_load_gb"] = round(peak_rss_gb(), 2)
    with torch.no_grad():  # the random Talker would stop at random: it speaks the whole budget instead
        model.talker.codec_head.weight[model.config.talker_config.codec_eos_token_id] = 0
    batch = request(model.config)
    P = batch["input_ids"].shape[1]
    cfg = SamplingConfig(max_new_tokens=args.new_tokens, do_sample=False, eos_token_ids=(), pad_token_id=0,
                         compile=args.compile)  # no end: 32 tokens
    start = time.perf_counter()
    times, tokens = [], []
    with torch.no_grad():
        for tok in decode_steps(model.thinker, batch, cfg):
            times.append(time.perf_counter())
            tokens.append(tok)
    prefill = times[0] - start
    decode = (times[-1] - times[0]) / max(len(times) - 1, 1)
    if args.compile:  # the first step compiles the graph: timed apart, the decode rate is the steps after it
        decode = (times[-1] - times[1]) / max(len(times) - 2, 1)
        out["compile_seconds"] = round(times[1] - times[0] - decode, 1)
    out.update(prompt_tokens=P, new_tokens=len(tokens), prefill_seconds=round(prefill, 2),
               prefill_tokens_per_s=round(P / prefill, 1), decode_tokens_per_s=round(1 / decode, 2))
    step_bytes = decode_bytes(model, P, len(tokens))
    out["decode_step_gb"] = round(step_bytes / 1e9, 3)
    out["decode_read_gbs"] = round(step_bytes / decode / 1e9, 1)
    out["decode_share_of_bandwidth"] = round(step_bytes / decode / 1e9 / out["read_bandwidth_gbs"], 3)
    # speech: the reply re-read by the Thinker, the Talker's frames streamed into Code2Wav
    reply = torch.stack(tokens, 1)
    frames = int(args.speech_seconds * 12.5)
    speech_start = time.perf_counter()
    first = None
    samples = 0
    with torch.no_grad():
        inputs = reply_talker_inputs(model, batch, reply)
        codes = (f[:, :, None] for f, _ in iter_frames(model.talker, inputs, do_sample=False, max_frames=frames))
        for wav in model.code2wav.stream_decode(codes, chunk_size=args.audio_chunk_frames):
            first = first or time.perf_counter()
            samples += wav.shape[-1]
    speech = time.perf_counter() - speech_start
    seconds = samples / 24000
    out.update(speech_frames=frames, audio_seconds=round(seconds, 2),
               time_to_first_audio_s=round(first - speech_start, 2) if first else None,
               time_to_first_audio_from_request_s=round(first - start, 2) if first else None,
               speech_seconds=round(speech, 2), real_time_factor=round(speech / seconds, 2) if seconds else None)
    out["run_peak_rss_gb"] = round(peak_rss_gb(), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="qwen3-omni-30b-a3b")
    ap.add_argument("--quantize", default="int4", choices=["int4", "int8"])
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--scope", default="default", choices=["default", "wide"])
    ap.add_argument("--lm-head", default="int8", choices=["int8", "int4"],
                    help="--scope wide: the Thinker lm_head's scheme (int8 per channel, or int4 group 128)")
    ap.add_argument("--out", required=True, help="checkpoint directory (built unless it holds config.json)")
    ap.add_argument("--json", required=True, help="where the measurements go")
    ap.add_argument("--layers", type=int, default=None, help="Thinker layers (same widths; quick checks)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--speech-seconds", type=float, default=2.0)
    ap.add_argument("--audio-chunk-frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu-kernel", default="a8", choices=["a8", "bf16", "torch"],
                    help="the CPU int4 kernel (omni.quant.set_cpu_kernel): omni's a8 or bf16 mode, or torch's")
    ap.add_argument("--compile", action="store_true", help="decode through generate's compiled step (compile=True)")
    ap.add_argument("--stage", default="all", choices=["all", "build", "run"])
    args = ap.parse_args()
    result = {"preset": args.preset, "quantize": args.quantize, "group_size": args.group_size, "scope": args.scope,
              "lm_head": args.lm_head if args.scope == "wide" else "bf16",
              "layers": args.layers, "torch": torch.__version__, "threads": args.threads or torch.get_num_threads(),
              "cpu_kernel": args.cpu_kernel, "compile": args.compile}
    if args.stage in ("all", "build"):
        if os.path.exists(os.path.join(args.out, "config.json")):
            print(f"{args.out} holds a checkpoint already: reusing it (delete it to rebuild)")
        else:
            result.update(build(args, config_of(args.preset, args.layers)))
            print(json.dumps(result, indent=1), flush=True)
    if args.stage == "all":  # a fresh process, so that nothing of the build is resident
        part = args.json + ".run"
        cmd = [sys.executable, __file__, *sys.argv[1:], "--stage", "run", "--json", part]
        subprocess.run(cmd, check=True)
        with open(part) as f:
            result.update(json.load(f))
        os.remove(part)
    elif args.stage == "run":
        result = run(args)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
