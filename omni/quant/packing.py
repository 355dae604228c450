"""The integer arithmetic of compressed-tensors' `pack-quantized` format, and omni's in-memory layouts.

Letters: N output rows, K input columns, G group size, C = K / G scale columns (1 for channel-wise).

On disk (the format): the quantized value q (int4: -8..7, int8: -128..127) is stored offset-binary, s = q + 2^(b-1),
as a little-endian bit stream per row: element i starts at bit i*b, so a word holds 32/b elements, low bits first.
    weight_packed      int32 (N, ceil(K*b/32))          weight_scale  float (N, C)
    weight_zero_point  int32 (ceil(N*b/32), C), packed along the rows (asymmetric schemes only)
and w = (q - zero_point) * scale, group j covering columns jG .. jG+G-1.

In memory (omni): int4 codes as bytes, two per byte (s of column 2i in the low nibble), in one of two layouts:
    rows     (N, ceil(K/8)*4): exactly the bytes of weight_packed (a free view on little-endian hosts)
    blocked  (N, K/2) when N % 64 == 0: the layout torch's CPU int4 kernel reads; for each block of 64 rows and each
             column, byte i holds row i (low nibble) and row i+32 (high nibble)
int8 codes are kept as signed int8 (N, K), the operand of torch's int8 weight-only kernel.
"""

from __future__ import annotations

import sys

import torch

BLOCK_ROWS = 64  # rows per block of the CPU int4 kernel's layout


def _little_endian() -> None:
    if sys.byteorder != "little":  # the byte views below read words as little-endian
        raise NotImplementedError("pack-quantized checkpoints are read on little-endian hosts only")


def to_stored(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes int8 -> offset-binary stored values uint8 (wrapping int8 arithmetic: -128 + 128 -> 0)."""
    return (q + (1 << (bits - 1))).view(torch.uint8) if bits < 8 else (q.view(torch.uint8) ^ 0x80)


def from_stored(s: torch.Tensor, bits: int) -> torch.Tensor:
    return (s.view(torch.int8) - (1 << (bits - 1))) if bits < 8 else (s ^ 0x80).view(torch.int8)


def pack_int32(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes (..., K) int8 -> the format's packed words (..., ceil(K*bits/32)) int32 (packs the last dim)."""
    return int32_from_stored(to_stored(q.contiguous(), bits), bits)


def unpack_int32(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """The inverse of `pack_int32`: packed words (..., W) int32 -> signed codes (..., k) int8."""
    return from_stored(stored_from_int32(packed, bits, k).contiguous(), bits)


def pack_zero_point(zp: torch.Tensor, bits: int) -> torch.Tensor:
    """Zero points (N, C) int8 -> (ceil(N*bits/32), C) int32: the format packs them along the rows."""
    return pack_int32(zp.transpose(-1, -2), bits).transpose(-1, -2).contiguous()


def unpack_zero_point(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    return unpack_int32(packed.transpose(-1, -2), bits, n).transpose(-1, -2).contiguous()


# ----------------------------------------------------------------------------------------------------------------
# Stored (offset-binary) values as uint8, and the in-memory int4 layouts. These work on bytes only (no int16 or
# float temporaries): loading a checkpoint moves every weight through them.


def stored_from_int32(packed: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """The format's words (..., W) int32 -> stored values s = q + 2^(bits-1) (..., k) uint8."""
    _little_endian()
    b = packed.contiguous().reshape(-1).view(torch.uint8).reshape(*packed.shape[:-1], -1)
    if bits == 4:
        b = torch.stack((b & 15, b >> 4), dim=-1).flatten(-2)
    return b[..., :k]


def int32_from_stored(s: torch.Tensor, bits: int) -> torch.Tensor:
    """Stored values (..., K) uint8 -> the format's words (..., ceil(K*bits/32)) int32."""
    _little_endian()
    pad = -s.shape[-1] % (32 // bits)
    if pad:
        s = torch.nn.functional.pad(s, (0, pad))
    if bits == 4:
        s = s[..., 0::2] | (s[..., 1::2] << 4)
    s = s.contiguous()
    return s.reshape(-1).view(torch.int32).reshape(*s.shape[:-1], -1)


def blocked_fits(n: int, k: int) -> bool:
    return n % BLOCK_ROWS == 0 and k % 2 == 0


def stored_to_nibbles(s: torch.Tensor, blocked: bool) -> torch.Tensor:
    """int4 stored values (..., N, K) uint8 -> nibble bytes in the `rows` or `blocked` layout (module docstring)."""
    if not blocked:
        return int32_from_stored(s, 4).view(torch.uint8)
    *lead, n, k = s.shape
    s = s.reshape(*lead, n // BLOCK_ROWS, BLOCK_ROWS, k).transpose(-1, -2)  # (..., N/64, K, 64)
    half = BLOCK_ROWS // 2
    return (s[..., :half] | (s[..., half:] << 4)).reshape(*lead, n, k // 2)


def nibbles_to_stored(b: torch.Tensor, blocked: bool, k: int) -> torch.Tensor:
    """The inverse of `stored_to_nibbles`: (..., N, bytes) uint8 -> stored values (..., N, k) uint8."""
    if not blocked:
        return stored_from_int32(b.view(torch.int32), 4, k)
    *lead, n, _ = b.shape
    v = b.reshape(*lead, n // BLOCK_ROWS, k, BLOCK_ROWS // 2)
    s = torch.cat((v & 15, v >> 4), dim=-1)  # (..., N/64, K, 64)
    return s.transpose(-1, -2).reshape(*lead, n, k)


def codes_to_nibbles(q: torch.Tensor, blocked: bool) -> torch.Tensor:
    """Signed int4 codes (..., N, K) int8 -> nibble bytes."""
    return stored_to_nibbles((q + 8).view(torch.uint8), blocked)


def nibbles_to_codes(b: torch.Tensor, blocked: bool, k: int) -> torch.Tensor:
    """Nibble bytes -> signed int4 codes (..., N, k) int8."""
    return nibbles_to_stored(b, blocked, k).view(torch.int8) - 8


# ----------------------------------------------------------------------------------------------------------------
# Quantizing and dequantizing (the arithmetic compressed-tensors uses, op for op, in the weight's own dtype)


def quantize(w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool):
    """w (..., N, K) float -> (codes (..., N, K) int8, scale (..., N, C) in w's dtype, zero point (..., N, C) int8 or
    None). Min-max ranges per group (group_size) or per row (None); 0 is always representable."""
    *lead, n, k = w.shape
    g = k if group_size is None else group_size
    wg = w.reshape(*lead, n, k // g, g)
    lo = torch.minimum(wg.amin(-1), torch.zeros((), dtype=w.dtype))
    hi = torch.maximum(wg.amax(-1), torch.zeros((), dtype=w.dtype))
    q_min, q_max = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    span = torch.tensor(float(q_max - q_min))
    zp = None
    if symmetric:
        scale = torch.maximum(lo.abs(), hi.abs()) / (span.to(w.dtype) / 2)
    else:
        scale = (hi - lo) / span.to(w.dtype)
        zp = torch.clamp(torch.tensor(float(q_min)) - lo / scale, q_min, q_max)
    scale = torch.where(scale == 0, torch.tensor(torch.finfo(scale.dtype).eps, dtype=scale.dtype), scale)
    x = wg / scale[..., None]
    if zp is not None:
        zp = torch.round(torch.clamp(zp, -128, 127)).to(torch.int8)
        x += zp[..., None].to(w.dtype)
    q = torch.round(torch.clamp(x, q_min, q_max)).to(w.dtype).to(torch.int8)
    return q.reshape(*lead, n, k), scale, zp


def dequantize(q: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor | None, dtype=None,
               offset: int = 0) -> torch.Tensor:
    """codes (..., N, K) int8, scale (..., N, C), zero point (..., N, C) or None -> w (..., N, K) in scale's dtype
    (then cast to `dtype`): (q - zp) * scale, the format's formula in the scale's dtype. With `offset`, `q` holds
    stored values (uint8, q + offset); small integers are exact in every float dtype, so the result is the same."""
    *lead, n, k = q.shape
    c = scale.shape[-1]
    x = q.reshape(*lead, n, c, k // c).to(scale.dtype)
    if offset:
        x.sub_(offset)
    if zp is not None:
        x.sub_(zp[..., None].to(scale.dtype))
    w = x.mul_(scale[..., None]).reshape(*lead, n, k)
    return (w if dtype is None else w.to(dtype)).contiguous()
