"""Train the tiny Talker from random weights to speak digit strings in a toy codec, then learn a new voice.

    python examples/train_talker_digits.py                 # the measured run of docs/training.md, curve in docs/
    python examples/train_talker_digits.py --steps 300 --voices 3 --timbre-bits 2 --max-digits 3 --eval-size 24

The toy codec: a digit is spoken as a fixed code pattern of --frames frames x all G codebooks (G = 16 in the tiny
preset), and a reply "3 1 4" as the concatenation of its digits' patterns. The patterns depend on the voice, the
way a speaker's timbre shows in a real codec: for every codebook g, digit d and frame j there are two random
codes ("timbres" 0 and 1), and a voice is --timbre-bits bits, codebook g using bit g % bits. So each voice has
its own random patterns, and a voice never heard in training is a new combination of timbres the Talker has
produced before. With 2 frames per digit the reply's text track ("3 1 4": digit, space, digit, ...) arrives one
token per frame, in step with the digits spoken.

Part 1, the Talker learns to speak. The `tiny` preset, randomly initialised, with --voices preset voices added to
its config (speaker ids 2301..). The Thinker stays frozen (it only supplies the embeddings and hidden states the
Talker reads); the Talker and its code predictor learn with `omni.training.speech_loss`, teacher-forced on a batch
of one voice per step. The prompt is a fixed user turn ("read the numbers"), so the digits reach the Talker only
through the reply's text track, as in generation. Evaluation: greedy generation (`speak(..., do_sample=False)`)
on held-out strings (never trained on), every voice; a frame counts when all G codes equal the target's; frame
accuracy = right frames / target frames (frames missing or past the target's end count as wrong).

Part 2, a new voice. `omni.training.learn_voice` learns one speaker vector for a held-out timbre combination from
--voice-examples strings spoken in it, everything else frozen; the same evaluation on held-out strings, and the
trained voices' greedy codes are compared before and after: they must be bit-identical. One vector can only ask
the Talker for what it has learned to produce: trained on 12 of 16 combinations (4 bits) the Talker keeps its
voices as 12 separate points and no vector reaches a 13th (frame accuracy 0.03); trained on 48 of 64 (6 bits, the
defaults) it has to read the voice bit by bit, and a new combination is one vector away (docs/training.md).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time

import numpy as np
import torch

import omni
from omni.models.qwen3_omni.speech import speak
from omni.training import freeze, learn_voice, speech_loss

# the tiny preset's byte-level tokenizer (omni.demo.tiny_tokenizer_files): '0' is 48, ' ' is 32
IM_START, IM_END, NL, USER, ASSISTANT = 257, 258, 10, 296, 304
PROMPT = [IM_START, USER, NL, *b"read the numbers", IM_END, NL, IM_START, ASSISTANT, NL]
FIRST_VOICE_ID = 2301  # the tiny preset's codec control range holds its three presets here; ours replace them


# -- the toy codec -----------------------------------------------------------------------------------------------

class ToyCodec:
    """Digit patterns per voice: timbres (G, 10 digits, frames, 2) random codes; a voice is `bits` timbre bits,
    codebook g taking bit g % bits. Code 0 lies below the Talker's control ids (< 2048 in the tiny preset),
    codes 1.. inside the code predictor's vocabulary."""

    def __init__(self, groups: int, frames: int, vocab: int, seed: int, bits: int = 4):
        g = torch.Generator().manual_seed(seed)
        self.frames, self.bits = frames, bits
        self.timbres = torch.randint(0, vocab, (groups, 10, frames, 2), generator=g)

    def speak(self, digits: str, voice: torch.Tensor) -> torch.Tensor:
        """The codes (G, frames * len(digits)) of a digit string in a voice (its timbre bits (bits,))."""
        G = self.timbres.shape[0]
        per_group = voice[torch.arange(G) % self.bits]  # (G,) the timbre each codebook uses
        per_digit = [self.timbres[torch.arange(G), int(d), :, per_group] for d in digits]  # each (G, frames)
        return torch.cat(per_digit, 1)


def voice_bits(codec: ToyCodec, n: int, seed: int) -> list[torch.Tensor]:
    """n + 1 distinct timbre combinations (of 2 ** bits): n for training, the last one held out (learned in part
    2). Every timbre bit takes both values among the training voices."""
    combos = [torch.tensor([(i >> b) & 1 for b in range(codec.bits)]) for i in range(2 ** codec.bits)]
    if n + 1 > len(combos):
        raise SystemExit(f"--voices {n} needs more than {codec.bits} timbre bits ({len(combos)} voices in all)")
    rng = random.Random(seed)
    while True:
        bits = rng.sample(combos, n + 1)
        train = torch.stack(bits[:n])
        if n < 2 or bool(((train.min(0).values == 0) & (train.max(0).values == 1)).all()):
            return bits


def digit_strings(n: int, lengths: tuple[int, int], rng: random.Random, exclude=frozenset()) -> list[str]:
    out = []
    while len(out) < n:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(*lengths)))
        if s not in exclude:
            out.append(s)
    return out


def make_batch(strings: list[str], codec: ToyCodec, bits: torch.Tensor):
    """(prompt batch, reply (B, N), codes (B, G, F), lengths (B,)) for strings spoken in one voice."""
    replies = [list(" ".join(s).encode()) + [IM_END] for s in strings]
    N = max(map(len, replies))
    reply = torch.tensor([r + [IM_END] * (N - len(r)) for r in replies])  # padded after the end token
    spoken = [codec.speak(s, bits) for s in strings]
    F = max(c.shape[1] for c in spoken)
    codes = torch.stack([torch.nn.functional.pad(c, (0, F - c.shape[1])) for c in spoken])
    lengths = torch.tensor([c.shape[1] for c in spoken])
    ids = torch.tensor([PROMPT] * len(strings))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, reply, codes, lengths


# -- model and evaluation ----------------------------------------------------------------------------------------

def build(n_voices: int, seed: int):
    """The tiny preset with `n_voices` preset voices (voice0..), Thinker and Talker, random weights."""
    torch.manual_seed(seed)
    config = omni.OmniConfig.from_name("tiny")
    config.talker_config.speaker_id = {f"voice{i}": FIRST_VOICE_ID + i for i in range(n_voices)}
    model = omni.OmniModel(config, components=("thinker", "talker"))
    freeze(model, "thinker")
    return model


@torch.no_grad()
def generate(model, strings: list[str], voice, codec: ToyCodec, batch_size: int = 32) -> list[torch.Tensor]:
    """Greedy codes (G, frames) for each string in `voice` (a name)."""
    model.eval()
    out = []
    for start in range(0, len(strings), batch_size):
        chunk = strings[start:start + batch_size]
        batch, reply, _, lengths = make_batch(chunk, codec, torch.zeros(codec.timbres.shape[0], dtype=torch.long))
        codes = speak(model, batch, reply, voice=voice, thinker_eos_token_ids=(IM_END,), do_sample=False,
                      repetition_penalty=1.0, max_frames=int(lengths.max()) + 4)
        out += [codes.codes[b, :, :int(n)] for b, n in enumerate(codes.lengths)]
    return out


def frame_accuracy(generated: list[torch.Tensor], strings: list[str], codec: ToyCodec, bits) -> tuple[float, float]:
    """(right frames / target frames, share of strings whose codes are exactly the target's)."""
    right = total = exact = 0
    for codes, s in zip(generated, strings):
        target = codec.speak(s, bits)
        n = min(codes.shape[1], target.shape[1])
        right += int((codes[:, :n] == target[:, :n]).all(0).sum())
        total += target.shape[1]
        exact += codes.shape == target.shape and bool((codes == target).all())
    return right / total, exact / len(strings)


def evaluate(model, strings, codec, bits, names) -> dict:
    scores = [frame_accuracy(generate(model, strings, name, codec), strings, codec, b) for name, b in zip(names, bits)]
    return {"frame_accuracy": float(np.mean([s[0] for s in scores])), "exact": float(np.mean([s[1] for s in scores])),
            "per_voice": [round(s[0], 4) for s in scores]}


# -- part 1: the Talker learns to speak --------------------------------------------------------------------------

def train_talker(model, codec, bits, names, train_strings, eval_strings, args, history) -> None:
    params = [p for p in model.talker.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    rng = random.Random(args.seed)
    started = time.time()
    smooth = None
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            result = evaluate(model, eval_strings, codec, bits, names)
            history["eval_step"].append(step)
            history["accuracy"].append(result["frame_accuracy"])
            print(f"step {step:5d}  {time.time() - started:6.0f} s  loss {smooth or float('nan'):.3f}  held-out frame "
                  f"accuracy {result['frame_accuracy']:.3f}  exact {result['exact']:.3f}", flush=True)
            history["final"] = result
        if step == args.steps:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        voices = rng.sample(range(len(names)), min(args.voices_per_step, len(names)))
        for v in voices:  # speech_loss speaks one voice per call: a sub-batch per voice
            strings = rng.sample(train_strings, args.batch_size // len(voices))
            batch, reply, codes, lengths = make_batch(strings, codec, bits[v])
            part = speech_loss(model, batch, reply, codes, lengths, voice=names[v], thinker_eos_token_ids=(IM_END,))
            (part.loss / len(voices)).backward()
            loss += part.loss.item() / len(voices)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
        history["step"].append(step + 1)
        history["loss"].append(loss)
    history["talker_seconds"] = time.time() - started


# -- part 2: a new voice -----------------------------------------------------------------------------------------

def new_voice(model, codec, bits, names, train_strings, eval_strings, args, history) -> None:
    held_out = bits[-1]
    before = {name: generate(model, eval_strings, name, codec) for name in names}
    rng = random.Random(args.seed + 3)
    strings = rng.sample(train_strings, args.voice_examples)
    examples = []
    for start in range(0, len(strings), args.batch_size):
        batch, reply, codes, lengths = make_batch(strings[start:start + args.batch_size], codec, held_out)
        examples.append({"batch": batch, "reply": reply, "codes": codes, "lengths": lengths})
    started = time.time()
    report = learn_voice(model, "newvoice", examples, steps=args.voice_steps, lr=args.voice_lr,
                         thinker_eos_token_ids=(IM_END,))
    history["voice_seconds"] = time.time() - started
    history["voice_loss"] = report.losses
    acc, exact = frame_accuracy(generate(model, eval_strings, "newvoice", codec), eval_strings, codec, held_out)
    after = {name: generate(model, eval_strings, name, codec) for name in names}
    identical = all(torch.equal(a, b) for name in names for a, b in zip(before[name], after[name]))
    history["voice"] = {"frame_accuracy": acc, "exact": exact, "others_identical": identical,
                        "examples": len(strings), "steps": args.voice_steps}
    print(f"new voice: {args.voice_steps} steps on {len(strings)} strings in {history['voice_seconds']:.0f} s, "
          f"held-out frame accuracy {acc:.3f}, exact {exact:.3f}; the {len(names)} trained voices' codes "
          f"{'unchanged (bit-identical)' if identical else 'CHANGED'}", flush=True)


def plot(history: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    a.plot(history["step"], history["loss"], lw=0.5, alpha=0.4, label="batch")
    k = 25
    if len(history["loss"]) > k:
        smooth = np.convolve(history["loss"], np.ones(k) / k, mode="valid")
        a.plot(history["step"][k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    a.set(xlabel="step", ylabel="speech loss (talker + aux + code predictor)", yscale="log", title="Talker training")
    a.legend()
    b.plot(history["eval_step"], history["accuracy"], marker="o")
    b.axhline(0.95, color="grey", ls="--", lw=0.8)
    b.set(xlabel="step", ylabel="frame accuracy (all 16 codes)", ylim=(0, 1.02), title="held-out strings, greedy")
    if history.get("voice_loss"):
        c.plot(range(1, len(history["voice_loss"]) + 1), history["voice_loss"])
        c.set(xlabel="step", ylabel="speech loss", yscale="log",
              title=f"learn_voice: held-out accuracy {history['voice']['frame_accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2400, help="Talker optimizer steps")
    p.add_argument("--voices", type=int, default=48, help="voices trained in part 1 (< 2 ** timbre-bits)")
    p.add_argument("--timbre-bits", type=int, default=6, help="what a voice is: one timbre per bit, codebook g "
                   "using bit g %% bits")
    p.add_argument("--frames", type=int, default=2, help="codec frames per spoken digit (>= 2)")
    p.add_argument("--min-digits", type=int, default=1)
    p.add_argument("--max-digits", type=int, default=5)
    p.add_argument("--train-size", type=int, default=4000, help="training strings (held-out ones are never among them)")
    p.add_argument("--eval-size", type=int, default=32, help="held-out strings, spoken in every voice")
    p.add_argument("--batch-size", type=int, default=16, help="strings per step, split over --voices-per-step")
    p.add_argument("--voices-per-step", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=400)
    p.add_argument("--voice-steps", type=int, default=150, help="learn_voice steps (0: skip part 2)")
    p.add_argument("--voice-lr", type=float, default=0.1)
    p.add_argument("--voice-examples", type=int, default=64, help="strings spoken in the new voice to learn from")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=os.path.join(os.path.dirname(__file__), "..", "docs", "talker_digits_curve.png"))
    p.add_argument("--save", default=None, help="also write the trained model (with its new voice) here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.frames < 2:
        raise SystemExit("--frames must be >= 2: the Talker reads two text tokens per digit ('3 ')")
    torch.set_num_threads(args.threads)
    started = time.time()
    model = build(args.voices, args.seed)
    tk = model.config.talker_config
    vocab = min(tk.text_config.vocab_size - 1024, tk.code_predictor_config.vocab_size)
    codec = ToyCodec(tk.num_code_groups, args.frames, vocab, args.seed, args.timbre_bits)
    bits = voice_bits(codec, args.voices, args.seed + 1)
    names = [f"voice{i}" for i in range(args.voices)]
    rng = random.Random(args.seed + 2)
    eval_strings = digit_strings(args.eval_size, (max(args.min_digits, 2), args.max_digits), rng)
    train_strings = digit_strings(args.train_size, (args.min_digits, args.max_digits), rng, set(eval_strings))
    history = {"step": [], "loss": [], "eval_step": [], "accuracy": []}
    train_talker(model, codec, bits[:-1], names, train_strings, eval_strings, args, history)
    if args.voice_steps:
        new_voice(model, codec, bits, names, train_strings, eval_strings, args, history)
    history["seconds"] = time.time() - started
    history["cpu_seconds"] = sum(os.times()[:2])
    final = history["final"]
    print(f"done in {history['seconds'] / 60:.1f} min ({history['cpu_seconds'] / 60:.1f} CPU min, {args.threads} "
          f"thread(s), load average {os.getloadavg()[1]:.1f}): Talker held-out frame accuracy "
          f"{final['frame_accuracy']:.3f} (per voice {final['per_voice']}), exact {final['exact']:.3f}")
    if args.plot:
        plot(history, args.plot)
        print(f"curve: {os.path.normpath(args.plot)}")
    if args.save:
        omni.save(model, args.save)
    return history


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
