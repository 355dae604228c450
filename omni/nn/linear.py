"""nn.Linear with a decode-specialised form inside compiled graphs.

A decode step multiplies a handful of rows by every weight matrix: matrix-vector products, bound by how fast the
weights stream from memory. Inside `torch.compile`, writing one as a broadcast multiply + sum lets inductor emit a
single fused reduction that reads each weight once. On the 2-core CPU box that read about twice as fast as aten's
GEMV (fp32: 37 vs 20 GB/s for the 32000 x 1024 lm_head; bf16: 43 vs 18 GB/s) and stayed ahead up to 8 rows
(benchmarks/bench_gemv.py). Eager mode and larger inputs keep `F.linear`: a GEMM wins once many rows share the
weight reads, and eager mode would materialise the broadcast product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MATVEC_ROWS = 4  # at most this many rows take the multiply + sum form under torch.compile


def matvec(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear as multiply + sum, accumulated in fp32. x (..., I), weight (O, I) -> (..., O)."""
    y = (x[..., None, :] * weight).sum(-1, dtype=torch.float32)  # (..., O, I) is never materialised under inductor
    if bias is not None:
        y = y + bias
    return y.to(x.dtype)


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state-dict keys) that runs as `matvec` for a few rows in a compiled graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and x.numel() <= MATVEC_ROWS * x.shape[-1]:
            return matvec(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
