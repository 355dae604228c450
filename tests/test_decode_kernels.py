"""The forms compiled decode steps take: omni.nn.Linear (the same layer as nn.Linear, run as a fused multiply + sum
for a few rows inside torch.compile) and omni.nn.attention.decode_attention (one query written out in fp32)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omni.nn.attention import decode_attention, sdpa
from omni.nn.linear import MATVEC_ROWS, Linear, matvec


def _graph_ops(fn, *args):
    """Run fn under torch.compile and return the functions its captured graph calls."""
    seen = []

    def backend(gm, example_inputs):
        seen.extend(n.target for n in gm.graph.nodes if n.op == "call_function")
        return gm

    torch._dynamo.reset()
    out = torch.compile(fn, backend=backend, fullgraph=True)(*args)
    return out, seen


def test_same_parameters_and_keys_as_nn_linear():
    a, b = Linear(7, 5), nn.Linear(7, 5)
    assert isinstance(a, nn.Linear) and a.state_dict().keys() == b.state_dict().keys()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 37), (2, 1, 37), (4, 37), (3, 1, 37)])
def test_matvec_equals_linear(shape, bias):
    g = torch.Generator().manual_seed(0)
    layer = Linear(37, 19, bias=bias)
    x = torch.randn(shape, generator=g)
    want = F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(matvec(x, layer.weight, layer.bias), want, atol=1e-5, rtol=1e-5)
    got, ops = _graph_ops(layer, x)
    assert F.linear not in ops  # a few rows: the multiply + sum form
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_many_rows_and_eager_keep_f_linear():
    layer = Linear(16, 8)
    x = torch.randn(MATVEC_ROWS + 1, 16)
    got, ops = _graph_ops(layer, x)
    assert F.linear in ops
    assert torch.equal(layer(x[:1]), F.linear(x[:1], layer.weight, layer.bias))  # eager: always F.linear


@pytest.mark.parametrize("out_in", [(128, 2048), (19, 37), (4096, 2048), (2048, 4096), (1, 64), (3000, 1024)])
def test_eager_one_bf16_row_is_f_linear_bit_for_bit(out_in):
    """The eager one-row bf16 form (torch.mv, faster on CPU) must give F.linear's bits: decode and prefill logits
    of the same position stay identical."""
    g = torch.Generator().manual_seed(2)
    layer = Linear(out_in[1], out_in[0], bias=False).bfloat16()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_in, generator=g))
    for shape in [(1, out_in[1]), (1, 1, out_in[1]), (out_in[1],)]:
        x = torch.randn(shape, generator=g).bfloat16()
        got = layer(x)
        assert got.shape == F.linear(x, layer.weight).shape
        assert torch.equal(got, F.linear(x, layer.weight))


def test_matvec_bf16_accumulates_in_fp32():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 4096, generator=g).bfloat16()
    x = torch.randn(1, 4096, generator=g).bfloat16()
    exact = F.linear(x.double(), w.double())
    got = matvec(x, w)
    assert got.dtype == torch.bfloat16
    assert (got.double() - exact).abs().max() <= 2 ** -7 * exact.abs().max()  # one bf16 rounding, not 4096


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [(4, 4), (8, 2), (6, 1)])  # (query heads, kv heads): MHA, GQA, MQA
def test_decode_attention_equals_sdpa(heads, dtype):
    H, K = heads
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, H, 1, 10, generator=g).to(dtype)  # odd head dim
    k, v = (torch.randn(2, K, 13, 10, generator=g).to(dtype) for _ in range(2))
    mask = torch.ones(2, 1, 1, 13, dtype=torch.bool)
    mask[0, ..., 9:] = False  # unfilled cache slots
    mask[1, ..., :4] = False  # left padding
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=H != K)
    got = decode_attention(q, k, v, mask)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **({} if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)))
    compiled, ops = _graph_ops(sdpa, q, k, v, mask)
    assert F.scaled_dot_product_attention not in ops  # one query under torch.compile: the written-out form
    torch.testing.assert_close(compiled, got)
