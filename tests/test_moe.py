"""The MoE fast paths (grouped, few-token decode, gathered bmm) equal the simple segmented loop, and the layer
matches the reference's sparse MoE block."""

import pytest
import torch

from omni.errors import InputError
from omni.nn.moe import MoE, grouped_mm_supported


def _moe(dim=32, hidden=16, n_experts=8, top_k=3, shared=0, seed=0):
    torch.manual_seed(seed)
    moe = MoE(dim, hidden, n_experts, top_k, norm_topk_prob=True, shared_hidden=shared)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.2)
    return moe.eval()


def _route(moe, x_TD):
    probs = moe.router(x_TD).softmax(-1, dtype=torch.float)
    w, idx = probs.topk(moe.top_k, dim=-1)
    return idx, (w / w.sum(-1, keepdim=True)).to(x_TD.dtype)


@pytest.mark.parametrize("tokens", [1, 2, 5, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_moe_paths_agree(tokens, dtype):
    moe = _moe().to(dtype)
    x = torch.randn(tokens, 32, generator=torch.Generator().manual_seed(tokens)).to(dtype)
    idx, w = _route(moe, x)
    with torch.no_grad():
        want = moe.experts(x, idx, w, path="segmented")
        paths = ["few", "gather"] + (["grouped"] if grouped_mm_supported(x, 32, 16) else [])
        tol = 1e-5 if dtype == torch.float32 else 3e-2  # bf16: only the summation order differs
        for path in paths:
            got = moe.experts(x, idx, w, path=path)
            assert got.dtype == dtype and got.shape == x.shape
            assert (got.float() - want.float()).abs().max().item() <= tol, path


def test_moe_auto_path_choice():
    moe = _moe()
    x1, x9 = torch.randn(1, 32), torch.randn(9, 32)
    with torch.no_grad():
        assert moe.experts.choose_path(x1, 3) == "few"  # decode: no sorting, weights read in place
        assert moe.experts.choose_path(x9, 3) == ("grouped" if grouped_mm_supported(x9, 32, 16) else "segmented")
        assert moe.experts.choose_path(x9.bfloat16(), 3) == "segmented"  # no CPU bf16 grouped kernel
    assert moe.experts.choose_path(x1, 3) != "few"  # training (grad enabled) keeps the sorted paths


def test_moe_fast_paths_keep_gradients():
    moe = _moe()
    x = torch.randn(6, 32, requires_grad=True)
    idx, w = _route(moe, x)
    grads = []
    for path in ("segmented", "grouped" if grouped_mm_supported(x, 32, 16) else "gather"):
        moe.zero_grad()
        x.grad = None
        moe.experts(x, idx, w.detach(), path=path).pow(2).sum().backward()
        grads.append((x.grad.clone(), moe.experts.gate_proj.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


def test_moe_unknown_path_raises():
    moe = _moe()
    x = torch.randn(2, 32)
    idx, w = _route(moe, x)
    with pytest.raises(InputError, match="unknown MoE path"):
        moe.experts(x, idx, w, path="fastest")


def test_moe_decode_matches_prefill_with_shared_expert():
    """Token by token (the `few` path) gives what the whole sequence (grouped/segmented) gives."""
    moe = _moe(shared=24)
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole, _ = moe(x)
        steps = torch.cat([moe(x[:, t : t + 1])[0] for t in range(7)], dim=1)
    assert (whole - steps).abs().max().item() <= 1e-5


@pytest.mark.parametrize("tokens", [1, 3, 40])
def test_moe_matches_reference_block(tokens):
    from transformers import Qwen3OmniMoeConfig
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as ref_mod

    from reference import tiny_config_dict

    text = {"hidden_size": 32, "moe_intermediate_size": 16, "num_experts": 8, "num_experts_per_tok": 3}
    cfg = Qwen3OmniMoeConfig(**tiny_config_dict(text=text)).thinker_config.text_config
    ref = ref_mod.Qwen3OmniMoeThinkerTextSparseMoeBlock(cfg).eval()
    moe = _moe()
    with torch.no_grad():
        ref.gate.weight.copy_(moe.router.weight)
        ref.experts.gate_up_proj.copy_(torch.cat([moe.experts.gate_proj, moe.experts.up_proj], dim=1))
        ref.experts.down_proj.copy_(moe.experts.down_proj)
        x = torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(tokens))
        want = ref(x)
        want = want[0] if isinstance(want, tuple) else want
        got, _ = moe(x)
    assert (want - got).abs().max().item() <= 1e-5


def test_moe_decode_traces_as_one_graph_under_torch_compile():
    """Under torch.compile the MoE takes the static-shape gather path: one graph, no breaks, same output."""
    moe = _moe()
    x = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(7))
    compiled = torch.compile(moe, fullgraph=True, backend="eager")  # tracing only: no C++ toolchain needed
    with torch.no_grad():
        want, _ = moe(x)
        got, _ = compiled(x)
    assert (want - got).abs().max().item() <= 1e-6
