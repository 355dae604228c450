"""Peak memory of `omni.load` on a sharded checkpoint: the weights once, not twice (target <= 1.15x their bytes).

The load runs in a fresh interpreter so nothing else shares its peak. That interpreter first loads a tiny
checkpoint and drops it, so the code pages, thread pools and allocator state that any first load brings in are
part of the baseline; then it loads a ~220 MB sharded thinker and reports (peak RSS - baseline) / weight bytes.
"""

import json
import subprocess
import sys

import pytest
import torch

import omni

TARGET = 1.15

CHILD = r"""
import gc, json, sys
import omni

def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

warm = omni.load(sys.argv[1], components=("thinker",), quiet=True)
del warm
gc.collect()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark: the peak of the load alone
    f.write("5")
model = omni.load(sys.argv[2], components=("thinker",), quiet=True)
peak = status("VmHWM")
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"base": base, "peak": peak, "weights": weights, "after": status("VmRSS")}))
"""


def _thinker_config(hidden, experts, moe_hidden, layers, vocab):
    c = omni.OmniConfig.from_name("tiny")
    th = c.thinker_config
    text = th.text_config.replace(
        hidden_size=hidden, num_experts=experts, moe_intermediate_size=moe_hidden, num_hidden_layers=layers,
        vocab_size=vocab,
    )
    vision = th.vision_config.replace(out_hidden_size=hidden)
    return c.replace(thinker_config=th.replace(text_config=text, vision_config=vision))


def _save(directory, cfg, shard):
    torch.manual_seed(0)
    model = omni.OmniModel(cfg, components=("thinker",))
    omni.save(model, directory, max_shard_size=shard)
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_load_peak_rss_is_close_to_weight_bytes(tmp_path):
    tiny, big = tmp_path / "tiny", tmp_path / "big"
    _save(tiny, _thinker_config(64, 8, 32, 2, 512), "100KB")
    weights = _save(big, _thinker_config(512, 32, 256, 4, 4096), "20MB")
    assert weights > 200e6
    assert len(list(big.glob("*.safetensors"))) >= 10  # sharded: the loader must stream shard by shard
    out = subprocess.run([sys.executable, "-c", CHILD, str(tiny), str(big)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["weights"] == weights
    ratio = (r["peak"] - r["base"]) / r["weights"]
    assert ratio <= TARGET, f"peak RSS during load = {ratio:.2f}x the weight bytes (target {TARGET}x): {r}"
