"""Qwen2.5-Omni streaming speech: how close the streamed waveform is to the whole decode, and how soon it starts.

    python benchmarks/stream_qwen2_5.py                      # tiny and reference-size Token2Wav, tiny end to end
    python benchmarks/stream_qwen2_5.py --sizes tiny         # seconds
    python benchmarks/stream_qwen2_5.py --json out.json

For each reply (random codes, a fixed starting noise shared by both decodes):
- full      `Token2Wav.forward` on all the codes: what `generate(speak=True)` waits for after the Talker;
- streamed  `Token2Wav.stream_decode` fed code by code (the codes all there, so this is the decoder's own latency):
            time to the first waveform piece, total time, and the SNR of the concatenated pieces against the full
            decode (dB; the full decode is the signal);
- ratios    first audio / full, and streamed total / full (the price of the overlapping windows).
End to end (tiny only: the released Thinker and Talker do not fit a CPU benchmark): `model.stream(speak=True)`
vs `model.generate(speak=True)` with the same seed: both run the Thinker and the Talker (greedy, its stop codes
silenced so the reply has the asked length), and the first audio piece is compared with the whole call.
Weights are random (seeded): the SNR measures the decoder's arithmetic on these weights, not a trained voice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the tiny configs and the tiny speaking model

from omni.models.qwen2_5_omni.token2wav import Token2Wav, Token2WavConfig  # noqa: E402

# Tiny widths (the Token2Wav tests' config) with the release's block geometry: 24 mel frames per DiT block, so a
# chunk (72 frames) is longer than the vocoder context (20) as in the release. (With the tests' 4-frame blocks a
# chunk is 12 frames and the first piece needs two windows.) Positions for the whole decode of the longest reply.
TINY_GEOMETRY = {"block_size": 24, "max_position_embeddings": 4096}
REPLIES = {"tiny": (100, 200, 400), "reference": (150, 250)}  # codes (50 per second of speech)


def snr_db(streamed: torch.Tensor, full: torch.Tensor) -> float:
    return (10 * torch.log10(full.pow(2).sum() / (streamed - full).pow(2).sum().clamp_min(1e-30))).item()


def build(size: str) -> Token2Wav:
    torch.manual_seed(0)
    if size == "tiny":
        from test_token2wav import BIGVGAN, DIT, _randomise

        dit = {**DIT, **TINY_GEOMETRY}
        return _randomise(Token2Wav(Token2WavConfig.from_dict({"dit_config": dit, "bigvgan_config": BIGVGAN})), 0)
    return Token2Wav(Token2WavConfig.from_dict({})).eval()  # the released sizes, default initialisation


def one_reply(t2w: Token2Wav, n_codes: int, seed: int, num_steps: int, reps: int) -> dict:
    c = t2w.cfg.dit_config
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, c.num_embeds, (1, n_codes), generator=g)
    noise = torch.randn(1, n_codes * c.repeats, c.mel_dim, generator=g)
    voice = dict(conditioning=torch.randn(c.enc_emb_dim, generator=g),
                 reference_mel=torch.randn(300, c.mel_dim, generator=g), noise=noise, num_steps=num_steps)
    fulls, firsts, totals = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        full = t2w(codes, **voice)
        fulls.append(time.perf_counter() - t0)
        t0, pieces, first = time.perf_counter(), [], None
        for piece in t2w.stream_decode(codes.split(1, 1), **voice):
            first = first if first is not None else time.perf_counter() - t0
            pieces.append(piece)
        totals.append(time.perf_counter() - t0)
        firsts.append(first)
    streamed = torch.cat(pieces, -1)
    full_s, first_s, total_s = (statistics.median(v) for v in (fulls, firsts, totals))
    return dict(codes=n_codes, seconds_of_speech=n_codes / 50, full_s=full_s, first_audio_s=first_s,
                stream_total_s=total_s, first_over_full=first_s / full_s, total_over_full=total_s / full_s,
                snr_db=snr_db(streamed, full), pieces=len(pieces),
                clipped=float((full.abs() >= 0.999).float().mean()), rms=float(full.pow(2).mean().sqrt()))


def end_to_end(n_codes: int, seed: int, num_steps: int) -> dict:
    """The tiny speaking model: model.stream(speak=True) vs model.generate(speak=True), same seed."""
    from test_stream_qwen2_5 import CONVERSATION, tiny_speaking_qwen2_5

    model = tiny_speaking_qwen2_5(tempfile.mkdtemp(prefix="omni-q25-"), dit=TINY_GEOMETRY)
    tk = model.config.talker_config
    with torch.no_grad():  # greedy and never a stop code: the reply is exactly n_codes long
        model.talker.codec_head.weight[[tk.tts_codec_pad_token_id, tk.tts_codec_end_token_id]] = 0.0
    opts = dict(max_new_tokens=8, seed=seed, voice="chelsie",
                speech={"do_sample": False, "max_new_tokens": n_codes, "num_steps": num_steps})
    model.generate(CONVERSATION, speak=True, **opts)  # warm-up
    t0 = time.perf_counter()
    full = model.generate(CONVERSATION, speak=True, **opts)
    full_s = time.perf_counter() - t0
    t0, first, pieces = time.perf_counter(), None, []
    for piece in model.stream(CONVERSATION, speak=True, **opts):
        if torch.is_tensor(piece):
            first = first if first is not None else time.perf_counter() - t0
            pieces.append(piece)
    total_s = time.perf_counter() - t0
    n = int(full.audio_lengths[0])
    streamed = torch.cat(pieces)
    assert streamed.shape == (n,), (streamed.shape, n)
    return dict(codes=n // model.token2wav.samples_per_code, full_s=full_s, first_audio_s=first,
                stream_total_s=total_s, first_over_full=first / full_s, total_over_full=total_s / full_s,
                snr_db=snr_db(streamed, full.audio[0, 0, :n]), pieces=len(pieces))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "reference"], choices=["tiny", "reference"])
    p.add_argument("--num-steps", type=int, default=10, help="ODE time points (the release's 10)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1 on a busy box)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"threads": torch.get_num_threads(), "num_steps": args.num_steps}
    print(f"{'case':<22} {'codes':>5} {'full s':>8} {'first s':>8} {'first/full':>10} {'stream/full':>11} "
          f"{'SNR dB':>7} {'pieces':>6}")
    for size in args.sizes:
        t2w = build(size)
        rows = results[size] = []
        for i, n in enumerate(REPLIES[size]):
            rows.append(one_reply(t2w, n, seed=i, num_steps=args.num_steps, reps=3 if size == "tiny" else 1))
            _print(f"{size} Token2Wav", rows[-1])
        del t2w
        if size == "tiny":
            rows = results["tiny end to end"] = []
            for i, n in enumerate(REPLIES["tiny"]):
                rows.append(end_to_end(n, seed=i, num_steps=args.num_steps))
                _print("tiny end to end", rows[-1])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


def _print(case: str, r: dict) -> None:
    print(f"{case:<22} {r['codes']:>5} {r['full_s']:>8.3f} {r['first_audio_s']:>8.3f} {r['first_over_full']:>10.1%} "
          f"{r['total_over_full']:>11.2f} {r['snr_db']:>7.1f} {r['pieces']:>6}", flush=True)


if __name__ == "__main__":
    main()
