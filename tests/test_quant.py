"""omni.quant: the pack-quantized format bit for bit against the compressed-tensors package, the in-memory
layouts, and the fast kernels against the plain dequantize-then-matmul path."""

import pytest
import torch

from omni.nn.moe import Experts
from omni.quant import packing
from omni.quant.experts import QuantExperts
from omni.quant.modules import QuantLinear, _kernel_layout_ok, cpu_kernel, set_cpu_kernel
from omni.quant.scheme import Scheme

ct_helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")

SCHEMES = [Scheme(b, g, s) for b in (4, 8) for g in (32, 64, 128, None) for s in (True, False)]


def _ct_quantize(w, scheme):
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    args = QuantizationArgs(num_bits=scheme.bits, symmetric=scheme.symmetric, group_size=scheme.group_size,
                            strategy="channel" if scheme.group_size is None else "group")
    g = scheme.group_size or w.shape[-1]
    grouped = w.reshape(w.shape[0], -1, g)
    scale, zp = calculate_qparams(grouped.amin(-1), grouped.amax(-1), args)
    zp = None if scheme.symmetric else zp
    return quantize(w, scale, zp, args, dtype=torch.int8), scale, zp, args


def test_pack_reference_value():
    q = torch.tensor([[-8, -7, 0, 1, 2, 3, 4, 7]], dtype=torch.int8)
    assert packing.pack_int32(q, 4).item() & 0xFFFFFFFF == 0xFCBA9810


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name.replace(" ", "-"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_pack_unpack_equal_compressed_tensors(scheme, dtype):
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    w = (torch.randn(96, 256, generator=torch.Generator().manual_seed(scheme.bits)) * 0.05).to(dtype)
    w[3, :40] = 0  # an all-zero group: the scale's epsilon rule
    q_ct, scale_ct, zp_ct, args = _ct_quantize(w, scheme)
    q, scale, zp = packing.quantize(w, scheme.bits, scheme.group_size, scheme.symmetric)
    assert torch.equal(q, q_ct) and torch.equal(scale, scale_ct)
    packed = ct_helpers.pack_to_int32(q_ct, scheme.bits)
    assert torch.equal(packing.pack_int32(q, scheme.bits), packed)
    assert torch.equal(packing.unpack_int32(packed, scheme.bits, 256), q_ct)
    if not scheme.symmetric:
        assert torch.equal(zp, zp_ct)
        packed_zp = ct_helpers.pack_to_int32(zp_ct, scheme.bits, packed_dim=0)
        assert torch.equal(packing.pack_zero_point(zp, scheme.bits), packed_zp)
        assert torch.equal(packing.unpack_zero_point(packed_zp, scheme.bits, 96), zp_ct)
    assert torch.equal(packing.dequantize(q, scale, zp), dequantize(q_ct, scale_ct, zp_ct, args))


@pytest.mark.parametrize("k", [64, 40, 12])  # widths that are not a multiple of 32 / 8 pad the last word
def test_pack_odd_widths(k):
    q = torch.randint(-8, 8, (5, k), dtype=torch.int8, generator=torch.Generator().manual_seed(k))
    packed = ct_helpers.pack_to_int32(q, 4)
    assert torch.equal(packing.pack_int32(q, 4), packed)
    assert torch.equal(packing.unpack_int32(packed, 4, k), q)


@pytest.mark.parametrize("blocked", [True, False])
def test_nibble_layouts_round_trip(blocked):
    q = torch.randint(-8, 8, (3, 128, 64), dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(packing.nibbles_to_codes(packing.codes_to_nibbles(q, blocked), blocked, 64), q)


def test_blocked_layout_is_the_cpu_kernel_layout():
    if not hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu"):
        pytest.skip("this torch has no CPU int4 kernel")
    assert _kernel_layout_ok()


def _linear(n, k, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(k, n, bias=True)


FAST = [Scheme(4, 32), Scheme(4, 128), Scheme(4, 64, False), Scheme(8, None)]


@pytest.fixture(params=["torch", "bf16"])
def exact_kernel(request):
    """The exact CPU int4 kernels: torch's, and omni's bf16 mode where it applies (group 128 here; other groups
    take torch's). omni's a8 mode has its own tests (tests/test_cpu_kernels.py)."""
    before = cpu_kernel()
    set_cpu_kernel(request.param)
    yield request.param
    set_cpu_kernel(before)


@pytest.mark.parametrize("scheme", FAST, ids=lambda s: s.name.replace(" ", "-"))
@pytest.mark.parametrize("rows", [1, 3, 17])
def test_fast_kernels_equal_plain_path(scheme, rows, exact_kernel):
    q = QuantLinear.from_linear(_linear(128, 256).to(torch.bfloat16), scheme)
    x = torch.randn(rows, 256, generator=torch.Generator().manual_seed(rows)).to(torch.bfloat16)
    assert q.weight.fast_ok(x)
    plain = q.weight.linear(x, path="plain").float()
    fast = q.weight.linear(x, path="fast").float()
    strided = torch.stack([x, x], -1)[..., 0]  # a non-contiguous view of the same values
    assert torch.equal(q.weight.linear(strided, path="fast").float(), fast)
    # bf16 outputs: the kernels accumulate in fp32 in another order; one bf16 step of the largest value
    assert (fast - plain).abs().max().item() <= 2 ** -7 * plain.abs().max().item()
    if scheme.bits == 8:  # the int8 kernel takes fp32 too, where the orders agree closely
        x32 = x.float()
        q32 = QuantLinear.from_linear(_linear(128, 256), scheme)
        assert torch.allclose(q32.weight.linear(x32, path="fast"), q32.weight.linear(x32, path="plain"),
                              atol=1e-5, rtol=1e-5)


def test_fast_path_choice():
    q = QuantLinear.from_linear(_linear(128, 256).to(torch.bfloat16), Scheme(4, 32))
    assert q.weight.fast_ok(torch.zeros(1, 256, dtype=torch.bfloat16))
    assert q.weight.fast_ok(torch.zeros(16, 256, dtype=torch.bfloat16))  # an expert's share of a prefill
    assert not q.weight.fast_ok(torch.zeros(256, 256, dtype=torch.bfloat16))  # many rows: dequantize + GEMM
    assert not q.weight.fast_ok(torch.zeros(1, 256))  # the CPU int4 kernel is slow in fp32
    odd = QuantLinear.from_linear(_linear(48, 64).to(torch.bfloat16), Scheme(4, 32))
    assert not odd.weight.blocked and not odd.weight.fast_ok(torch.zeros(1, 64, dtype=torch.bfloat16))


@pytest.mark.parametrize("scheme", [Scheme(4, 32), Scheme(8, None), Scheme(4, 32, False)], ids=str)
@pytest.mark.parametrize("tokens", [1, 3, 9])
def test_quantized_experts_paths_and_dequantized_reference(scheme, tokens, exact_kernel):
    torch.manual_seed(0)
    experts = Experts(8, 64, 128)
    q = QuantExperts.from_experts(experts, scheme)
    for name in ("gate_proj", "up_proj", "down_proj"):  # the float experts with the dequantized weights
        with torch.no_grad():
            getattr(experts, name).copy_(getattr(q, name).dequantized())
    x = torch.randn(tokens, 64)
    idx = torch.randint(0, 8, (tokens, 2))
    w = torch.rand(tokens, 2)
    with torch.no_grad():
        want = experts(x, idx, w, path="segmented")
        for path in ("few", "segmented", "gather"):
            assert torch.allclose(q(x, idx, w, path=path), want, atol=1e-6, rtol=1e-5), path
        xb, wb = x.bfloat16(), w.bfloat16()
        qb = QuantExperts.from_experts(experts.bfloat16(), scheme)
        qb.linear_path = "plain"
        plain = qb(xb, idx, wb, path="few").float()
        qb.linear_path = "fast"
        if all(getattr(qb, n).fast_ok(xb[:1]) for n in ("gate_proj", "up_proj", "down_proj")):
            fast = qb(xb, idx, wb, path="few").float()
            assert (fast - plain).abs().max().item() <= 2 ** -6 * plain.abs().max().item()
            qb.linear_path = "auto"  # decode's hoisted int4 loop: the same arithmetic as the per-matrix fast path
            assert torch.equal(qb(xb, idx, wb, path="few").float(), fast)


def test_decode_reads_only_the_active_experts():
    q = QuantExperts.from_experts(Experts(8, 64, 128), Scheme(4, 32))
    touched = []
    for name in ("gate_proj", "up_proj", "down_proj"):
        pw = getattr(q, name)
        original = pw.linear

        def spy(x, e=None, path="auto", _orig=original):
            touched.append(e)
            return _orig(x, e, path)

        pw.linear = spy
    with torch.no_grad():
        q(torch.randn(1, 64), torch.tensor([[2, 5]]), torch.tensor([[0.5, 0.5]]))
    assert sorted(set(touched)) == [2, 5]


def test_compiled_decode_of_a_quantized_model(tmp_path):
    """Under torch.compile (fullgraph) the experts take the gather path and the kernels the plain one."""
    import omni
    from omni.demo import build_tiny_checkpoint

    model = omni.load(build_tiny_checkpoint(str(tmp_path), seed=0), quiet=True, quantize="int4", group_size=32)
    ids = torch.randint(11, 200, (1, 12), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    want = model.generate(batch, max_new_tokens=6, eos_token_ids=())
    assert torch.equal(model.generate(batch, max_new_tokens=6, eos_token_ids=(), compile="eager"), want)
