"""Peak memory of quantize-on-load: `omni.load(dir, quantize="int4")` streams the float shards and quantizes one
tensor at a time, so its peak is about the quantized model plus one shard (target: <= 1.15x that), never a float
copy of the model. Same method as tests/test_loading_memory.py (a fresh interpreter, a warm-up load first)."""

import json
import os
import subprocess
import sys

import pytest

from test_loading_memory import _save, _thinker_config

TARGET = 1.15

CHILD = r"""
import gc, json, sys
import omni
from omni.quant import quantized_bytes

def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

warm = omni.load(sys.argv[1], components=("thinker",), quiet=True, quantize="int4", group_size=32)
del warm
gc.collect()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
model = omni.load(sys.argv[2], components=("thinker",), quiet=True, quantize="int4", group_size=32)
peak = status("VmHWM")
print(json.dumps({"base": base, "peak": peak, "bytes": sum(quantized_bytes(model))}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_quantize_on_load_peak_is_quantized_size_plus_one_shard(tmp_path):
    tiny, big = tmp_path / "tiny", tmp_path / "big"
    _save(tiny, _thinker_config(64, 8, 32, 2, 512), "100KB")
    float_bytes = _save(big, _thinker_config(512, 32, 256, 4, 4096), "20MB")
    shard = max(os.path.getsize(p) for p in big.glob("*.safetensors"))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tiny), str(big)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["bytes"] < float_bytes / 3  # fp32 -> int4 decoder layers (embeddings and lm_head stay fp32)
    ratio = (r["peak"] - r["base"]) / (r["bytes"] + shard)
    print(f"quantize-on-load peak: {ratio:.3f}x (quantized bytes + largest shard)")
    assert ratio <= TARGET, f"peak = {ratio:.2f}x (quantized bytes + largest shard), target {TARGET}x: {r}"
