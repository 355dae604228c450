"""omni's CPU int4 kernels (omni/quant/cpu_kernels.cpp): each mode against the arithmetic it defines, the fused MoE
call against the per-expert path, and the build (cache, fallback). Skipped where the kernels cannot run (no C++
compiler, or a CPU without AVX-512 VNNI/BF16): PackedWeight then keeps torch's kernel, which test_quant.py covers."""

import os
import subprocess
import sys

import pytest
import torch

from omni.errors import InputError
from omni.nn.moe import Experts
from omni.quant import native, packing
from omni.quant.experts import QuantExperts
from omni.quant.modules import QuantLinear, cpu_kernel, set_cpu_kernel
from omni.quant.scheme import Scheme

pytestmark = pytest.mark.skipif(not native.available(), reason="omni's CPU kernels do not run here")


@pytest.fixture
def kernel():
    before = cpu_kernel()
    yield set_cpu_kernel
    set_cpu_kernel(before)


def _weight(n, k, group, symmetric, scale_dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q, scale, zp = packing.quantize(torch.randn(n, k, generator=g), 4, group, symmetric)
    codes = packing.stored_to_nibbles(packing.to_stored(q, 4), blocked=False).contiguous()
    return q, scale.to(scale_dtype), zp, codes


def _reference(x, q, scale, zp, group, a8):
    """fp32 y = x @ w.T with w = (q - zp) * scale; a8: x first rounded as the kernel rounds it (per group of the
    weight's scales, x8 = round(x * 127 / amax), half to even) and dequantized."""
    m, k = x.shape
    g = group or k
    xf = x.float()
    if a8:
        xg = xf.view(m, -1, g)
        amax = xg.abs().amax(-1, keepdim=True)
        inv = torch.full_like(amax, 127.0).div(amax)  # a true division, as the kernel's (torch's 127 / t: 127 * (1/t))
        x8 = torch.where(amax > 0, torch.round(xg * inv), torch.zeros_like(xg))
        xf = (x8 * (amax / 127)).view(m, k)
    zero = 0 if zp is None else zp.float().repeat_interleave(g, 1)
    return xf @ ((q.float() - zero) * scale.float().repeat_interleave(g, 1)).t()


CASES = [  # (N, K, group, symmetric, scale dtype): odd row counts leave tails of every tile shape
    (130, 256, 128, True, torch.bfloat16),
    (66, 384, None, True, torch.float16),
    (131, 512, 256, False, torch.float32),
    (257, 1024, 128, False, torch.bfloat16),
    (68, 256, 32, False, torch.bfloat16),  # small groups: several share one 64-byte load (tile_small)
    (36, 384, 64, True, torch.float32),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}-g{c[2]}-{'sym' if c[3] else 'asym'}")
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 9, 64])
@pytest.mark.parametrize("mode", native.MODES)
def test_linear_is_its_definition(case, rows, mode):
    n, k, group, symmetric, sdt = case
    q, scale, zp, codes = _weight(n, k, group, symmetric, sdt, seed=rows)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(100 + rows)).bfloat16()
    x[0, : min(k, group or k)] = 0  # an all-zero group: the a8 scale is 0 there
    y = native.linear(x, codes, scale, zp, mode).float()
    want = _reference(x, q, scale, zp, group, a8=mode == "a8")
    # the kernel's only rounding after the exact products: fp32 sums in another order, then one bf16 rounding
    assert ((y - want).abs() <= want.abs() * 2**-8 + 1e-3 * want.abs().max()).all()
    if mode == "a8":  # the int8 activations' cost against exact products, as a share of the output's range
        exact = _reference(x, q, scale, zp, group, a8=False)
        assert (y - exact).abs().max() <= 2**-6 * exact.abs().max()


def test_layers_take_the_native_path_and_choose_it_by_shape(kernel):
    kernel("a8")
    lin = torch.nn.Linear(256, 130, bias=True).bfloat16()
    q = QuantLinear.from_linear(lin, Scheme(4, 128))
    assert q.weight.native and not q.weight.blocked
    x = torch.randn(3, 256).bfloat16()
    assert q.weight.fast_ok(x) and not q.weight.fast_ok(x.float())
    assert torch.equal(q.weight.codes_of(), packing.quantize(lin.weight.detach(), 4, 128, True)[0])
    assert torch.equal(packing.unpack_int32(q.weight.export()["weight_packed"], 4, 256), q.weight.codes_of())
    assert not q.weight.fast_ok(torch.zeros(65, 256, dtype=torch.bfloat16))  # many rows: dequantize + GEMM
    plain = q.weight.linear(x, path="plain").float()
    fast = q(x).float() - lin.bias.float()
    assert (fast - plain).abs().max() <= 2**-6 * plain.abs().max()
    kernel("bf16")  # switches without rebuilding: same layout
    assert q.weight.native_mode() == "bf16"
    assert (q(x).float() - lin.bias.float() - plain).abs().max() <= 2**-7 * plain.abs().max()
    assert not QuantLinear.from_linear(torch.nn.Linear(192, 128), Scheme(4, None)).weight.native  # K % 128 != 0
    assert QuantLinear.from_linear(torch.nn.Linear(256, 128), Scheme(4, 32)).weight.native  # AWQ checkpoints' group
    kernel("torch")  # torch's kernel needs its own layout: chosen when the layer is built
    assert QuantLinear.from_linear(torch.nn.Linear(256, 128), Scheme(4, 128)).weight.blocked
    assert q.weight.native  # built before: keeps its layout and runs omni's exact mode
    with pytest.raises(InputError, match="a8"):
        kernel("fast")


@pytest.mark.parametrize("tokens", [1, 2, 5])
@pytest.mark.parametrize("scheme", [Scheme(4, 128), Scheme(4, 128, False), Scheme(4, 32, False)], ids=str)
def test_fused_moe_equals_the_per_expert_path(kernel, tokens, scheme):
    kernel("a8")
    torch.manual_seed(tokens)
    q = QuantExperts.from_experts(Experts(16, 256, 384).bfloat16(), scheme)
    assert all(getattr(q, p).native for p in ("gate_proj", "up_proj", "down_proj"))
    x = torch.randn(tokens, 256).bfloat16()
    idx = torch.stack([torch.randperm(16)[:4] for _ in range(tokens)])
    w = torch.rand(tokens, 4).bfloat16()
    with torch.no_grad():
        fused = q(x, idx, w, path="few").float()
        q.linear_path = "fast"  # each (token, expert) through native.linear, the per-matrix path
        per_expert = q(x, idx, w, path="few").float()
        q.linear_path = "plain"
        plain = q(x, idx, w, path="few").float()
    # the same roundings up to the expert sum, which the fused call keeps in fp32 (the per-expert path: bf16)
    assert (fused - per_expert).abs().max() <= 2**-7 * per_expert.abs().max()
    assert (fused - plain).abs().max() <= 2**-5 * plain.abs().max()


def test_fused_moe_reads_only_the_chosen_experts(kernel):
    """NaN scales in every expert but the chosen ones: any read of another expert's rows would reach the output."""
    kernel("a8")
    q = QuantExperts.from_experts(Experts(8, 256, 256).bfloat16(), Scheme(4, 128))
    chosen = [1, 6]
    for p in ("gate_proj", "up_proj", "down_proj"):
        scale = getattr(q, p).scale
        for e in range(8):
            if e not in chosen:
                scale[e] = float("nan")
    x = torch.randn(1, 256).bfloat16()
    with torch.no_grad():
        y = q(x, torch.tensor([chosen]), torch.tensor([[0.5, 0.5]]).bfloat16(), path="few")
    assert torch.isfinite(y).all()


def test_build_is_cached_and_atomic(tmp_path):
    """A fresh cache directory: one library file appears (built under a temporary name), and a second process
    finds it instead of building again."""
    code = ("import omni.quant.native as n, time; t = time.time(); assert n.available(); "
            "print(round(time.time() - t, 3))")
    env = dict(os.environ, OMNI_CACHE=str(tmp_path))
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    files = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert len(files) == 1 and files[0].startswith("cpu_kernels-") and files[0].endswith(".so")


def test_cpu_check_reads_the_flags_line():
    here = native._cpu_id()
    assert native.cpu_supported(here)  # this module runs only where the kernels do
    assert not native.cpu_supported("flags : fpu sse2 avx2 fma avx512f avx512bw")  # AVX-512 without VNNI / BF16


def test_bad_kernel_variable_is_a_named_error():
    code = ("import torch, pytest; from omni.errors import InputError; from omni.quant.modules import QuantLinear; "
            "from omni.quant.scheme import Scheme\n"
            "with pytest.raises(InputError, match='OMNI_INT4_KERNEL'):\n"
            "    QuantLinear.from_linear(torch.nn.Linear(256, 128), Scheme(4, 128))")
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMNI_INT4_KERNEL="fast"), check=True)


def test_off_switch_falls_back_to_torch_kernel():
    code = ("import torch, omni.quant.native as n; from omni.quant.modules import QuantLinear; "
            "from omni.quant.scheme import Scheme; assert not n.available(); "
            "w = QuantLinear.from_linear(torch.nn.Linear(256, 128), Scheme(4, 128)).weight; "
            "assert w.blocked and not w.native")
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMNI_NATIVE="0"), check=True)


def test_compiled_graph_calls_the_kernels(kernel):
    """Inside torch.compile (fullgraph, as generate(compile=True) runs a decode step) the kernels are custom ops in
    the graph, not a graph break and not the dequantizing paths; outputs equal eager."""
    kernel("a8")
    torch.manual_seed(0)
    lin = QuantLinear.from_linear(torch.nn.Linear(256, 132).bfloat16(), Scheme(4, 128))
    moe = QuantExperts.from_experts(Experts(8, 256, 256).bfloat16(), Scheme(4, 128, False))

    def step(x, idx, w):
        return lin(moe(x, idx, w))

    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    x, idx, w = torch.randn(1, 256).bfloat16(), torch.tensor([[3, 5]]), torch.tensor([[0.25, 0.75]]).bfloat16()
    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(step, backend=backend, fullgraph=True)(x, idx, w)
        want = step(x, idx, w)
    assert "omni.int4_moe" in seen and "omni.int4_linear" in seen
    assert torch.equal(got, want)
