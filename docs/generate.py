"""Regenerate the generated blocks of the docs from real runs of the code.

    python docs/generate.py            rewrite the blocks in place
    python docs/generate.py --check    exit 1 (and print a diff) when a block is out of date

A block is the text between `<!-- generated:NAME -->` and `<!-- /generated -->` in a page; everything outside the
markers is hand-written and left alone. The blocks are:

    request      docs/architecture.md   the processor's batch for the demo request (image + audio + video + text)
    shapes       docs/architecture.md   tensor shapes at every stage: traced from a run of the random `tiny`
                                        model, and computed for Qwen3-Omni-30B-A3B on the meta device
    parameters   docs/architecture.md   parameters per component (total and active per token), every release preset
    positions    docs/positions.md      a TMRoPE worked example computed by omni.positions

Everything is seeded and nothing measured (no timings), so the output is the same on every run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import re
import sys
import tempfile

import torch
import torch.nn.functional as F

import omni
from omni.cli import parameter_table
from omni.config import PRESETS, OmniConfig
from omni.demo import build_tiny_checkpoint, synthetic_media
from omni.model import OmniModel
from omni.nn.attention import segment_groups
from omni.nn.moe import Experts
from omni.models.qwen3_omni.speech import speak

DOCS = os.path.dirname(os.path.abspath(__file__))
FULL = "qwen3-omni-30b-a3b"
NEW_TOKENS = 8  # reply length of the traced run (forced: eos is masked until then)
SPEECH_FRAMES = 6  # codec frames of the traced run (greedy)

# ---------------------------------------------------------------------------------------------------------------
# Tracing: forward hooks record (first input shape, output shape) of every call of the watched modules.


def _shape(x):
    if torch.is_tensor(x):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and x:
        return _shape(x[0])
    if dataclasses.is_dataclass(x):
        for field in ("last_hidden_state", "logits"):
            if torch.is_tensor(getattr(x, field, None)):
                return tuple(getattr(x, field).shape)
    return None


class Probe:
    """Collects the call shapes of named submodules: calls[path] = [(in shape, out shape), ...] in call order."""

    def __init__(self):
        self.calls: dict[str, list] = {}
        self.files: dict[str, str] = {}  # path -> the source file of the watched module's class

    @contextlib.contextmanager
    def watch(self, model, paths):
        handles = []
        for path in paths:
            module = model.get_submodule(_resolve(model, path))
            cls = type(module)  # omni's own: its file; torch's: its name
            in_omni = cls.__module__.startswith("omni.")
            self.files[path] = cls.__module__.replace(".", "/") + ".py" if in_omni else f"torch.nn.{cls.__name__}"

            def hook(mod, args, out, path=path):
                self.calls.setdefault(path, []).append((_shape(args[0]) if args else None, _shape(out)))

            handles.append(module.register_forward_hook(hook))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def get(self, path, call=0):
        calls = self.calls.get(path, [])
        return calls[call] if call < len(calls) else (None, None)


def _resolve(model, path: str) -> str:
    """`blocks.-1` -> the last block's index."""
    parts = path.split(".")
    for i, p in enumerate(parts):
        if p.startswith("-"):
            parent = model.get_submodule(".".join(parts[:i]))
            parts[i] = str(len(parent) + int(p))
    return ".".join(parts)


# (what happens, watched module, which call)
THINKER_ROWS = [
    ("image: 16x16x2 patches embedded", "thinker.vision.patch_embed", 0),
    ("image: after the vision blocks", "thinker.vision.blocks.-1", 0),
    ("image: 2x2 patches merged into Thinker-width tokens", "thinker.vision.merger", 0),
    ("image: one DeepStack level (added after decoder layer k)", "thinker.vision.deepstack_mergers.0", 0),
    ("video: 2x2 patches merged into tokens", "thinker.vision.merger", 1),
    ("audio: conv stem, per 1 s chunk (chunks, steps, width)", "thinker.audio.conv_out", 0),
    ("audio: encoder layers over packed tokens (attention inside windows)", "thinker.audio.layers.-1", 0),
    ("audio: projected to the Thinker width", "thinker.audio.proj2", 0),
    ("token embeddings (media written into placeholders)", "thinker.embed_tokens", 0),
    ("TMRoPE cos (sin alike) from (3, B, T) positions", "thinker.decoder.rope", 0),
    ("layer 0 attention", "thinker.decoder.layers.0.attn", 0),
    ("layer 0 router logits (tokens, experts)", "thinker.decoder.layers.0.ffn.router", 0),
    ("layer 0 routed experts (top-k weighted sum)", "thinker.decoder.layers.0.ffn.experts", 0),
    ("final norm", "thinker.decoder.norm", 0),
    ("next-token logits", "thinker.lm_head", 0),
]
TALKER_ROWS = [
    ("Thinker embeddings of text -> Talker width", "talker.text_projection", 0),
    ("Thinker layer-k states of media -> Talker width", "talker.hidden_projection", 0),
    ("Talker prefill (user turn + 9 assistant positions)", "talker.decoder", 0),
    ("Talker shared expert (every MoE layer has one)", "talker.decoder.layers.0.ffn.shared_expert", 0),
    ("code 0 logits (codec vocabulary)", "talker.codec_head", 0),
    ("Talker decode step (one frame)", "talker.decoder", 1),
    ("code predictor: [Talker state, embed(code 0)]", "talker.code_predictor.decoder", 0),
    ("code predictor: code 1 logits", "talker.code_predictor.lm_heads.0", 0),
]
CODE2WAV_ROWS = [
    ("codes embedded, one table block per codebook", "code2wav.code_embedding", 0),
    ("sliding-window transformer (frames, width)", "code2wav.transformer", 0),
    ("upsample stage 1 (x2 in time, then a ConvNeXt block)", "code2wav.upsample.0.1", 0),
    ("upsample stage 2 (x2 in time, then a ConvNeXt block)", "code2wav.upsample.1.1", 0),
    ("vocoder block 1", "code2wav.decoder.1", 0),
    ("vocoder block 2", "code2wav.decoder.2", 0),
    ("vocoder block 3", "code2wav.decoder.3", 0),
    ("vocoder block 4", "code2wav.decoder.4", 0),
    ("waveform (24 kHz, clamped to [-1, 1])", "code2wav.decoder.-1", 0),
]
ALL_ROWS = THINKER_ROWS + TALKER_ROWS + CODE2WAV_ROWS


def _paths(rows):
    return sorted({path for _, path, _ in rows})


def demo_conversation():
    image, audio, video = synthetic_media()
    return [{"role": "user", "content": [
        {"type": "image", "image": image},
        {"type": "audio", "audio": audio},
        {"type": "video", "video": video},
        {"type": "text", "text": "What do you see and hear?"},
    ]}]


def trace_tiny(directory: str):
    """A real run of the random tiny model on the demo request; returns (probe, batch, tokens, codes)."""
    build_tiny_checkpoint(directory, seed=0)
    model = omni.load(directory, quiet=True)
    probe = Probe()
    batch = model.processor([demo_conversation()])
    with torch.no_grad():
        with probe.watch(model, [p for p in _paths(THINKER_ROWS) if p != "thinker.audio.conv_out"]):
            model.thinker(**batch)
        with probe.watch(model, ["thinker.audio.conv_out", "thinker.audio.conv1"]):
            model.thinker.audio(batch["input_features"], batch["feature_attention_mask"])
        tokens = model.generate(batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        with probe.watch(model, _paths(TALKER_ROWS)):
            codes = speak(model, batch, tokens, max_frames=SPEECH_FRAMES, do_sample=False).codes
        with probe.watch(model, _paths(CODE2WAV_ROWS)):
            model.code2wav(codes)
    return probe, batch, tokens, codes


def _check_same_layout(tiny: OmniConfig, full: OmniConfig) -> None:
    """The full-size run reuses the tiny run's token layout; that is only right if these agree."""
    pairs = {
        "vision patch_size": lambda c: c.thinker.vision_config.patch_size,
        "vision temporal_patch_size": lambda c: c.thinker.vision_config.temporal_patch_size,
        "vision spatial_merge_size": lambda c: c.thinker.vision_config.spatial_merge_size,
        "audio num_mel_bins": lambda c: c.thinker.audio_config.num_mel_bins,
        "audio n_window": lambda c: c.thinker.audio_config.n_window,
        "audio n_window_infer": lambda c: c.thinker.audio_config.n_window_infer,
        "talker num_code_groups": lambda c: c.talker.num_code_groups,
        "code2wav upsample_rates": lambda c: c.code2wav.upsample_rates,
    }
    for name, get in pairs.items():
        if get(tiny) != get(full):
            raise SystemExit(f"tiny and {FULL} differ in {name}; the shape table assumes the same token layout")


def _meta(shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def trace_full(tiny: Probe, batch, codes) -> Probe:
    """The same stages on the full-size model, built on the meta device (no memory, no weights): every module runs
    on meta tensors shaped like the tiny run's, with the full-size widths. Data-dependent control values (image /
    video grids, chunk and window counts, sequence lengths) come from the tiny run, whose token layout is the
    release's (same patch, merge, mel and window sizes; checked)."""
    cfg = OmniConfig.from_name(FULL)
    _check_same_layout(OmniConfig.from_name("tiny"), cfg)
    with torch.device("meta"):
        model = OmniModel(cfg)
    for m in model.modules():  # routing is data-dependent except on the static-shape `gather` path
        if isinstance(m, Experts):
            m.choose_path = lambda x, top_k: "gather"
    th, tk, c2w = model.thinker, model.talker, model.code2wav
    D, Da = cfg.thinker.text_config.hidden_size, cfg.thinker.audio_config.d_model
    Dk = cfg.talker.text_config.hidden_size
    B, T = batch["input_ids"].shape
    probe = Probe()
    with torch.no_grad():
        with probe.watch(model, _paths(THINKER_ROWS)):
            th.vision(_meta(batch["pixel_values"].shape), batch["image_grid_thw"])
            th.vision(_meta(batch["pixel_values_videos"].shape), batch["video_grid_thw"])
            chunks, _, mels, steps = tiny.get("thinker.audio.conv1")[0]
            th.audio._conv_stem(_meta((chunks, mels, steps)))
            tokens, _ = tiny.get("thinker.audio.layers.-1")[0]
            x, one_window = _meta((tokens, Da)), segment_groups([tokens])
            for layer in th.audio.layers:
                x = layer(x, one_window)
            n_audio = tiny.get("thinker.audio.proj2")[1][0]
            th.audio.proj2(F.gelu(th.audio.proj1(th.audio.norm_out(_meta((n_audio, Da))))))
            h = th.embed_tokens(_meta((B, T), torch.long))
            h = th.decoder(h, _meta((3, B, T)), _meta((B, T), torch.long)).last_hidden_state
            th.lm_head(h)
        with probe.watch(model, _paths(TALKER_ROWS)):
            Dt = cfg.talker.thinker_hidden_size
            tk.text_projection(_meta((tiny.get("talker.text_projection")[0][0], Dt)))
            tk.hidden_projection(_meta((tiny.get("talker.hidden_projection")[0][0], Dt)))
            Tt = tiny.get("talker.decoder")[0][1]
            tk(_meta((B, Tt, Dk)), _meta((3, B, Tt)), _meta((B, Tt), torch.long))
            tk(_meta((B, 1, Dk)), _meta((3, B, 1)), _meta((B, 1), torch.long))
            y = tk.code_predictor(_meta((B, 2, Dk)))
            tk.code_predictor.logits(1, y[:, -1])
        with probe.watch(model, _paths(CODE2WAV_ROWS)):
            hidden = c2w.transformer(c2w.embed(_meta(tuple(codes.shape), torch.long)))
            c2w.vocode(hidden.transpose(1, 2))
    return probe


# ---------------------------------------------------------------------------------------------------------------
# The blocks


def _fmt(shape) -> str:
    return "-" if shape is None else str(tuple(shape))


def block_request(batch, tokens, codes) -> str:
    lines = ["| batch key | shape | dtype |", "|---|---|---|"]
    for k, v in batch.items():
        if torch.is_tensor(v):
            lines.append(f"| `{k}` | `{_fmt(v.shape)}` | {str(v.dtype).replace('torch.', '')} |")
    lines.append("")
    lines.append(f"The traced run then generates `{_fmt(tokens.shape)}` new tokens (greedy, {NEW_TOKENS} forced) and "
                 f"`{_fmt(codes.shape)}` speech codes (batch, codebooks, frames; greedy, at most {SPEECH_FRAMES} "
                 "frames).")
    return "\n".join(lines)


def block_shapes(tiny: Probe, full: Probe) -> str:
    out = []
    for title, rows in (("Thinker", THINKER_ROWS), ("Talker and code predictor", TALKER_ROWS),
                        ("Code2Wav", CODE2WAV_ROWS)):
        out += [f"**{title}**", "",
                f"| stage | module (its class's file) | tiny: in -> out (traced) | {FULL}: in -> out (meta) |",
                "|---|---|---|---|"]
        for label, path, call in rows:
            cells = []
            for probe in (tiny, full):
                i, o = probe.get(path, call)
                cells.append(f"`{_fmt(i)}` -> `{_fmt(o)}`")
            name = path + (f" (call {call + 1})" if call else "")
            where = tiny.files[path].removeprefix("omni/")
            out.append(f"| {label} | `{name}` (`{where}`) | {cells[0]} | {cells[1]} |")
        out.append("")
    return "\n".join(out).rstrip()


def _millions(n: int) -> str:
    return f"{n / 1e6:,.1f} M" if n < 1e9 else f"{n / 1e9:,.2f} B"


def block_parameters() -> str:
    out = []
    for name in sorted(p for p in PRESETS if not p.startswith("tiny")):
        try:
            rows = parameter_table(OmniConfig.from_name(name))
        except omni.OmniError as e:  # a release whose config is known before its model code lands
            out += [f"**{name}**: no table yet, this omni version cannot build the model ({type(e).__name__}).", ""]
            continue
        out += [f"**{name}**", "", "| component | parameters | active per token |", "|---|---:|---:|"]
        for comp, total, active in rows:
            out.append(f"| {comp} | {total:,} ({_millions(total)}) | {active:,} ({_millions(active)}) |")
        total, active = sum(r[1] for r in rows), sum(r[2] for r in rows)
        out += [f"| **total** | **{total:,} ({_millions(total)})** | **{active:,} ({_millions(active)})** |", ""]
        cfg, counted = OmniConfig.from_name(name), " ".join(r[0] for r in rows)
        missing = [part for part in omni.model.all_components()[1:]
                   if getattr(cfg, f"{part}_config", None) is not None and part not in counted]
        if missing:  # described by the config, not built by this omni version yet
            out += [f"Not counted (omni does not build it yet): {', '.join(missing)}.", ""]
    return "\n".join(out).rstrip()


def block_positions() -> str:
    from omni.positions import rope_index_from_config
    from omni.interleave import interleave_tokens_by_time as interleave_video_audio

    th = OmniConfig.from_name("tiny").thinker
    name = {th.vision_start_token_id: "<vs>", th.vision_start_token_id + 1: "<ve>",
            th.audio_start_token_id: "<as>", th.audio_start_token_id + 1: "<ae>",
            th.image_token_id: "<image>", th.video_token_id: "<video>", th.audio_token_id: "<audio>"}
    code = {v: k for k, v in name.items()}

    def table(tokens, **media):
        ids = torch.tensor([[code.get(t, ord(t[0])) for t in tokens]])
        pos, delta = rope_index_from_config(th, ids, **media)
        lines = ["| # | token | t | h | w |", "|---:|---|---:|---:|---:|"]
        for i, tok in enumerate(tokens):
            t, h, w = (f"{v:g}" for v in pos[:, 0, i].tolist())
            lines.append(f"| {i} | `{tok}` | {t} | {h} | {w} |")
        return "\n".join(lines), float(delta[0, 0]), len(tokens)

    # text, an image of 4x4 patches (2x2 tokens), 3 audio tokens, a video of 2 grids of 4x4 patches, text
    seconds = 2.0  # 2 frames per temporal grid at the processor's default 1 fps
    layout = (["a", "b", "<vs>"] + ["<image>"] * 4 + ["<ve>", "<as>"] + ["<audio>"] * 3 + ["<ae>", "<vs>"]
              + ["<video>"] * 8 + ["<ve>", "c"])
    t1, d1, n1 = table(layout, image_grid_thw=torch.tensor([[1, 4, 4]]), video_grid_thw=torch.tensor([[2, 4, 4]]),
                       video_second_per_grid=torch.tensor([seconds]), audio_seqlens=torch.tensor([3]))
    # a video with its sound track inside: 3 grids of 2x2 patches (1 token each) at 8 fps, 8 audio tokens
    fast = 0.25
    per_s = th.position_id_per_seconds
    body = interleave_video_audio((3, 2, 2), 8, fast, per_s, 2, "<video>", "<audio>")
    t2, d2, n2 = table(["<vs>", "<as>"] + body + ["<ae>", "<ve>"], video_grid_thw=torch.tensor([[3, 2, 2]]),
                       video_second_per_grid=torch.tensor([fast]), audio_seqlens=torch.tensor([8]),
                       use_audio_in_video=True)
    return "\n".join([
        "Two words, an image (grid 1x4x4 patches = 2x2 tokens), 3 audio tokens, a video (grid 2x4x4 = 2 frames "
        f"of 2x2 tokens, {seconds:g} s per grid), a word; `position_id_per_seconds` = {per_s:g}:", "",
        t1, "", f"rope delta = {d1:g}: a generated token after these {n1} sits at {n1} + {d1:g} = {n1 + d1:g} "
        "on all three rows.", "",
        f"A video with its sound track inside (`use_audio_in_video=True`): 3 grids of one token each, {fast:g} s "
        f"per grid, so at times 0, {fast * per_s:g}, {2 * fast * per_s:g} after the start, and 8 audio tokens at "
        "0..7, merged by time (video first on ties):", "",
        t2, "", f"rope delta = {d2:g} ({n2} tokens).",
    ])


# ---------------------------------------------------------------------------------------------------------------
# Writing / checking the pages

PAGES = {"architecture.md": ("request", "shapes", "parameters"), "positions.md": ("positions",)}
_BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def build_blocks() -> dict[str, str]:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tiny, batch, tokens, codes = trace_tiny(os.path.join(tmp, "tiny"))
    full = trace_full(tiny, batch, codes)
    return {
        "request": block_request(batch, tokens, codes),
        "shapes": block_shapes(tiny, full),
        "parameters": block_parameters(),
        "positions": block_positions(),
    }


def render(text: str, blocks: dict[str, str], page: str) -> str:
    found = set()

    def fill(m):
        found.add(m.group(2))
        if m.group(2) not in blocks:
            raise SystemExit(f"{page}: unknown generated block {m.group(2)!r}; known: {sorted(blocks)}")
        return m.group(1) + blocks[m.group(2)] + "\n" + m.group(4)

    text = _BLOCK.sub(fill, text)
    missing = set(PAGES[page]) - found
    if missing:
        raise SystemExit(f"{page}: markers for {sorted(missing)} are missing")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks instead of rewriting them")
    args = parser.parse_args(argv)
    blocks = build_blocks()
    stale = []
    for page in PAGES:
        path = os.path.join(DOCS, page)
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = render(old, blocks, page)
        if new == old:
            continue
        stale.append(page)
        if args.check:
            diff = difflib.unified_diff(old.splitlines(True), new.splitlines(True), page, page + " (new)")
            sys.stdout.writelines(diff)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
    if args.check and stale:
        print(f"\nstale: {', '.join(stale)}; run `python docs/generate.py` and commit the result", file=sys.stderr)
        return 1
    if not args.check:
        print("updated: " + (", ".join(stale) if stale else "nothing (already up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
