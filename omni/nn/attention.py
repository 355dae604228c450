"""Attention: the decoders' self-attention (Thinker, Talker, code predictor, Code2Wav) and the masks it uses, and
the packed-token attention of the encoders (vision and audio towers), which attend inside segments of their rows.

Letters as in omni/nn/__init__.py: B batch, T query tokens, S key tokens, H query heads, K kv heads, Dh head dim,
N packed rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .norm import RMSNorm
from .rope import apply_rope


def sdpa(q, k, v, mask=None, is_causal=False):
    """Scaled dot-product attention with grouped kv heads. q (B, H, T, Dh), k/v (B, K, S, Dh).

    Grouped heads go to SDPA as they are (`enable_gqa`): repeating k/v to H heads would copy the whole KV cache
    in every layer at every decode step (measured: the same result bit for bit, about 3x faster on CPU).
    """
    if torch.compiler.is_compiling() and q.shape[2] == 1 and not is_causal:
        return decode_attention(q, k, v, mask)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=k.shape[1] != q.shape[1]
    )


def decode_attention(q, k, v, mask=None):
    """Attention of one query per row written out in fp32, for compiled decode steps: inductor fuses it, where CPU
    SDPA with a mask over a bf16 cache took ~0.5 ms per layer (measured; fp32 ~0.1 ms). Same shapes as `sdpa`."""
    B, H, T, Dh = q.shape
    K = k.shape[1]
    q_bkgd = q.reshape(B, K, H // K, Dh).float()  # query head h reads kv head h // (H / K)
    scores = torch.einsum("bkgd,bksd->bkgs", q_bkgd, k.float()) * Dh**-0.5
    if mask is not None:  # (B|1, 1, 1, S) bool
        scores = scores.masked_fill(~mask[:, :, 0, None, :], float("-inf"))
    out = torch.einsum("bkgs,bksd->bkgd", scores.softmax(-1), v.float())
    return out.reshape(B, H, T, Dh).to(q.dtype)


def causal_mask(
    attention_mask: torch.Tensor | None,
    q_len: int,
    kv_len: int,
    device,
    sliding_window: int | None = None,
) -> torch.Tensor | None:
    """Boolean (B|1, 1, T, S) mask, True = may attend. Queries are the last `q_len` of the `kv_len` keys.

    Returns None when plain causal attention is exact (SDPA's `is_causal` is then used). Query rows with no
    key to attend to (left padding) are opened to all keys so they produce finite garbage, never NaN.
    """
    if attention_mask is None and sliding_window is None and q_len == kv_len:
        return None
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]
    k_pos = torch.arange(kv_len, device=device)[None, :]
    mask = k_pos <= q_pos
    if sliding_window is not None:
        mask = mask & (q_pos - k_pos < sliding_window)
    mask = mask[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :kv_len].bool()
        mask = mask | ~mask.any(-1, keepdim=True)
    return mask


def segment_groups(lengths, device=None) -> list[tuple[slice | torch.Tensor, int, int]]:
    """Segments of `lengths` rows lying back to back in a packed (N, ...) tensor, grouped by length for
    `packed_attention`: [(rows, n, l)], n segments of l rows each; `rows` is a slice when those n segments are
    contiguous (a whole video, a clip's full windows), else an index of their n * l rows.

    E.g. lengths [4, 4, 4, 2, 4] -> [(index of rows 0-11 and 14-17, 4, 4), (slice(12, 14), 1, 2)].
    """
    starts: dict[int, list[int]] = {}
    at = 0
    for n in (lengths.tolist() if torch.is_tensor(lengths) else lengths):
        starts.setdefault(int(n), []).append(at)
        at += int(n)
    groups = []
    for length, first in starts.items():
        n = len(first)
        if first[-1] - first[0] == (n - 1) * length:  # back to back: a view, no gather
            groups.append((slice(first[0], first[0] + n * length), n, length))
        else:
            rows = torch.tensor(first, device=device)[:, None] + torch.arange(length, device=device)
            groups.append((rows.flatten(), n, length))
    return groups


def packed_attention(q, k, v, groups, cos=None, sin=None) -> torch.Tensor:
    """Full (non-causal) attention inside segments of packed rows: q, k, v (N, H, Dh) -> (N, H, Dh).

    groups: from `segment_groups`. Each group of equal-length segments is one batched SDPA call: no padded rows,
    no mask (variable-length attention by grouping equal lengths). No row attends outside its own segment.
    cos, sin (N, Dh): a rotary embedding for q and k (the vision towers'), applied in fp32 as the reference does.
    """
    N, H, Dh = q.shape
    if cos is not None:
        q = apply_rope(q.float(), cos, sin).to(v.dtype)
        k = apply_rope(k.float(), cos, sin).to(v.dtype)
    if len(groups) == 1 and isinstance(groups[0][0], slice) and groups[0][0] == slice(0, N):  # one group covers everything: no copy back
        _, n, l = groups[0]
        out = sdpa(*(t.view(n, l, H, Dh).transpose(1, 2) for t in (q, k, v)))
        return out.transpose(1, 2).reshape(N, H, Dh)
    out = torch.empty_like(q)
    for rows, n, l in groups:
        o = sdpa(*(t[rows].view(n, l, H, Dh).transpose(1, 2) for t in (q, k, v)))  # (n, H, l, Dh)
        out[rows] = o.transpose(1, 2).reshape(n * l, H, Dh)
    return out


class Attention(nn.Module):
    """Multi-head attention with grouped kv heads, optional q/k RMSNorm (per head) and rotary embeddings."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        qkv_bias: bool = False,
        out_bias: bool = False,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = Linear(dim, n_heads * head_dim, bias=qkv_bias)
        self.k_proj = Linear(dim, n_kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = Linear(dim, n_kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = Linear(n_heads * head_dim, dim, bias=out_bias)
        self.q_norm = RMSNorm(head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, norm_eps) if qk_norm else None

    def forward(self, x, cos, sin, mask=None, cache=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, Dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)
        out = sdpa(q, k, v, mask, is_causal=mask is None and T > 1)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))
