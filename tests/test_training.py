"""Training parity with the reference: losses (causal LM + router aux loss), gradients of every parameter (text and
image batches), with and without gradient checkpointing, freezing by component; LoRA adapters (save, reload, merge
into the official layout); examples/finetune.py on text + image conversations, checkpoint and exact resume.
"""

import importlib.util
import os

import numpy as np
import pytest
import torch

import omni
from omni.models.qwen3_omni.weights import KEY_MAP
from omni.errors import InputError
from omni.training import freeze, set_gradient_checkpointing, trainable_parameters

from reference import build_reference

LOSS_RTOL = 1e-5
GRAD_ATOL = 1e-4


def towers_missing(directory) -> list[str]:
    """Checkpoint prefixes of the encoders this build of omni does not have yet (they land one by one)."""
    from omni.thinker import Thinker

    with torch.device("meta"):
        thinker = Thinker(omni.OmniConfig.from_pretrained(directory).thinker_config)
    return [prefix for prefix, attr in (("thinker.visual.", "vision"), ("thinker.audio_tower.", "audio"))
            if not hasattr(thinker, attr)]


def load_thinker(directory):
    """omni.load of the reference checkpoint; while an encoder is still missing, a copy without its tensors."""
    missing = towers_missing(directory)
    if not missing:
        return omni.load(directory, components=("thinker",), quiet=True)
    from safetensors.torch import load_file, save_file

    text_dir = os.path.join(directory, "without_" + "_".join(p.split(".")[1] for p in missing))
    if not os.path.isdir(text_dir):
        os.makedirs(text_dir)
        tensors = load_file(os.path.join(directory, "model.safetensors"))
        keep = {k: v for k, v in tensors.items() if not k.startswith(tuple(missing))}
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
        assert (p.grad is None) == (want is None), name  # the same parameters took part
        if want is None:
            continue
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
    text_params = [n for n, _ in model.named_parameters() if not n.startswith(("thinker.vision", "thinker.audio"))]
    assert checked == len(text_params)
    assert worst <= GRAD_ATOL, f"{where}: {worst}"


def media_batch(kind: str, seed=0):
    """Two right-padded rows, each with one image (grids 1x4x4 and 1x4x6 -> 4 and 6 tokens) or one clip of
    16-bin log-mel frames (100 and 160 frames -> 13 and 20 tokens)."""
    from omni.models.qwen3_omni.audio import audio_token_count

    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        grids = torch.tensor([[1, 4, 4], [1, 4, 6]])
        media = dict(pixel_values=torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 4 * 4, generator=g),
                     image_grid_thw=grids)  # (patches, C*T*P*P)
        counts, start, token = [4, 6], 204, 201  # vision_start, image placeholder
    else:
        frames = torch.tensor([100, 160])
        media = dict(input_features=torch.randn(2, 16, 160, generator=g),  # (B, mel bins, frames)
                     feature_attention_mask=(torch.arange(160)[None] < frames[:, None]).long())
        counts, start, token = audio_token_count(frames).tolist(), 203, 200  # audio_start, audio placeholder
    rows = []
    for n in counts:
        text = torch.randint(0, 200, (6,), generator=g).tolist()
        rows.append(text[:3] + [start] + [token] * n + text[3:])
    ids = torch.zeros(2, max(len(r) for r in rows), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, r in enumerate(rows):
        ids[b, : len(r)], mask[b, : len(r)] = torch.tensor(r), 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100
    return dict(input_ids=ids, attention_mask=mask, labels=labels, **media)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("kind, tower, other", [("image", "vision", "audio"), ("audio", "audio", "vision")])
def test_gradients_match_reference_with_media(pair, kind, tower, other, checkpointing):
    ref, model = pair
    if not hasattr(model.thinker, tower):
        pytest.skip(f"the {tower} tower has not landed in this checkout")
    model.train()
    set_gradient_checkpointing(model, checkpointing)
    try:
        want, got = run_both(ref, model, media_batch(kind, 6))
    finally:
        set_gradient_checkpointing(model, False)
        model.eval()
    assert abs(got.loss.item() - want.loss.item()) <= LOSS_RTOL * abs(want.loss.item())
    worst, where, checked = max_grad_error(ref, model)
    assert checked == sum(1 for n, _ in model.named_parameters() if not n.startswith(f"thinker.{other}"))
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
        total = model.freeze("thinker")
        assert model.unfreeze("lm_head") == model.thinker.lm_head.weight.numel()
        assert trainable_parameters(model) == (model.thinker.lm_head.weight.numel(), total)
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


# -- LoRA ----------------------------------------------------------------------------------------------------------

pytest.importorskip("peft")
from omni.training.lora import add_lora, load_adapter, lora_targets, merge_lora, save_adapter  # noqa: E402


def tiny_thinker(seed=0):
    torch.manual_seed(seed)
    return omni.OmniModel(omni.OmniConfig.from_name("tiny"), components=("thinker",))


def test_lora_targets_train_and_merge_into_official_layout(tmp_path):
    model = tiny_thinker()
    ids = torch.randint(0, 250, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base = model.thinker(input_ids=ids).logits
    n_layers = model.config.thinker_config.text_config.num_hidden_layers
    modules, params = lora_targets(model)
    assert len(modules) == 4 * n_layers and len(params) == 3 * n_layers  # q k v o; gate up down of the experts
    peft_model = add_lora(model, r=4, alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    with torch.no_grad():  # fresh adapters start as the identity (B = 0)
        assert torch.equal(model.thinker(input_ids=ids).logits, base)
    model.thinker(input_ids=ids, labels=ids, output_router_logits=True).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    with torch.no_grad():  # pretend training moved the adapters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
        adapted = model.thinker(input_ids=ids).logits
    assert (adapted - base).abs().max() > 1e-2

    # the expert adapter is one rank-r pair per expert on the (E, out, in) weight: check expert 3 of layer 0
    experts = model.thinker.decoder.layers[0].ffn.experts
    wrapper = experts  # peft nests one ParamWrapper per targeted parameter; find the one on gate_proj
    while getattr(wrapper, "parameter_name", "gate_proj") != "gate_proj":
        wrapper = wrapper.base_layer
    lhs, rhs, scale = wrapper.get_delta_factors("default")
    expected_delta = scale * lhs[3] @ rhs[3]  # (out, in)
    base_gate = wrapper.get_param()[3].detach().clone()

    save_adapter(peft_model, tmp_path / "adapter")
    fresh = load_adapter(tiny_thinker(), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(fresh.base_model.model.thinker(input_ids=ids).logits, adapted)

    merged = merge_lora(fresh)
    assert isinstance(merged, omni.OmniModel) and not any("lora" in n for n, _ in merged.named_parameters())
    gate = merged.thinker.decoder.layers[0].ffn.experts.gate_proj[3]
    assert torch.allclose(gate, base_gate + expected_delta, atol=1e-6)
    omni.save(merged, tmp_path / "merged")
    reloaded = omni.load(tmp_path / "merged", components=("thinker",), quiet=True)
    with torch.no_grad():
        assert (reloaded.thinker(input_ids=ids).logits - adapted).abs().max() <= 1e-4


def test_lora_on_the_vision_tower_too():
    model = tiny_thinker()
    depth = model.config.thinker_config.vision_config.depth
    modules, params = lora_targets(model, targets=("attention", "mlp"), scope="thinker.vision")
    assert len(modules) == 4 * depth and not params  # qkv, proj, fc1, fc2 per block
    both, _ = lora_targets(model, targets=("attention",), scope=("thinker.decoder", "thinker.vision"))
    assert len(both) == 4 * model.config.thinker_config.text_config.num_hidden_layers + 2 * depth
    add_lora(model, targets=("attention", "mlp"), scope=("thinker.decoder", "thinker.vision"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("thinker.vision.blocks.0.attn.qkv.lora_A") for n in trainable)


def test_lora_rejects_bad_requests():
    model = tiny_thinker()
    with pytest.raises(InputError, match="unknown LoRA target"):
        add_lora(model, targets=("attention", "qkv"))
    with pytest.raises(InputError, match="dropout"):
        add_lora(model, dropout=0.1)
    with pytest.raises(InputError, match="no LoRA targets"):
        add_lora(model, scope="thinker.nothing")
    with pytest.raises(InputError, match="rank"):
        add_lora(model, r=0)
    peft_model = add_lora(model, dropout=0.1, targets=("attention", "mlp"))  # dense targets take dropout
    assert not any(p.requires_grad for n, p in peft_model.named_parameters() if "experts" in n)


# -- examples/finetune.py ------------------------------------------------------------------------------------------

def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "..", "examples",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_checkpoint_resume_is_exact(tmp_path):
    import json

    from safetensors.torch import load_file

    from PIL import Image

    finetune = _example("finetune")
    data = tmp_path / "data.jsonl"
    for k in range(2):  # media paths are relative to the data file
        Image.fromarray((np.random.default_rng(k).random((64, 64, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"img{k}.png")
    with open(data, "w") as f:
        for a in range(16):
            user = f"{a} plus {a}?" if a % 2 else [{"type": "image", "image": f"img{a % 4 // 2}.png"},
                                                    {"type": "text", "text": f"{a} dots?"}]
            f.write(json.dumps({"messages": [{"role": "user", "content": user},
                                             {"role": "assistant", "content": str(2 * a)}]}) + "\n")
    common = ["--data", str(data), "--batch-size", "2", "--lr", "3e-3", "--warmup", "1", "--save-every", "2",
              "--no-progress"]
    straight = finetune.main([*common, "--out", str(tmp_path / "a"), "--max-steps", "4"])
    finetune.main([*common, "--out", str(tmp_path / "b"), "--max-steps", "2"])
    resumed = finetune.main([*common, "--out", str(tmp_path / "b"), "--max-steps", "4", "--resume"])
    assert resumed["losses"] == straight["losses"][2:]
    assert straight["losses"][-1] < straight["losses"][0]
    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = load_file(tmp_path / "a" / "base" / "model.safetensors")
    assert not torch.equal(a["thinker.lm_head.weight"], base["thinker.lm_head.weight"])
    qkv = "thinker.visual.blocks.0.attn.qkv.weight"
    assert not torch.equal(a[qkv], base[qkv])  # the image conversations trained the vision tower
    omni.load(tmp_path / "a" / "final", components=("thinker",), quiet=True)  # official layout


def test_conversation_file_errors(tmp_path):
    from omni.training.data import read_conversations

    bad = tmp_path / "bad.jsonl"
    for text, match in (('{"messages": [}', "bad.jsonl:1: not valid JSON"),
                        ('[{"role": "user", "content": "hi"}]', "no assistant message"),
                        ('{"messages": [{"role": "user", "content": [{"type": "image", "image": "gone.png"}]}, '
                         '{"role": "assistant", "content": "x"}]}', "gone.png' does not exist"),
                        ("\n", "holds no conversations")):
        bad.write_text(text)
        with pytest.raises(InputError, match=match):
            read_conversations(bad)
