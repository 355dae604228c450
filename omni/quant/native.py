"""omni's own CPU int4 kernels (cpu_kernels.cpp): built on first use with the system's C++ compiler, called by ctypes.

Why a kernel of omni's own: torch's CPU int4 kernel decodes every weight to fp32 before it multiplies, which makes it
compute-bound at about 13 GB/s on the 2-core box, half the memory bandwidth a decode step could use. This one reads
the checkpoint's own nibble layout and multiplies with integer dot products (docs/quantization.md, "CPU kernels").

    available()              the library built and this CPU runs it (x86-64 with AVX-512 BW, VNNI and BF16)
    linear(x, codes, ...)    one (N, K) int4 weight on bf16 rows
    moe(x, experts, ...)     one MoE layer's routed experts, all in one call (decode's hot loop)

Inside torch.compile (the fullgraph decode step of `generate(compile=True)`) both run as the custom ops
`omni::int4_linear` / `omni::int4_moe`, which the graph calls as they are; eager calls skip the dispatcher.

Built once per source, compiler and CPU into $OMNI_CACHE (default ~/.cache/omni)/kernels, written under a temporary
name and renamed into place. OMNI_NATIVE=0 turns the kernels off (torch's kernel and the plain path remain); a
failed build warns once and does the same. No compiler flag or path comes from outside omni.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
SCALE_TYPES = {torch.bfloat16: 0, torch.float16: 1, torch.float32: 2}
MODES = ("a8", "bf16")  # dynamic int8 activations (the default), or exact bf16 products
_LIB: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable


def _cache_dir() -> Path:
    return Path(os.environ.get("OMNI_CACHE") or Path.home() / ".cache" / "omni") / "kernels"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++") or shutil.which("c++")


def _cpu_id() -> str:
    try:  # the flags line: a library built with -march=native belongs to this kind of CPU
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


NEEDED = ("avx512bw", "avx512_vnni", "avx512_bf16")  # the instructions the kernels use (as /proc/cpuinfo names them)


def cpu_supported(flags_line: str) -> bool:
    """Whether a /proc/cpuinfo flags line has what the kernels need (checked before compiling: a CPU without them
    would fail the build in every new process)."""
    flags = set(flags_line.split())
    return all(f in flags for f in NEEDED)


def _build(cpu: str) -> Path:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++) on PATH")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), version, cpu]).encode()).hexdigest()
    out = _cache_dir() / f"cpu_kernels-{key[:16]}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, out)  # another process building the same file at once writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _bind(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.omni_cpu_ok.restype = i32
    lib.omni_int4_linear.restype = None
    lib.omni_int4_linear.argtypes = [p, i64, i64, p, i64, p, i32, i64, p, i32, i32, p]
    lib.omni_int4_moe.restype = None
    lib.omni_int4_moe.argtypes = [p, i64, i64, i64, i64, p, p, p, p, p, p, p, p, i32, p, p, p, i64, i64, i32, i32, p]


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot run here (reason warned once)."""
    global _LIB
    if _LIB is None:
        _LIB = False
        if os.environ.get("OMNI_NATIVE", "1") == "0" or platform.machine() not in ("x86_64", "AMD64"):
            return None
        cpu = _cpu_id()
        if not cpu_supported(cpu):
            return None
        try:
            lib = ctypes.CDLL(str(_build(cpu)))
            _bind(lib)
            if lib.omni_cpu_ok():
                _LIB = lib
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            warnings.warn(f"omni's CPU int4 kernels are unavailable ({e}); torch's kernel is used instead",
                          stacklevel=2)
    return _LIB or None


def available() -> bool:
    return library() is not None


def shape_ok(k: int, group_size: int | None) -> bool:
    """Whether the kernels take a weight of K input columns with this group size (None: channel-wise)."""
    return k % 128 == 0 and (group_size is None or group_size in (32, 64) or group_size % 128 == 0)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
           mode: str = "a8") -> torch.Tensor:
    """x (M, K) bf16 contiguous, codes (N, K/2) uint8 (the format's bytes), scale (N, C), zero_point (N, C) int8 or
    None -> (M, N) bf16. The caller checks `available()`, `shape_ok` and contiguity (PackedWeight.fast_ok)."""
    if torch.compiler.is_compiling():
        return torch.ops.omni.int4_linear(x, codes, scale, zero_point, mode == "a8")
    return _linear(x, codes, scale, zero_point, mode == "a8")


def _linear(x, codes, scale, zero_point, a8: bool) -> torch.Tensor:
    m, k = x.shape
    n, c = scale.shape
    y = torch.empty(m, n, dtype=torch.bfloat16)
    (_LIB or library()).omni_int4_linear(x.data_ptr(), m, k, codes.data_ptr(), n, scale.data_ptr(),
                                         SCALE_TYPES[scale.dtype], c, _ptr(zero_point), a8, torch.get_num_threads(),
                                         y.data_ptr())
    return y


def moe(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, gate, up, down, mode: str = "a8"):
    """One MoE layer's routed experts: x (T, D) bf16, experts (T, A) int64, weights (T, A) fp32; gate, up, down are
    PackedWeight stacks in the rows layout -> (T, D) bf16."""
    args = (x, experts, weights, gate.codes, up.codes, down.codes, gate.scale, up.scale, down.scale,
            gate.zero_point, up.zero_point, down.zero_point, mode == "a8")
    if torch.compiler.is_compiling():
        return torch.ops.omni.int4_moe(*args)
    return _moe(*args)


def _moe(x, experts, weights, gate, up, down, gate_scale, up_scale, down_scale, gate_zp, up_zp, down_zp,
         a8: bool) -> torch.Tensor:
    t, d = x.shape
    a = experts.shape[1]
    f = gate.shape[-2]
    y = torch.empty(t, d, dtype=torch.bfloat16)
    (_LIB or library()).omni_int4_moe(
        x.data_ptr(), t, d, f, a, experts.data_ptr(), weights.data_ptr(), gate.data_ptr(), up.data_ptr(),
        down.data_ptr(), gate_scale.data_ptr(), up_scale.data_ptr(), down_scale.data_ptr(),
        SCALE_TYPES[gate_scale.dtype], _ptr(gate_zp), _ptr(up_zp), _ptr(down_zp), gate_scale.shape[-1],
        down_scale.shape[-1], a8, torch.get_num_threads(), y.data_ptr())
    return y


# The same two calls as operators for compiled graphs: opaque to the compiler, which only needs the output shapes.
# Defined with torch.library.Library rather than the @custom_op decorator: about 5 us less per call (17 -> 12 us,
# measured), and a decode step at full size makes 240 of them.
_OPS = torch.library.Library("omni", "DEF")
_OPS.define("int4_linear(Tensor x, Tensor codes, Tensor scale, Tensor? zero_point, bool a8) -> Tensor")
_OPS.define("int4_moe(Tensor x, Tensor experts, Tensor weights, Tensor gate, Tensor up, Tensor down, "
            "Tensor gate_scale, Tensor up_scale, Tensor down_scale, Tensor? gate_zp, Tensor? up_zp, "
            "Tensor? down_zp, bool a8) -> Tensor")
_OPS.impl("int4_linear", _linear, "CPU")
_OPS.impl("int4_moe", _moe, "CPU")


@torch.library.register_fake("omni::int4_linear")
def _(x, codes, scale, zero_point, a8):
    return x.new_empty(x.shape[0], scale.shape[0])


@torch.library.register_fake("omni::int4_moe")
def _(x, experts, weights, gate, up, down, gate_scale, up_scale, down_scale, gate_zp, up_zp, down_zp, a8):
    return x.new_empty(x.shape)
