"""Quantized stacked experts: the drop-in for omni.nn.moe.Experts when its weights are int4 / int8.

Same call and same routing arithmetic as `Experts`, over three PackedWeight stacks (E, F, D) / (E, D, F). Two paths:
    few        a handful of tokens (decode): each (token, expert) pair multiplies by that expert's packed weights
               only, through the fast kernels where they apply; no other expert's bytes are read. With omni's CPU
               kernels the whole layer is one call (`native.moe`: both parallel passes in C, no per-expert dispatch)
    segmented  rows sorted by expert; each expert that received rows is applied once (fast kernel or dequantized
               GEMM, by its row count)
    gather     under torch.compile (a fullgraph decode step): the chosen experts' weights gathered and dequantized
               into (N, F, D) stacks and applied with bmm; static shapes, no host sync
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nn.moe import FEW_TOKENS, Experts
from . import native
from .modules import PackedWeight
from .scheme import Scheme

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
PATHS = ("auto", "few", "segmented", "gather")


class QuantExperts(nn.Module):
    def __init__(self, n_experts: int, dim: int, hidden: int, scheme: Scheme, device=None, where: str = "experts"):
        super().__init__()
        self.n_experts = n_experts
        self.gate_proj = PackedWeight(hidden, dim, scheme, n_experts, device, where + ".gate_proj")
        self.up_proj = PackedWeight(hidden, dim, scheme, n_experts, device, where + ".up_proj")
        self.down_proj = PackedWeight(dim, hidden, scheme, n_experts, device, where + ".down_proj")
        self.linear_path = "auto"  # the per-matrix path (auto | plain | fast); tests force each

    @classmethod
    def from_experts(cls, experts: Experts, scheme: Scheme, where: str = "experts") -> "QuantExperts":
        E, F_, D = experts.gate_proj.shape
        q = cls(E, D, F_, scheme, experts.gate_proj.device, where)
        for name in PROJECTIONS:
            stack = getattr(experts, name).detach()
            for e in range(E):  # one expert at a time: no second full-precision copy of the stack
                getattr(q, name).set_float(stack[e], e)
        return q

    def forward(self, x_TD: torch.Tensor, idx_TA: torch.Tensor, w_TA: torch.Tensor, path: str = "auto"):
        """x (T, D), chosen experts (T, A), their weights (T, A) -> weighted sum of expert outputs (T, D)."""
        if path not in PATHS:
            raise InputError(f"unknown quantized MoE path {path!r}; use one of {PATHS}")
        if path == "auto":
            if self._native_ok(x_TD) and x_TD.shape[0] <= FEW_TOKENS and not torch.is_grad_enabled():
                path = "few"  # one kernel call for the layer, also inside torch.compile (a custom op)
            elif torch.compiler.is_compiling():
                path = "gather"
            else:
                path = "few" if x_TD.shape[0] <= FEW_TOKENS and not torch.is_grad_enabled() else "segmented"
        if path == "gather":
            return self._gather(x_TD, idx_TA, w_TA)
        return self._few(x_TD, idx_TA, w_TA) if path == "few" else self._segmented(x_TD, idx_TA, w_TA)

    def _expert(self, e: int, rows: torch.Tensor) -> torch.Tensor:
        """One expert's SwiGLU on rows (n, D) -> (n, D), reading only expert e's packed weights."""
        p = self.linear_path
        h = F.silu(self.gate_proj.linear(rows, e, p)) * self.up_proj.linear(rows, e, p)
        return self.down_proj.linear(h, e, p)

    def _native_ok(self, x_TD) -> bool:
        stacks = [getattr(self, p) for p in PROJECTIONS]
        return (self.linear_path == "auto" and all(s.native and s.fast_ok(x_TD[:1]) for s in stacks)
                and len({s.scale.dtype for s in stacks}) == 1)

    def _few(self, x_TD, idx_TA, w_TA) -> torch.Tensor:
        T, A = idx_TA.shape
        if self._native_ok(x_TD):
            return native.moe(x_TD.contiguous(), idx_TA.to(torch.int64).contiguous(),
                              w_TA.to(torch.float32).contiguous(), self.gate_proj, self.up_proj, self.down_proj,
                              self.gate_proj.native_mode())
        experts, weights = idx_TA.tolist(), w_TA.tolist()  # one host sync each for the whole layer
        if self.linear_path == "auto" and all(self._int4_ready(getattr(self, p), x_TD) for p in PROJECTIONS):
            return self._few_int4(x_TD, experts, weights)
        out = []
        for t in range(T):
            row = x_TD[t : t + 1]  # (1, D)
            acc = None
            for a in range(A):
                y = self._expert(experts[t][a], row) * weights[t][a]
                acc = y if acc is None else acc + y
            out.append(acc)
        return torch.cat(out) if T > 1 else out[0]

    @staticmethod
    def _int4_ready(weight, x_TD) -> bool:
        return weight.kernel_form and weight.fast_ok(x_TD[:1]) and weight.scale_zero.dtype == x_TD.dtype

    def _few_int4(self, x_TD, experts, weights) -> torch.Tensor:
        """`_few` straight on the CPU int4 kernel: a decode step calls it 3 x top-k times per layer, so the
        per-call checks and reshapes of `PackedWeight.linear` are hoisted out of the loop (same arithmetic)."""
        mm = torch.ops.aten._weight_int4pack_mm_for_cpu
        g, u, d = self.gate_proj, self.up_proj, self.down_proj
        group = g.scheme.group_size
        out = []
        for t, (row_experts, row_weights) in enumerate(zip(experts, weights)):
            row = x_TD[t : t + 1]  # (1, D)
            acc = None
            for e, w in zip(row_experts, row_weights):
                h = F.silu(mm(row, g.codes[e], group, g.scale_zero[e])).mul_(mm(row, u.codes[e], group, u.scale_zero[e]))
                y = mm(h, d.codes[e], group, d.scale_zero[e]).mul_(w)
                acc = y if acc is None else acc.add_(y)
            out.append(acc)
        return torch.cat(out) if len(out) > 1 else out[0]

    def _gather(self, x_TD, idx_TA, w_TA) -> torch.Tensor:
        T, A = idx_TA.shape
        idx_N = idx_TA.flatten()
        x_N1D = x_TD.repeat_interleave(A, dim=0)[:, None, :]  # (N, 1, D): row n = token n // A
        gate_NFD = self.gate_proj.dequantized(idx_N, x_TD.dtype)
        up_NFD = self.up_proj.dequantized(idx_N, x_TD.dtype)
        down_NDF = self.down_proj.dequantized(idx_N, x_TD.dtype)
        h_N1F = F.silu(torch.bmm(x_N1D, gate_NFD.transpose(1, 2))) * torch.bmm(x_N1D, up_NFD.transpose(1, 2))
        y_NAD = torch.bmm(h_N1F, down_NDF.transpose(1, 2)).view(T, A, -1)
        return (y_NAD * w_TA[..., None].to(y_NAD.dtype)).sum(1)

    def _segmented(self, x_TD, idx_TA, w_TA) -> torch.Tensor:
        T, A = idx_TA.shape
        order_N = idx_TA.flatten().argsort(stable=True)  # routed rows grouped by expert
        token_N = order_N // A
        counts_E = torch.bincount(idx_TA.flatten(), minlength=self.n_experts)
        x_ND = x_TD.index_select(0, token_N)
        y_ND = torch.empty_like(x_ND)
        start = 0
        for e, n in enumerate(counts_E.tolist()):
            if n:  # only the experts that received rows are dequantized
                y_ND[start : start + n] = self._expert(e, x_ND[start : start + n])
                start += n
        y_ND = y_ND.mul_(w_TA.flatten()[order_N, None].to(y_ND.dtype))
        return torch.zeros_like(x_TD).index_add_(0, token_N, y_ND)

    def extra_repr(self) -> str:
        return f"{self.n_experts} experts, {self.gate_proj.scheme.name}"
