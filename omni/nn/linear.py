"""nn.Linear with a decode-specialised form inside compiled graphs.

A decode step multiplies a handful of rows by every weight matrix: matrix-vector products, bound by how fast the
weights stream from memory. Inside `torch.compile`, writing one as a broadcast multiply + sum lets inductor emit a
single fused reduction that reads each weight once. On the 2-core CPU box that read about twice as fast as aten's
GEMV (fp32: 37 vs 20 GB/s for the 32000 x 1024 lm_head; bf16: 43 vs 18 GB/s) and stayed ahead up to 8 rows
(benchmarks/bench_gemv.py). Eager mode and larger inputs keep `F.linear`: a GEMM wins once many rows share the
weight reads, and eager mode would materialise the broadcast product.

One exception in eager mode: a single bf16 row without bias on the CPU goes through `torch.mv`, which gave the same
bits as `F.linear` (tests/test_decode_kernels.py) and ran 20-35 % faster on the 2-core box (torch 2.13/2.14: the
151936 x 2048 lm_head 23.7 vs 28.4 ms, the 128 x 2048 MoE router 30 vs 38 us; fp32 the same either way, fp16 not
bit-equal, a bias would round twice: those keep F.linear).
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
        if torch.compiler.is_compiling():
            if x.numel() <= MATVEC_ROWS * x.shape[-1]:
                return matvec(x, self.weight, self.bias)
        elif (x.numel() == x.shape[-1] and self.bias is None and x.dtype == torch.bfloat16
              and self.weight.dtype == torch.bfloat16 and x.device.type == "cpu"):
            return torch.mv(self.weight, x.reshape(-1)).view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)
