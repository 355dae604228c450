"""Run every benchmark: omni vs transformers on the same random weights, in one process, alternating.

    python benchmarks/run_all.py                      # the REFERENCE_NOTES sizes (a few minutes, ~6 GB RAM)
    python benchmarks/run_all.py --size small         # seconds: checks that everything runs
    python benchmarks/run_all.py --only thinker --dtypes float32

Prints a table (speedup = reference time / omni time), writes benchmarks/results/<size>/results.json and, with
matplotlib installed, results.png.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

import bench_encoders
import bench_speech
import bench_thinker
from build import SIZES, build
from common import HERE, environment, print_table, read_bandwidth, write_results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="reference")
    p.add_argument("--only", choices=("thinker", "encoders", "speech"), default=None)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results/<size>)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    out = args.out or os.path.join(HERE, "results", args.size)
    bws = [read_bandwidth()]
    bw = bws[0]
    print(f"memory read bandwidth (measured now): {bw / 1e9:.1f} GB/s; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ref = build(d, args.size)
        if args.only in (None, "thinker"):
            rows += bench_thinker.run(ref, d, size, bws, args.dtypes, args.reps)
        if args.only in (None, "encoders"):
            rows += bench_encoders.run(ref, d, size, args.reps)
        if args.only in (None, "speech"):
            rows += bench_speech.run(ref, d, size, max(2, args.reps // 2))
    bws.append(read_bandwidth())
    limit = max(bws)
    for r in rows:  # decode: time the measured bandwidth needs to read the bytes of one step / time taken
        if r.get("decode_bytes") and r.get("omni"):
            r["bandwidth_fraction"] = r["decode_bytes"] / limit / r["omni"]
            r["note"] = f"{100 * r['bandwidth_fraction']:.0f}% of bandwidth limit, " + r["note"]
    print()
    print_table(rows)
    print(f"\nread bandwidth measured during the run: {', '.join(f'{b / 1e9:.1f}' for b in bws)} GB/s (the limit "
          "uses the best; a wide spread means a noisy machine and noisy timings)")
    write_results({"size": args.size, "env": environment(), "bandwidth_bytes_per_s": bws,
                   "rows": rows}, out)


if __name__ == "__main__":
    main()
