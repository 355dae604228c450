"""What quantization costs in quality, on the reference-size random Thinker (benchmarks/build.py "reference").

For a few random chat prompts the bf16 model answers greedily; int8 (per channel) and int4 (group 128) models run
teacher-forced on that same answer. Reported per scheme: the share of answer positions whose greedy token is the
bf16 one, the mean KL(bf16 || quantized) of the next-token distributions there, and how many tokens a free-running
greedy answer keeps identical before it first departs. `--lm-head` adds the lm_head quantized alone (int8 per
channel, int4 group 128; every other layer bf16). `--kernels` compares omni's two CPU int4 kernel modes on the int4
model through the decode path (one token per step from the KV cache, teacher-forced on the bf16 answer, so every
matrix runs the kernel): "bf16" (exact products) and "a8" (int8 activations), each against the bf16 model and
against each other.

    python benchmarks/quant_quality.py --out /tmp/qq --json benchmarks/results/quant_quality.json

Random weights make the logits flatter than a trained model's (small margins between the top tokens), so these
figures are a pessimistic check that the arithmetic is right, not a measure of a trained model's quality loss.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import omni
from build import build, chat_prompt
from omni.quant.modules import cpu_kernel, set_cpu_kernel

SCHEMES = {"int8 channel": dict(quantize="int8", group_size=None), "int4 group 128": dict(quantize="int4",
                                                                                           group_size=128)}


def _lm_head(name, module):
    return name == "thinker.lm_head"


# The lm_head alone (every other layer bf16): what `full_size.py --scope wide` (int8) or `--lm-head int4` costs there
LM_HEAD = {f"lm_head only, {label}": {**options, "quantize_scope": _lm_head} for label, options in SCHEMES.items()}


def decode_logits(thinker, ids, new) -> torch.Tensor:
    """Logits at each answer position, (len(new), vocab) fp32, through prefill + one cached decode step per answer
    token: the rows the CPU kernels see in generation (one at a time)."""
    total = ids.shape[1] + new.shape[1]
    cache = thinker.decoder.new_cache(1, total)
    mask = torch.ones_like(ids)
    out = thinker(input_ids=ids, attention_mask=mask, cache=cache, logits_to_keep=1)
    delta = out.rope_deltas if out.rope_deltas is not None else torch.zeros(1, 1)
    logits = [out.logits[:, -1]]
    for t in range(new.shape[1] - 1):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = (mask.sum(-1, keepdim=True) - 1 + delta).to(torch.float)[None].expand(3, -1, -1)
        logits.append(thinker(input_ids=new[:, t : t + 1], attention_mask=mask, position_ids=pos,
                              cache=cache).logits[:, -1])
    return torch.cat(logits).float()


def _compare(got, want) -> tuple[float, float]:
    """(share of argmax equal, mean KL(want || got))"""
    kept = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(got.log_softmax(-1), want.log_softmax(-1), log_target=True,
                                    reduction="batchmean").item()
    return kept, kl


def kernel_modes(out_dir, answers, base_logits) -> dict:
    model = omni.load(out_dir, components=("thinker",), dtype="bfloat16", quiet=True, **SCHEMES["int4 group 128"])
    before, rows = cpu_kernel(), {}
    try:
        with torch.no_grad():
            for mode in ("bf16", "a8"):
                set_cpu_kernel(mode)
                rows[mode] = [decode_logits(model.thinker, ids, new) for ids, new, _ in answers]
    finally:
        set_cpu_kernel(before)
    result = {}
    for mode, got in rows.items():
        pairs = [_compare(g, w) for g, w in zip(got, base_logits)]
        result[f"int4 group 128, decode path, {mode} kernel vs bf16 model"] = {
            "greedy_tokens_kept": round(sum(k for k, _ in pairs) / len(pairs), 4),
            "mean_kl_nats": round(sum(kl for _, kl in pairs) / len(pairs), 5)}
    pairs = [_compare(a, e) for a, e in zip(rows["a8"], rows["bf16"])]
    result["int4 group 128, decode path, a8 vs bf16 kernel"] = {
        "greedy_tokens_kept": round(sum(k for k, _ in pairs) / len(pairs), 4),
        "mean_kl_nats": round(sum(kl for _, kl in pairs) / len(pairs), 6)}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="where the random reference-size checkpoint is built")
    p.add_argument("--json", default=None)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=48)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--lm-head", action="store_true", help="also the lm_head alone, int8 and int4 (the rest bf16)")
    p.add_argument("--kernels", action="store_true", help="also omni's two CPU int4 kernel modes, decode path")
    p.add_argument("--only-kernels", action="store_true", help="--kernels without the scheme table")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    if not os.path.exists(os.path.join(args.out, "config.json")):
        build(args.out, "reference")
    g = torch.Generator().manual_seed(0)
    prompts = [torch.tensor([chat_prompt(torch.randint(11, 240, (args.prompt_tokens,), generator=g).tolist())])
               for _ in range(args.prompts)]
    base = omni.load(args.out, components=("thinker",), dtype="bfloat16", quiet=True)
    answers, base_logits = [], []
    with torch.no_grad():
        for ids in prompts:
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            new = base.generate(batch, max_new_tokens=args.new_tokens, eos_token_ids=())
            full = torch.cat([ids, new], 1)
            answers.append((ids, new, full))
            base_logits.append(base.thinker(input_ids=full).logits[0, ids.shape[1] - 1 : -1].float())
    del base
    result = {"model": "benchmarks/build.py reference (random, thinker)", "prompts": args.prompts,
              "new_tokens": args.new_tokens}
    if args.kernels or args.only_kernels:
        for label, row in kernel_modes(args.out, answers, base_logits).items():
            result[label] = row
            print(label, row, flush=True)
    schemes = {} if args.only_kernels else {**SCHEMES, **(LM_HEAD if args.lm_head else {})}
    for label, options in schemes.items():
        model = omni.load(args.out, components=("thinker",), dtype="bfloat16", quiet=True, **options)
        kept, kl, prefix = [], [], []
        with torch.no_grad():
            for (ids, new, full), want in zip(answers, base_logits):
                got = model.thinker(input_ids=full).logits[0, ids.shape[1] - 1 : -1].float()
                same, divergence = _compare(got, want)
                kept.append(same)
                kl.append(divergence)
                free = model.generate({"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                      max_new_tokens=args.new_tokens, eos_token_ids=())
                same = (free[0] == new[0]).int().cumprod(0).sum().item()
                prefix.append(same)
        result[label] = {"greedy_tokens_kept": round(sum(kept) / len(kept), 4),
                         "mean_kl_nats": round(sum(kl) / len(kl), 5),
                         "free_run_identical_prefix": prefix}
        print(label, result[label], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
