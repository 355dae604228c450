"""Thinker text prefill and decode, omni vs transformers, fp32 and bf16, on the same random weights.

Decode time per token = (generate(N tokens) - generate(1 token)) / (N - 1), measured the same way on both sides
(prefill and sampling included identically). The bandwidth limit of decode: every step reads the attention
weights, the router and the 8 active experts of every layer, the lm_head and the KV cache; at the measured read
bandwidth that takes `bytes / bandwidth` seconds, and `% of limit` = that floor / measured time.
"""

from __future__ import annotations

import torch

import omni


def decode_bytes(model, dtype: torch.dtype, kv_len: int) -> int:
    """Bytes one decode step must read from memory (weights actually used + the KV cache)."""
    t = model.thinker.cfg.text_config
    elt = torch.finfo(dtype).bits // 8
    D, Dh, H, K = t.hidden_size, t.dim_head, t.num_attention_heads, t.num_key_value_heads
    attn = D * Dh * (2 * H + 2 * K) + 2 * Dh + 2 * D
    n = 0
    for i in range(t.num_hidden_layers):
        if t.is_moe_layer(i):
            ffn = t.num_experts * D + t.num_experts_per_tok * 3 * D * t.moe_intermediate_size
        else:
            ffn = 3 * D * t.intermediate_size
        n += attn + ffn + 2 * K * kv_len * Dh  # weights + this layer's cached keys and values
    n += t.vocab_size * D + 2 * D  # lm_head, final norm, one embedding row
    return n * elt


def run(ref, directory: str, size: dict, bandwidth: list, dtypes=("float32", "bfloat16"), reps: int = 5,
        compiled: bool = True):
    """Rows for the result table (seconds per prefill / per decoded token) and raw figures. `bandwidth` (bytes/s
    measurements) gets one more per dtype; run_all turns `decode_bytes` into a fraction of the best one."""
    rows = []
    P, N = size["prefill"], size["new_tokens"]
    V = size["text"]["vocab_size"]
    ids = torch.randint(0, min(V, 150), (1, P), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for name in dtypes:
        dtype = getattr(torch, name)
        ref = ref.to(dtype)
        model = omni.load(directory, components=("thinker",), dtype=dtype, quiet=True)

        def ref_gen(n):
            return ref.thinker.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                        eos_token_id=None, pad_token_id=0)[:, P:]

        def omni_gen(n, compile=False):
            return model.generate(batch, max_new_tokens=n, eos_token_ids=(), compile=compile)

        with torch.no_grad():
            note = ""
            try:
                same = torch.equal(ref_gen(N), omni_gen(N))
                note = "tokens identical" if same else "tokens differ (expected only in bf16)"
            except Exception as e:  # the reference may lack a kernel for this dtype
                note = f"reference failed: {type(e).__name__}: {e}"[:90]
            prefill = {"omni": lambda: model.thinker(input_ids=ids), "reference": lambda: ref.thinker(input_ids=ids)}
            if note.startswith("reference failed"):
                prefill.pop("reference")
            t = alternate(prefill, reps)
            rows.append(dict(case=f"prefill {P} tok {name}", omni=t["omni"], reference=t.get("reference"),
                             ratio=t["reference"] / t["omni"] if "reference" in t else None,
                             note=f"{P / t['omni']:.0f} tok/s omni"))
            fns = {"omni N": lambda: omni_gen(N), "omni 1": lambda: omni_gen(1)}
            if "reference" in prefill:
                fns.update({"ref N": lambda: ref_gen(N), "ref 1": lambda: ref_gen(1)})
            t = alternate(fns, reps, stat=min)  # a difference of two timings: the least disturbed runs
            rows.append(dict(case=f"first token, prompt {P} tok {name}", omni=t["omni 1"], reference=t.get("ref 1"),
                             ratio=t["ref 1"] / t["omni 1"] if "ref 1" in t else None,
                             note="generate(1 token): prefill as generation runs it"))
            o = (t["omni N"] - t["omni 1"]) / (N - 1)
            r = (t["ref N"] - t["ref 1"]) / (N - 1) if "ref N" in t else None
            bandwidth.append(read_bandwidth())  # the limit is the best the machine showed during the run
            rows.append(dict(case=f"decode (per token) {name}", omni=o, reference=r,
                             ratio=r / o if r else None, note=f"{1 / o:.1f} tok/s omni; {note}",
                             decode_bytes=decode_bytes(model, dtype, P + N // 2)))
            if compiled:  # the same decode with every step in one torch.compile graph (compiled before timing)
                omni_gen(N, compile=True)
                t = alternate({"N": lambda: omni_gen(N, compile=True), "1": lambda: omni_gen(1, compile=True)},
                              reps, stat=min)
                c = (t["N"] - t["1"]) / (N - 1)
                rows.append(dict(case=f"decode (per token) {name}, compiled", omni=c, reference=r,
                                 ratio=r / c if r else None, note=f"{1 / c:.1f} tok/s omni (torch.compile)",
                                 decode_bytes=decode_bytes(model, dtype, P + N // 2)))
        del model
    ref.float()
    return rows


from common import alternate, read_bandwidth  # noqa: E402  (kept at the end: `common` also sets up sys.path for callers)
