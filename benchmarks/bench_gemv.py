"""Why compiled decode runs linear layers as multiply + sum (omni.nn.linear): the GEMV behind one decode step.

For the weight shapes of the reference-size Thinker it times aten's `F.linear` against `torch.compile` of
`omni.nn.matvec` (one fused inductor reduction) for a few rows, cycling through enough copies of each weight that
every call reads it from memory, and prints the read bandwidth each reaches.

    python benchmarks/bench_gemv.py                       # fp32 and bf16, 2 threads
    python benchmarks/bench_gemv.py --dtypes float32 --threads 1
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from common import clock, read_bandwidth
from omni.nn import matvec

SHAPES = {"lm_head": (32000, 1024), "q_proj / o_proj": (1024, 1024), "k_proj / v_proj, expert": (256, 1024)}


def run(dtypes=("float32", "bfloat16"), rows=(1, 2, 4, 8), reps: int = 30) -> list[dict]:
    fused = torch.compile(matvec, fullgraph=True, dynamic=False)
    results = []
    for name in dtypes:
        dtype = getattr(torch, name)
        for label, (out_f, in_f) in SHAPES.items():
            copies = [torch.randn(out_f, in_f).to(dtype) for _ in range(max(2, (512 << 20) // (out_f * in_f * 4)))]
            nbytes = copies[0].numel() * copies[0].element_size()
            for r in rows:
                x = torch.randn(r, in_f).to(dtype)
                times = {}
                for impl, fn in (("F.linear", F.linear), ("compiled matvec", fused)):
                    for w in copies[:2]:
                        fn(x, w)  # warm up (and compile)
                    times[impl] = statistics.median(
                        clock(lambda w=copies[i % len(copies)]: fn(x, w)) for i in range(reps))
                results.append(dict(dtype=name, weight=label, rows=r, bytes=nbytes, **times))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bw = read_bandwidth()
    print(f"memory read bandwidth (a large sum): {bw / 1e9:.1f} GB/s; torch threads {torch.get_num_threads()}")
    print(f"{'dtype':<9} {'weight':<24} {'rows':>4} {'F.linear':>18} {'compiled matvec':>18} {'speedup':>8}")
    for r in run(args.dtypes):
        a, b = r["F.linear"], r["compiled matvec"]
        print(f"{r['dtype']:<9} {r['weight']:<24} {r['rows']:>4} {a * 1e6:7.0f} us {r['bytes'] / a / 1e9:5.1f} GB/s "
              f"{b * 1e6:7.0f} us {r['bytes'] / b / 1e9:5.1f} GB/s {a / b:7.2f}x")


if __name__ == "__main__":
    main()
