"""Parity of the Thinker's text decoder with the reference (text-only inputs), and its size at full scale."""

import pytest
import torch

import omni
from omni.config import OmniConfig

from reference import build_reference


def _load_pair(tmp_path, **overrides):
    ref = build_reference(tmp_path, **overrides)
    model = omni.load(tmp_path, components=("thinker",), quiet=True)
    return ref, model


def _compare(ref, model, ids, mask=None):
    with torch.no_grad():
        want = ref.thinker(input_ids=ids, attention_mask=mask).logits
        got = model.thinker(input_ids=ids, attention_mask=mask).logits
    keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    return (want - got)[keep].abs().max().item()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return _load_pair(tmp_path_factory.mktemp("thinker"))


def test_thinker_text_single_sequence(pair):
    ref, model = pair
    ids = torch.randint(0, 200, (1, 23), generator=torch.Generator().manual_seed(1))
    assert _compare(ref, model, ids) <= 1e-4


def test_thinker_text_batch_left_padding(pair):
    ref, model = pair
    ids = torch.randint(0, 200, (2, 19), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    ids[1, :6] = 0
    assert _compare(ref, model, ids, mask) <= 1e-4


def test_thinker_text_dense_layers_and_unnormalised_topk(tmp_path):
    ref, model = _load_pair(tmp_path, text={"mlp_only_layers": [1], "norm_topk_prob": False})
    assert not hasattr(model.thinker.decoder.layers[1].ffn, "router")
    ids = torch.randint(0, 200, (2, 11), generator=torch.Generator().manual_seed(3))
    assert _compare(ref, model, ids, torch.ones_like(ids)) <= 1e-4


def test_thinker_text_odd_head_dim(tmp_path):
    # head_dim 10 with 4 heads on width 32: q width 40 != hidden; mrope sections 2+2+1 = head_dim/2
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 1], "interleaved": True}
    ref, model = _load_pair(tmp_path, text={"head_dim": 10, "rope_parameters": rope, "decoder_sparse_step": 2})
    ids = torch.randint(0, 200, (1, 9), generator=torch.Generator().manual_seed(4))
    assert _compare(ref, model, ids) <= 1e-4


def test_thinker_text_hidden_states_and_loss(pair):
    ref, model = pair
    ids = torch.randint(0, 200, (2, 13), generator=torch.Generator().manual_seed(5))
    labels = ids.clone()
    labels[:, :4] = -100
    with torch.no_grad():
        want = ref.thinker(input_ids=ids, labels=labels, output_hidden_states=True)
        got = model.thinker(input_ids=ids, labels=labels, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(want.hidden_states, got.hidden_states):
        assert (a - b).abs().max() <= 1e-4
    assert abs(want.loss.item() - got.loss.item()) <= 1e-5 * abs(want.loss.item())


def test_logits_to_keep(pair):
    """Generation asks for the last position only; the kept logits equal the full forward's."""
    _, model = pair
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model.thinker(input_ids=ids).logits
        last = model.thinker(input_ids=ids, logits_to_keep=1).logits
        three = model.thinker(input_ids=ids, logits_to_keep=3).logits
    assert last.shape == (2, 1, full.shape[-1]) and torch.allclose(last, full[:, -1:], atol=1e-6)
    assert torch.allclose(three, full[:, -3:], atol=1e-6)
    for bad in (-1, 1.5, True):
        with pytest.raises(omni.InputError, match="logits_to_keep"):
            model.thinker(input_ids=ids, logits_to_keep=bad)
    with pytest.raises(omni.InputError, match="labels"):
        model.thinker(input_ids=ids, labels=ids, logits_to_keep=1)


def test_thinker_text_parameter_count_full_size():
    """The 30B-A3B Thinker LM built on the meta device has exactly the reference's parameter count."""
    from transformers import Qwen3OmniMoeConfig
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as ref_mod

    cfg = OmniConfig.from_name("qwen3-omni-30b-a3b")
    ref_cfg = Qwen3OmniMoeConfig(**cfg.to_dict()).thinker_config.text_config
    with torch.device("meta"):
        ref = ref_mod.Qwen3OmniMoeThinkerTextModel(ref_cfg)
        head = torch.nn.Linear(ref_cfg.hidden_size, ref_cfg.vocab_size, bias=False)
        model = omni.OmniModel(cfg, components=("thinker",))
    want = sum(p.numel() for p in ref.parameters()) + head.weight.numel()
    t = model.thinker
    got = sum(p.numel() for m in (t.embed_tokens, t.decoder, t.lm_head) for p in m.parameters())
    assert got == want
    assert next(model.parameters()).is_meta
