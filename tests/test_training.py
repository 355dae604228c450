"""Training parity with the reference: losses (causal LM + router aux loss), gradients of every parameter, with and
without gradient checkpointing, freezing by component; LoRA adapters (save, reload, merge into the official layout).
"""

import importlib.util
import os

import pytest
import torch

import omni
from omni.checkpoints.qwen3_omni import KEY_MAP
from omni.errors import InputError
from omni.training import freeze, set_gradient_checkpointing, trainable_parameters

from reference import build_reference

LOSS_RTOL = 1e-5
GRAD_ATOL = 1e-4
ENCODERS_LANDED = all(
    importlib.util.find_spec(m) is not None for m in ("omni.tokenizers.audio", "omni.tokenizers.vision")
)


def load_thinker(directory):
    """omni.load of the reference checkpoint; until the encoders exist, a copy without their tensors."""
    if ENCODERS_LANDED:
        return omni.load(directory, components=("thinker",), quiet=True)
    from safetensors.torch import load_file, save_file

    text_dir = os.path.join(directory, "text_only")
    if not os.path.isdir(text_dir):
        os.makedirs(text_dir)
        tensors = load_file(os.path.join(directory, "model.safetensors"))
        keep = {k: v for k, v in tensors.items() if not k.startswith(("thinker.visual.", "thinker.audio_tower."))}
        save_file(keep, os.path.join(text_dir, "model.safetensors"))
        os.link(os.path.join(directory, "config.json"), os.path.join(text_dir, "config.json"))
    return omni.load(text_dir, components=("thinker",), quiet=True)


def reference_grad(ref, name: str, param: torch.Tensor) -> torch.Tensor:
    """The reference's gradient for the omni parameter `name`, in omni's layout (via the official key names)."""
    stacked = KEY_MAP.is_stacked(name)
    key = KEY_MAP.to_official(name, param.shape[0] if stacked else 1)[0]
    for disk, memory in (("thinker.model.", "thinker.model.language_model."),
                         ("thinker.visual.", "thinker.model.visual."),
                         ("thinker.audio_tower.", "thinker.model.audio_tower.")):
        if key.startswith(disk):
            key = memory + key[len(disk):]
            break
    params = dict(ref.named_parameters())
    if not stacked:
        return params[key].grad
    # on disk one tensor per expert; in the reference's memory gate and up are fused (gate rows first)
    base, proj = key.split(".experts.")[0] + ".experts.", key.rsplit(".", 2)[-2]
    if proj == "down_proj":
        return params[base + "down_proj"].grad
    fused = params[base + "gate_up_proj"].grad
    half = fused.shape[1] // 2
    return fused[:, :half] if proj == "gate_proj" else fused[:, half:]


def batch(seed=0, B=2, T=17, pad=5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 200, (B, T), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0  # left padding on the second row
    ids[1, :pad] = 0
    labels = ids.clone()
    # the prompt part carries no loss; it also covers the first real token of the padded row, whose prediction
    # would come from a padding position (garbage in both implementations)
    labels[:, : pad + 3] = -100
    return dict(input_ids=ids, attention_mask=mask, labels=labels)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    directory = tmp_path_factory.mktemp("training")
    ref = build_reference(directory)
    return ref, load_thinker(directory)


def run_both(ref, model, inputs):
    ref.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    want = ref.thinker(**inputs, output_router_logits=True)
    got = model.thinker(**inputs, output_router_logits=True)
    want.loss.backward()
    got.loss.backward()
    return want, got


def max_grad_error(ref, model):
    worst, where, checked = 0.0, None, 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        want = reference_grad(ref, name, p)
        assert p.grad is not None and want is not None, name
        err = (p.grad - want).abs().max().item()
        checked += 1
        if err > worst:
            worst, where = err, name
    return worst, where, checked


def test_loss_includes_router_aux_loss_like_reference(pair):
    ref, model = pair
    inputs = batch(1)
    with torch.no_grad():
        want = ref.thinker(**inputs, output_router_logits=True)
        got = model.thinker(**inputs, output_router_logits=True)
        plain = model.thinker(**inputs)
    assert abs(got.aux_loss.item() - want.aux_loss.item()) <= LOSS_RTOL * abs(want.aux_loss.item())
    assert abs(got.loss.item() - want.loss.item()) <= LOSS_RTOL * abs(want.loss.item())
    coef = model.config.thinker_config.text_config.router_aux_loss_coef
    assert got.loss.item() == pytest.approx(plain.loss.item() + coef * got.aux_loss.item(), rel=1e-6)
    assert len(got.router_logits) == model.config.thinker_config.text_config.num_hidden_layers


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match_reference(pair, checkpointing):
    ref, model = pair
    model.train()
    set_gradient_checkpointing(model, checkpointing)
    try:
        want, got = run_both(ref, model, batch(2))
    finally:
        set_gradient_checkpointing(model, False)
        model.eval()
    assert abs(got.loss.item() - want.loss.item()) <= LOSS_RTOL * abs(want.loss.item())
    worst, where, checked = max_grad_error(ref, model)
    assert checked == sum(1 for _ in model.parameters())
    assert worst <= GRAD_ATOL, f"{where}: {worst}"


def saved_activation_bytes(model, inputs):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.thinker(**inputs, output_router_logits=True).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total


def test_gradient_checkpointing_saves_activation_memory(pair):
    _, model = pair
    inputs = batch(3, T=64, pad=3)
    model.train()
    try:
        plain = saved_activation_bytes(model, inputs)
        model.gradient_checkpointing_enable()
        assert model.thinker.decoder.gradient_checkpointing
        light = saved_activation_bytes(model, inputs)
    finally:
        model.gradient_checkpointing_enable(False)
        model.eval()
    assert light < 0.5 * plain, (light, plain)


def test_freeze_by_component(pair):
    ref, model = pair
    try:
        n = model.freeze("embeddings", "decoder")
        trainable, total = trainable_parameters(model)
        assert trainable == model.thinker.lm_head.weight.numel() and n == total - trainable
        run_both(ref, model, batch(4))
        assert all(p.grad is None for n_, p in model.named_parameters() if n_ != "thinker.lm_head.weight")
        worst, where, checked = max_grad_error(ref, model)
        assert checked == 1 and worst <= GRAD_ATOL, f"{where}: {worst}"
        model.unfreeze("thinker")
        assert trainable_parameters(model) == (total, total)
        with pytest.raises(InputError, match="no component 'visoin'"):
            freeze(model, "decoder", "visoin")
        assert trainable_parameters(model) == (total, total)  # a bad name changes nothing
        with pytest.raises(InputError):
            model.freeze()
    finally:
        model.unfreeze("thinker")
