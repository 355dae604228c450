"""Sparse mixture of experts (Qwen3-Omni Thinker and Talker).

Letters: T tokens, D model width, E experts, A active experts per token, F expert width, N = T * A routed rows.

The experts are three stacked parameters, one per projection, in nn.Linear layout:
    gate_proj, up_proj (E, F, D)    down_proj (E, D, F)

Four ways to run the same computation, chosen per call (`Experts.forward(..., path=...)` forces one; the tests
check they agree):
    grouped     rows sorted by expert, one `torch._grouped_mm` per projection (no Python loop over experts);
                used when the platform has a kernel for the dtype (CPU fp32, CUDA bf16 on sm90+)
    segmented   rows sorted by expert, one matmul per expert that received rows (the portable fallback)
    few         a handful of tokens (decode): a loop over the T*A (token, expert) pairs with no sorting,
                no bincount and no scatter; each weight is read once straight from the stack, which is what a
                bandwidth-bound decode step needs (gathering the weights first would copy them)
    gather      the active experts' weights gathered into (N, F, D) stacks and applied with bmm: static shapes,
                so it is the path used under torch.compile (a fullgraph decode step), where inductor runs it at
                memory speed (measured); in eager mode the gather copies the weights, so eager mode avoids it
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .linear import Linear
from .mlp import SwiGLU

_HAS_GROUPED_MM = hasattr(torch, "_grouped_mm")
PATHS = ("auto", "grouped", "segmented", "few", "gather")
FEW_TOKENS = 4  # at most this many tokens take the `few` path in eager mode (measured: beyond it, grouped wins)
GATHER_ROWS = 64  # under torch.compile, at most this many routed rows use `gather`; more would copy too much


def grouped_mm_supported(x: torch.Tensor, dim: int, hidden: int) -> bool:
    """Whether `torch._grouped_mm` has a kernel for rows like `x` and both expert widths.

    CPU: fp32 only (bf16 raises), strides 16-byte aligned, i.e. widths that are multiples of 4.
    CUDA: bf16 on compute capability 9.0+, widths that are multiples of 8.
    """
    if not _HAS_GROUPED_MM:
        return False
    if x.device.type == "cpu":
        return x.dtype == torch.float32 and dim % 4 == 0 and hidden % 4 == 0
    if x.device.type == "cuda":
        return (
            x.dtype == torch.bfloat16
            and torch.cuda.get_device_capability(x.device) >= (9, 0)
            and dim % 8 == 0
            and hidden % 8 == 0
        )
    return False


class Experts(nn.Module):
    def __init__(self, n_experts: int, dim: int, hidden: int):
        super().__init__()
        self.n_experts = n_experts
        self.gate_proj = nn.Parameter(torch.empty(n_experts, hidden, dim))
        self.up_proj = nn.Parameter(torch.empty(n_experts, hidden, dim))
        self.down_proj = nn.Parameter(torch.empty(n_experts, dim, hidden))
        for p in (self.gate_proj, self.up_proj, self.down_proj):
            nn.init.normal_(p, std=0.02)  # a usable random init; checkpoints overwrite it

    def choose_path(self, x_TD: torch.Tensor, A: int) -> str:
        T = x_TD.shape[0]
        if torch.compiler.is_compiling():
            return "gather" if T * A <= GATHER_ROWS else "segmented"
        if T <= FEW_TOKENS and not torch.is_grad_enabled():
            return "few"
        _, F_, D = self.gate_proj.shape
        return "grouped" if grouped_mm_supported(x_TD, D, F_) else "segmented"

    def forward(
        self, x_TD: torch.Tensor, idx_TA: torch.Tensor, w_TA: torch.Tensor, path: str = "auto"
    ) -> torch.Tensor:
        """x (T, D), chosen experts (T, A), their weights (T, A) -> weighted sum of expert outputs (T, D)."""
        if path not in PATHS:
            raise InputError(f"unknown MoE path {path!r}; use one of {PATHS}")
        if path == "auto":
            path = self.choose_path(x_TD, idx_TA.shape[1])
        if path == "few":
            return self._few(x_TD, idx_TA, w_TA)
        if path == "gather":
            return self._gather(x_TD, idx_TA, w_TA)
        return self._sorted(x_TD, idx_TA, w_TA, grouped=path == "grouped")

    def _expert(self, e: int, rows: torch.Tensor) -> torch.Tensor:
        """One expert's SwiGLU on rows (n, D) -> (n, D)."""
        return F.linear(F.silu(F.linear(rows, self.gate_proj[e])) * F.linear(rows, self.up_proj[e]), self.down_proj[e])

    def _few(self, x_TD, idx_TA, w_TA) -> torch.Tensor:
        T, A = idx_TA.shape
        experts, weights = idx_TA.tolist(), w_TA.tolist()  # one host sync each for the whole layer
        out = []
        for t in range(T):
            row = x_TD[t : t + 1]  # (1, D)
            acc = None
            for a in range(A):
                y = self._expert(experts[t][a], row) * weights[t][a]
                acc = y if acc is None else acc + y
            out.append(acc)
        return torch.cat(out) if T > 1 else out[0]  # (T, D)

    def _gather(self, x_TD, idx_TA, w_TA) -> torch.Tensor:
        T, A = idx_TA.shape
        idx_N = idx_TA.flatten()
        x_N1D = x_TD.repeat_interleave(A, dim=0)[:, None, :]  # (N, 1, D): row n = token n // A
        gate_NDF = self.gate_proj[idx_N].transpose(1, 2)  # (N, D, F) views of gathered copies
        up_NDF = self.up_proj[idx_N].transpose(1, 2)
        down_NFD = self.down_proj[idx_N].transpose(1, 2)  # (N, F, D)
        h_N1F = F.silu(torch.bmm(x_N1D, gate_NDF)) * torch.bmm(x_N1D, up_NDF)
        y_NAD = torch.bmm(h_N1F, down_NFD).view(T, A, -1)  # (T, A, D)
        return (y_NAD * w_TA[..., None].to(y_NAD.dtype)).sum(1)

    def _sorted(self, x_TD, idx_TA, w_TA, grouped: bool) -> torch.Tensor:
        T, A = idx_TA.shape
        order_N = idx_TA.flatten().argsort(stable=True)  # routed rows grouped by expert
        token_N = order_N // A
        counts_E = torch.bincount(idx_TA.flatten(), minlength=self.n_experts)
        x_ND = x_TD.index_select(0, token_N)
        if grouped:
            offs = counts_E.cumsum(0).to(torch.int32)
            h_NF = F.silu(torch._grouped_mm(x_ND, self.gate_proj.transpose(1, 2), offs=offs))
            h_NF = h_NF * torch._grouped_mm(x_ND, self.up_proj.transpose(1, 2), offs=offs)
            y_ND = torch._grouped_mm(h_NF, self.down_proj.transpose(1, 2), offs=offs)
        else:
            y_ND = torch.empty_like(x_ND)
            start = 0
            for e, n in enumerate(counts_E.tolist()):
                if n:  # only the experts that received rows are touched
                    y_ND[start : start + n] = self._expert(e, x_ND[start : start + n])
                    start += n
        y_ND = y_ND.mul_(w_TA.flatten()[order_N, None].to(y_ND.dtype))  # in place: N x D is the largest tensor here
        return torch.zeros_like(x_TD).index_add_(0, token_N, y_ND)


class MoE(nn.Module):
    """Softmax router -> top-k experts (renormalised if `norm_topk_prob`) [+ sigmoid-gated shared expert]."""

    def __init__(self, dim, hidden, n_experts, top_k, norm_topk_prob=True, shared_hidden=0):
        super().__init__()
        self.top_k, self.norm_topk_prob = top_k, norm_topk_prob
        self.router = Linear(dim, n_experts, bias=False)
        self.experts = Experts(n_experts, dim, hidden)
        self.shared_expert = SwiGLU(dim, shared_hidden) if shared_hidden else None
        self.shared_expert_gate = Linear(dim, 1, bias=False) if shared_hidden else None

    def forward(self, x: torch.Tensor):
        """x (..., D) -> (y (..., D), router logits (T, E))."""
        shape = x.shape
        x_TD = x.reshape(-1, shape[-1])
        logits_TE = self.router(x_TD)
        probs_TE = logits_TE.softmax(dim=-1, dtype=torch.float)
        w_TA, idx_TA = probs_TE.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            w_TA = w_TA / w_TA.sum(dim=-1, keepdim=True)
        y_TD = self.experts(x_TD, idx_TA, w_TA.to(x.dtype))
        if self.shared_expert is not None:
            y_TD = y_TD + torch.sigmoid(self.shared_expert_gate(x_TD)) * self.shared_expert(x_TD)
        return y_TD.reshape(shape), logits_TE


def load_balancing_loss(router_logits, n_experts: int, top_k: int, attention_mask=None) -> torch.Tensor:
    """Switch-Transformer auxiliary loss over all MoE layers: E * sum_e f_e * P_e.

    f_e: top-k selections of expert e per routed token, P_e: its mean routing probability, both averaged over the
    real (unpadded) tokens of every layer. Balanced routing gives top_k; collapse onto few experts gives more.
    """
    counts = torch.zeros(n_experts, device=router_logits[0].device)
    prob_sum = torch.zeros(n_experts, device=router_logits[0].device)
    rows = torch.zeros((), device=router_logits[0].device)
    weight = None if attention_mask is None else attention_mask.reshape(-1).float()
    for logits_TE in router_logits:
        probs_TE = logits_TE.float().softmax(-1)
        idx_TA = probs_TE.topk(top_k, dim=-1).indices
        w_T = torch.ones(probs_TE.shape[0], device=probs_TE.device) if weight is None else weight
        counts = counts.index_add(0, idx_TA.reshape(-1), w_T.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs_TE * w_T[:, None]).sum(0)
        rows = rows + w_T.sum()
    return n_experts * torch.sum((counts / rows) * (prob_sum / rows))
