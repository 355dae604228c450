"""Shared benchmark helpers: alternating timers, memory bandwidth, the result table, JSON and the plot.

Every comparison times omni and the reference (transformers) alternately in the same process on the same
weights, so machine load (other processes, thermal state) hits both sides alike; the ratio is the figure to
read, absolute times are only indicative.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # tests/reference.py: the tiny reference config dicts


def clock(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(fns: dict, reps: int, warmup: int = 1, stat=statistics.median) -> dict[str, float]:
    """Seconds of each callable (the median of `reps` runs, or `stat` of them), run in turns (the order flips
    every round). fns: name -> callable."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else reversed(names):
            times[n].append(clock(fns[n]))
    return {n: stat(v) for n, v in times.items()}


def read_bandwidth(mbytes: int = 512, reps: int = 7) -> float:
    """Memory read bandwidth in bytes/s: the best of `reps` sums over a fp32 tensor far larger than any cache."""
    x = torch.ones(mbytes * 2**20 // 4)
    x.sum()
    best = min(clock(lambda: x.sum()) for _ in range(reps))
    return x.numel() * 4 / best


def print_table(rows: list[dict]) -> None:
    """rows: {'case', 'omni', 'reference', 'unit', 'ratio', 'note'}; times are seconds per unit of work."""
    head = f"{'case':<34} {'omni':>12} {'reference':>12} {'speedup':>8}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        o = "error" if r.get("omni") is None else f"{r['omni'] * 1e3:9.2f} ms"
        f = "error" if r.get("reference") is None else f"{r['reference'] * 1e3:9.2f} ms"
        s = "" if r.get("ratio") is None else f"{r['ratio']:7.2f}x"
        print(f"{r['case']:<34} {o:>12} {f:>12} {s:>8}  {r.get('note', '')}")


def write_results(results: dict, out_dir: str) -> None:
    """results.json, and results.png when matplotlib is installed."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    rows = [r for r in results["rows"] if r.get("ratio") is not None]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ax.barh([r["case"] for r in rows], [r["ratio"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="grey", lw=1)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over transformers (higher is better)")
    ax.set_title(f"omni vs transformers {results['env']['transformers']} ({results['env']['threads']} threads)")
    for i, r in enumerate(rows):
        ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "results.png"), dpi=120)
    print(f"wrote {os.path.join(out_dir, 'results.png')}")


def environment() -> dict:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}
