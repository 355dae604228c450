"""omni.nn.Linear: the same layer as nn.Linear, run as a fused multiply + sum for a few rows inside torch.compile."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

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


def test_matvec_bf16_accumulates_in_fp32():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 4096, generator=g).bfloat16()
    x = torch.randn(1, 4096, generator=g).bfloat16()
    exact = F.linear(x.double(), w.double())
    got = matvec(x, w)
    assert got.dtype == torch.bfloat16
    assert (got.double() - exact).abs().max() <= 2 ** -7 * exact.abs().max()  # one bf16 rounding, not 4096
