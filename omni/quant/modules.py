"""Weight-only quantized layers: `QuantLinear` (for nn.Linear) and `QuantExperts` (for omni.nn.moe.Experts).

Both keep their weights only in packed form (`PackedWeight`) and compute in one of two ways:
    plain   dequantize the weight (or one expert's) into the input's dtype, then F.linear: any device, any shape;
            the definition the fast paths are tested against
    fast    CPU kernels that read the packed bytes directly, up to FAST_ROWS rows (decode, and the few rows each
            expert receives in a prefill; on more rows a dequantized GEMM wins), bf16 inputs:
              int4  omni's own kernels (native.py) where they build and run: the checkpoint's nibble layout (`rows`),
                    K a multiple of 128, groups of 32, 64 or multiples of 128; mode "a8" (int8 activations,
                    integer dot products, the default) or "bf16" (exact products). Otherwise torch's
                    `_weight_int4pack_mm_for_cpu` on the `blocked` layout (group 32..256, output rows % 64 == 0).
              int8  torch's `_weight_int8pack_mm` (per-channel, symmetric; fp32 inputs too)
CUDA runs the plain path (no CUDA kernel here yet).

Which int4 kernel: `set_cpu_kernel("a8" | "bf16" | "torch")` or OMNI_INT4_KERNEL; "torch" must be chosen before a
model is built or loaded (it picks the in-memory layout), the other two switch at any time.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InputError
from . import native, packing
from .scheme import Scheme

# At most this many rows take the fast kernels: they cost about one weight read per row, while dequantize + GEMM
# costs one dequantization (several passes over the weight) plus a GEMM that hardly grows with the rows. On the
# 2-core box (a busy moment, so ratios only) the kernels stayed ahead up to 128 rows on 768 x 2048 and up to 64
# (int4) / 64 (int8) rows on 4096 x 2048: these limits sit below both.
FAST_ROWS = {4: 64, 8: 32}
NATIVE_ROWS = {"a8": 64, "bf16": 32}  # omni's kernels, measured the same way (docs/quantization.md)
CPU_KERNELS = ("a8", "bf16", "torch")
_cpu_kernel: str | None = None  # None: OMNI_INT4_KERNEL (default "a8"), read and checked on first use
PARTS = ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point")
_INT4_GROUPS = (32, 64, 128, 256)
_KERNEL_LAYOUT_OK: bool | None = None


def set_cpu_kernel(name: str) -> None:
    """The CPU int4 kernel: "a8" (omni's, int8 activations: the fastest), "bf16" (omni's, exact products) or
    "torch" (torch's kernel; takes effect for models built or loaded afterwards, since it needs another layout)."""
    global _cpu_kernel
    if name not in CPU_KERNELS:
        raise InputError(f"unknown CPU int4 kernel {name!r}; use one of {CPU_KERNELS}")
    _cpu_kernel = name


def cpu_kernel() -> str:
    global _cpu_kernel
    if _cpu_kernel is None:
        name = os.environ.get("OMNI_INT4_KERNEL", "a8")
        if name not in CPU_KERNELS:
            raise InputError(f"OMNI_INT4_KERNEL={name!r} names no CPU int4 kernel; use one of {CPU_KERNELS} "
                             "(or unset it for the default, a8)")
        _cpu_kernel = name
    return _cpu_kernel


def _kernel_layout_ok() -> bool:
    """Whether this torch's CPU int4 kernel reads the `blocked` layout omni stores (checked once on a probe)."""
    global _KERNEL_LAYOUT_OK
    if _KERNEL_LAYOUT_OK is None:
        try:
            q = torch.randint(-8, 8, (64, 64), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
            ref = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.int() + 8, 1)
            _KERNEL_LAYOUT_OK = torch.equal(ref, packing.codes_to_nibbles(q, blocked=True))
        except (RuntimeError, AttributeError):
            _KERNEL_LAYOUT_OK = False
    return _KERNEL_LAYOUT_OK


class PackedWeight(nn.Module):
    """One quantized (N, K) weight, or a stack of E of them (experts).

    Buffers: codes (E?, N, bytes) uint8 for int4 (packing module docstring) or (E?, N, K) int8 for int8;
    zero_point (E?, N, C) int8 for asymmetric schemes; and the scales, in one of two forms:
        scale       (E?, N, C) float, the format's layout
        scale_zero  (E?, C, N, 2) float, the CPU int4 kernel's operand (scale, -zero_point * scale), for weights the
                    kernel can read: built once here instead of on every call (decode calls it thousands of times
                    per token); `scale_of` gives the (N, C) view of it
    """

    def __init__(self, out_features: int, in_features: int, scheme: Scheme, experts: int | None = None,
                 device=None, where: str = "weight"):
        super().__init__()
        scheme.check_width(in_features, where)
        self.scheme, self.out_features, self.in_features = scheme, out_features, in_features
        self.lead = () if experts is None else (experts,)
        # omni's kernels read the format's own bytes; torch's kernel needs them regrouped (`blocked`)
        self.native = (scheme.bits == 4 and cpu_kernel() != "torch" and native.shape_ok(in_features, scheme.group_size)
                       and native.available())
        self.blocked = (scheme.bits == 4 and not self.native and packing.blocked_fits(out_features, in_features))
        if scheme.bits == 4:
            width = in_features // 2 if self.blocked else math.ceil(in_features / 8) * 4
            codes = torch.empty(*self.lead, out_features, width, dtype=torch.uint8, device=device)
        else:
            codes = torch.empty(*self.lead, out_features, in_features, dtype=torch.int8, device=device)
        self.register_buffer("codes", codes)
        self.kernel_form = (scheme.bits == 4 and self.blocked and scheme.group_size in _INT4_GROUPS)
        self.register_buffer("scale", None)  # allocated by the first scale set, in its dtype
        self.register_buffer("scale_zero", None)
        c = scheme.scale_columns(in_features)
        zp = None if scheme.symmetric else torch.empty(*self.lead, out_features, c, dtype=torch.int8, device=device)
        self.register_buffer("zero_point", zp)
        self.filled: set = set()  # (part, expert) pairs set so far (loading reports the missing ones)

    # -- filling ---------------------------------------------------------------------------------------------

    def _slot(self, name: str, e):
        t = getattr(self, name)
        return t if e is None else t[e]

    def scale_of(self, e=None) -> torch.Tensor:
        """The scales (E?, N, C) (of expert e)."""
        if self.kernel_form:
            return self._slot("scale_zero", e)[..., 0].transpose(-1, -2)
        return self._slot("scale", e)

    def _put_scale(self, scale: torch.Tensor, e, dtype=None) -> None:
        scale = scale if dtype is None else scale.to(dtype)
        c = self.scheme.scale_columns(self.in_features)
        if self.kernel_form:
            if self.scale_zero is None:
                self.scale_zero = torch.zeros(*self.lead, c, self.out_features, 2, dtype=scale.dtype,
                                              device=self.codes.device)
        elif self.scale is None:
            self.scale = torch.empty(*self.lead, self.out_features, c, dtype=scale.dtype, device=self.codes.device)
        self.scale_of(e).copy_(scale)
        self._update_zero(e)

    def _put_zero_point(self, zp: torch.Tensor, e) -> None:
        self._slot("zero_point", e).copy_(zp)
        self._update_zero(e)

    def _update_zero(self, e) -> None:
        """The kernel form's second column, -zero_point * scale, once both are known ((q - zp) * s = q * s + that)."""
        if not self.kernel_form or self.zero_point is None or self.scale_zero is None:
            return
        sz = self._slot("scale_zero", e)
        zp_CN = self._slot("zero_point", e).transpose(-1, -2).to(sz.dtype)
        sz[..., 1] = -(zp_CN * sz[..., 0])

    @torch.no_grad()
    def set_float(self, w: torch.Tensor, e=None, dtype=None) -> None:
        """Quantize a float weight (N, K) into place (expert e of a stack)."""
        w = w.to(device=self.codes.device, dtype=dtype or w.dtype)
        q, scale, zp = packing.quantize(w, self.scheme.bits, self.scheme.group_size, self.scheme.symmetric)
        self._put_codes(q, e)
        if zp is not None:
            self._put_zero_point(zp, e)
        self._put_scale(scale, e)
        self.filled.update((p, e) for p in self.expected_parts())

    def _put_codes(self, q: torch.Tensor, e) -> None:
        stored = packing.codes_to_nibbles(q, self.blocked) if self.scheme.bits == 4 else q
        self._slot("codes", e).copy_(stored)

    def _put_packed(self, words: torch.Tensor, e) -> None:
        """The format's words -> the in-memory layout, in byte operations only (this runs for every weight of a
        loading checkpoint)."""
        slot = self._slot("codes", e)
        if self.scheme.bits == 8:
            slot.copy_(packing.from_stored(packing.stored_from_int32(words, 8, self.in_features), 8))
        elif not self.blocked:  # the rows layout is the format's bytes
            slot.copy_(words.contiguous().view(torch.uint8))
        else:
            stored = packing.stored_from_int32(words, 4, self.in_features)
            slot.copy_(packing.stored_to_nibbles(stored, blocked=True))

    @torch.no_grad()
    def set_part(self, part: str, t: torch.Tensor, e, key: str, dtype=None) -> None:
        """Place one stored tensor of the format (`weight_packed`, ...) after checking its shape and dtype."""
        n, k, bits = self.out_features, self.in_features, self.scheme.bits
        c = self.scheme.scale_columns(k)
        want = {"weight_packed": ((n, math.ceil(k * bits / 32)), torch.int32),
                "weight_scale": ((n, c), None), "weight_shape": ((2,), None),
                "weight_zero_point": ((math.ceil(n * bits / 32), c), torch.int32)}[part]
        if part == "weight_zero_point" and self.scheme.symmetric:
            raise CheckpointError(f"{key}: a zero point for a module whose scheme ({self.scheme.name}) is symmetric")
        if tuple(t.shape) != want[0] or (want[1] is not None and t.dtype != want[1]):
            raise CheckpointError(f"{key} has shape {list(t.shape)} {t.dtype}; the {self.scheme.name} scheme of a "
                                  f"({n}, {k}) weight stores {list(want[0])}"
                                  + (f" {want[1]}" if want[1] is not None else ""))
        if part == "weight_shape":
            if t.tolist() != [n, k]:
                raise CheckpointError(f"{key} says {t.tolist()}, the model's weight there is [{n}, {k}]: the packed "
                                      "tensors do not belong to this config")
        elif part == "weight_packed":
            self._put_packed(t, e)
        elif part == "weight_scale":
            if not t.is_floating_point():
                raise CheckpointError(f"{key} has dtype {t.dtype}; scales are floating point")
            self._put_scale(t, e, dtype)
        else:
            self._put_zero_point(packing.unpack_zero_point(t, bits, n), e)
        self.filled.add((part, e))

    def expected_parts(self) -> tuple:
        return PARTS if not self.scheme.symmetric else PARTS[:3]

    def missing(self) -> list[str]:
        experts = [None] if not self.lead else range(self.lead[0])
        return [f"{p}" + ("" if e is None else f" (expert {e})")
                for e in experts for p in self.expected_parts() if (p, e) not in self.filled]

    # -- reading ---------------------------------------------------------------------------------------------

    def codes_of(self, e=None) -> torch.Tensor:
        """Signed codes (E?, N, K) int8 (of expert e when given)."""
        c = self._slot("codes", e)
        return packing.nibbles_to_codes(c, self.blocked, self.in_features) if self.scheme.bits == 4 else c

    def dequantized(self, e=None, dtype=None) -> torch.Tensor:
        zp = None if self.zero_point is None else self._slot("zero_point", e)
        scale = self.scale_of(e)
        if self.scheme.bits == 8:
            return packing.dequantize(self._slot("codes", e), scale, zp, dtype)
        stored = packing.nibbles_to_stored(self._slot("codes", e), self.blocked, self.in_features)
        return packing.dequantize(stored, scale, zp, dtype, offset=8)

    def export(self, e=None) -> dict:
        """The format's tensors of this weight (expert e): suffix -> tensor."""
        codes, bits = self._slot("codes", e), self.scheme.bits
        if bits == 8:
            words = packing.int32_from_stored(packing.to_stored(codes, 8), 8)
        elif not self.blocked:
            words = codes.contiguous().view(torch.int32)
        else:
            words = packing.int32_from_stored(packing.nibbles_to_stored(codes, True, self.in_features), 4)
        out = {"weight_packed": words, "weight_scale": self.scale_of(e).contiguous(),
               "weight_shape": torch.tensor([self.out_features, self.in_features], dtype=torch.int64)}
        if self.zero_point is not None:
            out["weight_zero_point"] = packing.pack_zero_point(self._slot("zero_point", e), self.scheme.bits)
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.codes, self.scale, self.scale_zero, self.zero_point)
                   if t is not None)

    # -- compute ---------------------------------------------------------------------------------------------

    def native_mode(self) -> str:
        """The mode of omni's kernel for this weight (its layout allows both)."""
        return "bf16" if cpu_kernel() == "bf16" else "a8"

    def fast_ok(self, x: torch.Tensor) -> bool:
        rows = x.numel() // x.shape[-1]
        if not x.is_cpu:
            return False
        if self.native:  # also inside torch.compile, as a custom op (native.py); a decode step asks this hundreds
            b = self._buffers  # of times, hence the plain dict reads instead of module attributes
            scale = b["scale"]
            return (x.dtype == torch.bfloat16 and rows <= NATIVE_ROWS[self.native_mode()]
                    and b["codes"].is_cpu and scale is not None and scale.dtype in native.SCALE_TYPES)
        if rows > FAST_ROWS[self.scheme.bits] or torch.compiler.is_compiling():
            return False
        s = self.scheme
        if s.bits == 4:
            return (self.blocked and x.dtype == torch.bfloat16 and s.group_size in _INT4_GROUPS
                    and _kernel_layout_ok())
        return s.group_size is None and s.symmetric and x.dtype in (torch.bfloat16, torch.float32)

    def linear(self, x: torch.Tensor, e=None, path: str = "auto") -> torch.Tensor:
        """x (..., K) @ weight(e).T -> (..., N). path: auto | plain | fast."""
        if path == "fast" or (path == "auto" and self.fast_ok(x)):
            return self._fast(x, e)
        return F.linear(x, self.dequantized(e, x.dtype))

    def _fast(self, x: torch.Tensor, e) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1]).contiguous()  # the kernels read rows as dense vectors
        if self.native:
            b = self._buffers
            codes, scale, zp = b["codes"], b["scale"], b["zero_point"]
            if e is not None:
                codes, scale, zp = codes[e], scale[e], None if zp is None else zp[e]
            y = native.linear(x2, codes, scale, zp, self.native_mode())
        elif self.scheme.bits == 8:
            scale = self._slot("scale", e)[:, 0]
            y = torch.ops.aten._weight_int8pack_mm(x2, self._slot("codes", e), scale.to(x.dtype))
        else:
            sz = self._slot("scale_zero", e)
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self._slot("codes", e), self.scheme.group_size,
                                                            sz if sz.dtype == x.dtype else sz.to(x.dtype))
        return y.reshape(*x.shape[:-1], self.out_features)


class QuantLinear(nn.Module):
    """A weight-only quantized nn.Linear: `weight` is a PackedWeight; the bias stays a float parameter."""

    def __init__(self, in_features, out_features, scheme: Scheme, bias: bool = False, device=None, dtype=None,
                 where: str = "linear"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = PackedWeight(out_features, in_features, scheme, device=device, where=where)
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.path = "auto"

    @classmethod
    def from_linear(cls, linear: nn.Linear, scheme: Scheme, where: str = "linear") -> "QuantLinear":
        w = linear.weight.detach()
        q = cls(linear.in_features, linear.out_features, scheme, linear.bias is not None, device=w.device,
                dtype=w.dtype, where=where)
        q.weight.set_float(w)
        if linear.bias is not None:
            q.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.weight.linear(x, path=self.path)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self.weight.scheme.name}, bias={self.bias is not None}"
