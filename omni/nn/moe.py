"""Sparse mixture of experts (Qwen3-Omni Thinker and Talker).

Letters: T tokens, D model width, E experts, A active experts per token, F expert width, N = T * A routed rows.

The experts are three stacked parameters, one per projection, in nn.Linear layout:
    gate_proj, up_proj (E, F, D)    down_proj (E, D, F)
Tokens are sorted by expert so each expert sees one contiguous block of rows; the blocks are multiplied with
`torch._grouped_mm` when the platform has it, otherwise by a loop over the experts that received tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mlp import SwiGLU

_HAS_GROUPED_MM = hasattr(torch, "_grouped_mm")


def _grouped_mm_ok(x: torch.Tensor) -> bool:
    # CPU kernels need 16-byte aligned strides; fp32 with widths that are multiples of 4 qualifies.
    return _HAS_GROUPED_MM and x.dtype == torch.float32 and not torch.compiler.is_compiling()


class Experts(nn.Module):
    def __init__(self, n_experts: int, dim: int, hidden: int):
        super().__init__()
        self.n_experts = n_experts
        self.gate_proj = nn.Parameter(torch.empty(n_experts, hidden, dim))
        self.up_proj = nn.Parameter(torch.empty(n_experts, hidden, dim))
        self.down_proj = nn.Parameter(torch.empty(n_experts, dim, hidden))
        for p in (self.gate_proj, self.up_proj, self.down_proj):
            nn.init.normal_(p, std=0.02)  # a usable random init; checkpoints overwrite it

    def forward(self, x_TD: torch.Tensor, idx_TA: torch.Tensor, w_TA: torch.Tensor) -> torch.Tensor:
        T, A = idx_TA.shape
        order_N = idx_TA.flatten().argsort(stable=True)  # routed rows grouped by expert
        token_N = order_N // A
        counts_E = torch.bincount(idx_TA.flatten(), minlength=self.n_experts)
        x_ND = x_TD[token_N]
        if _grouped_mm_ok(x_ND) and x_ND.shape[1] % 4 == 0 and self.gate_proj.shape[1] % 4 == 0:
            offs = counts_E.cumsum(0).to(torch.int32)
            h_NF = F.silu(torch._grouped_mm(x_ND, self.gate_proj.transpose(1, 2), offs=offs))
            h_NF = h_NF * torch._grouped_mm(x_ND, self.up_proj.transpose(1, 2), offs=offs)
            y_ND = torch._grouped_mm(h_NF, self.down_proj.transpose(1, 2), offs=offs)
        else:
            y_ND = torch.empty_like(x_ND)
            start = 0
            for e, n in enumerate(counts_E.tolist()):
                if n:
                    rows = x_ND[start : start + n]
                    h = F.silu(rows @ self.gate_proj[e].T) * (rows @ self.up_proj[e].T)
                    y_ND[start : start + n] = h @ self.down_proj[e].T
                    start += n
        y_ND = y_ND * w_TA.flatten()[order_N, None].to(y_ND.dtype)
        return torch.zeros_like(x_TD).index_add_(0, token_N, y_ND)


class MoE(nn.Module):
    """Softmax router -> top-k experts (renormalised if `norm_topk_prob`) [+ sigmoid-gated shared expert]."""

    def __init__(self, dim, hidden, n_experts, top_k, norm_topk_prob=True, shared_hidden=0):
        super().__init__()
        self.top_k, self.norm_topk_prob = top_k, norm_topk_prob
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = Experts(n_experts, dim, hidden)
        self.shared_expert = SwiGLU(dim, shared_hidden) if shared_hidden else None
        self.shared_expert_gate = nn.Linear(dim, 1, bias=False) if shared_hidden else None

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
