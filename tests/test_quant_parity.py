"""A quantized model equals the reference model run on its dequantized weights (fp32, <= 1e-3 relative): the
Thinker on a padded mixed-media batch, the Talker's codes, Code2Wav; greedy text and codes identical. Checkpoints
omni writes decompress with the compressed-tensors package to the same weights."""

import os
import shutil

import pytest
import torch

import omni
from omni.quant import QuantExperts, QuantLinear
from omni.quant.experts import PROJECTIONS
from omni.release import release_of

from reference import ROPE, tiny_config_dict

pytest.importorskip("compressed_tensors")

ROPE16 = {**ROPE, "mrope_section": [4, 2, 2]}  # head_dim 16
# widths that groups of 32 divide (the default tiny model's 12-wide heads and 24-wide Talker would not)
TEXT = dict(hidden_size=64, head_dim=16, intermediate_size=64, moe_intermediate_size=32, rope_parameters=ROPE16)
TALKER_TEXT = dict(vocab_size=1056, hidden_size=32, head_dim=16, intermediate_size=32, moe_intermediate_size=32,
                   shared_expert_intermediate_size=32, rope_parameters=ROPE16)


def _overrides():
    from test_talker import TALKER

    talker = {**TALKER, "text_config": TALKER_TEXT, "thinker_hidden_size": 64,
              "code_predictor_config": dict(hidden_size=32, head_dim=16, rope_parameters=ROPE16)}
    return dict(text=TEXT, vision=dict(out_hidden_size=64), audio=dict(output_dim=64), talker=talker)


def _build(directory):
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    from reference import randomise
    from test_talker import ROOT

    torch.manual_seed(0)
    ref = Qwen3OmniMoeForConditionalGeneration(Qwen3OmniMoeConfig(**tiny_config_dict(**_overrides()), **ROOT))
    randomise(ref.float().eval()).save_pretrained(directory)


def dequantized_reference(src, model, dst):
    """The reference model from `src`'s checkpoint with every quantized layer of `model` replaced by its
    dequantized weights (fp32)."""
    from safetensors.torch import load_file, save_file
    from transformers import Qwen3OmniMoeForConditionalGeneration

    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        if not name.endswith(".safetensors"):
            shutil.copy(os.path.join(src, name), dst)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    key_map = release_of(model).weights.key_map
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            tensors[key_map.to_official(name + ".weight")[0]] = m.weight.dequantized(dtype=torch.float32)
        elif isinstance(m, QuantExperts):
            for p in PROJECTIONS:
                for e, key in enumerate(key_map.to_official(f"{name}.{p}", m.n_experts)):
                    tensors[key] = getattr(m, p).dequantized(e, torch.float32)
    save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return Qwen3OmniMoeForConditionalGeneration.from_pretrained(dst, dtype=torch.float32).eval()


SCHEMES = {"int4-g32": dict(quantize="int4", group_size=32), "int8-channel": dict(quantize="int8", group_size=None)}


@pytest.fixture(scope="module")
def float_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qfloat")
    _build(d)
    return d


@pytest.fixture(scope="module", params=list(SCHEMES))
def pair(request, float_dir, tmp_path_factory):
    model = omni.load(float_dir, quiet=True, **SCHEMES[request.param])
    ref = dequantized_reference(float_dir, model, tmp_path_factory.mktemp("qref"))
    return ref, model


def _relative(got, want, keep=None):
    diff = (got - want) if keep is None else (got - want)[keep]
    return diff.abs().max().item() / want.abs().max().item()


def test_the_default_scope_is_quantized(pair):
    _, model = pair
    layer = model.thinker.decoder.layers[0]
    assert isinstance(layer.attn.q_proj, QuantLinear) and isinstance(layer.ffn.experts, QuantExperts)
    assert isinstance(model.talker.decoder.layers[0].ffn.shared_expert.gate_proj, QuantLinear)
    for float_kept in (layer.ffn.router, model.thinker.lm_head, model.talker.codec_head,
                       model.talker.decoder.layers[0].ffn.shared_expert_gate,
                       model.talker.code_predictor.decoder.layers[0].attn.q_proj):
        assert type(float_kept).__name__ == "Linear"


def test_thinker_mixed_media_padded_batch(pair):
    from test_generation import LAYOUTS, _multimodal_batch
    from test_positions import Prompt

    ref, model = pair
    batch = _multimodal_batch(LAYOUTS["mixed_batch_padded"](Prompt))
    with torch.no_grad():
        want = ref.thinker(**batch).logits
        got = model.thinker(**batch).logits
    assert _relative(got, want, batch["attention_mask"].bool()) <= 1e-3


def test_greedy_text_identical(pair):
    from test_generation import LAYOUTS, _multimodal_batch, _reference_greedy
    from test_positions import Prompt

    ref, model = pair
    batch = _multimodal_batch(LAYOUTS["mixed_batch_padded"](Prompt))
    want = _reference_greedy(ref, batch, 12)
    assert torch.equal(model.generate(batch, max_new_tokens=12, eos_token_ids=()), want)


def test_talker_logits_and_greedy_codes(pair):
    from omni.models.qwen3_omni.speech import generate_codes
    from test_talker import _prompt, _reference_speech, _talker_inputs

    ref, model = pair
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 32, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0
    pos = torch.arange(9).expand(3, 2, 9).clone()
    with torch.no_grad():
        want = ref.talker(inputs_embeds=x, position_ids=pos, attention_mask=mask, use_cache=False).logits
        got = model.talker(x, pos, mask).logits
    assert _relative(got, want, mask.bool()) <= 1e-3
    ids = torch.tensor([_prompt()])
    seen = _reference_speech(ref, ids, talker_do_sample=False, talker_max_new_tokens=10)
    codes = generate_codes(model.talker, _talker_inputs(ref, model, ids, seen), do_sample=False, max_frames=9)
    assert torch.equal(codes.codes, seen["codes"])


def test_code2wav_quantized_on_request(float_dir, tmp_path):
    model = omni.load(float_dir, components=("code2wav",), quiet=True)
    omni.quantize(model, "int8", group_size=None, scope=lambda name, m: name.startswith("code2wav.transformer."))
    assert isinstance(model.code2wav.transformer.layers[0].attn.q_proj, QuantLinear)
    ref = dequantized_reference(float_dir, model, tmp_path / "ref")
    codes = torch.randint(0, 32, (2, 4, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = ref.code2wav(codes), model.code2wav(codes)
    assert _relative(got, want) <= 1e-3


def test_saved_checkpoint_decompresses_with_compressed_tensors(pair, tmp_path):
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file

    _, model = pair
    omni.save(model, tmp_path)
    config = QuantizationConfig.model_validate(omni.OmniConfig.from_pretrained(tmp_path).extra["quantization_config"])
    scheme = config.config_groups["group_0"]
    tensors = load_file(tmp_path / "model.safetensors")
    checked = 0
    for prefix, pw, e in [("thinker.model.layers.1.self_attn.q_proj", model.thinker.decoder.layers[1].attn.q_proj
                           .weight, None),
                          ("thinker.model.layers.0.mlp.experts.3.down_proj",
                           model.thinker.decoder.layers[0].ffn.experts.down_proj, 3),
                          ("talker.model.layers.1.mlp.shared_expert.up_proj",
                           model.talker.decoder.layers[1].ffn.shared_expert.up_proj.weight, None)]:
        parts = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        assert "weight" not in parts and "weight_packed" in parts
        weight = PackedQuantizationCompressor.decompress(parts, scheme)["weight"]
        assert torch.equal(weight, pw.dequantized(e))
        checked += 1
    assert checked == 3
    again = omni.load(tmp_path, quiet=True)  # and omni reads it back quantized, unchanged
    want, got = model.state_dict(), again.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_quantize_on_load_equals_quantize_in_memory(float_dir):
    loaded = omni.load(float_dir, components=("thinker",), quiet=True, quantize="int4", group_size=32)
    in_memory = omni.quantize(omni.load(float_dir, components=("thinker",), quiet=True), "int4", group_size=32)
    want, got = loaded.state_dict(), in_memory.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_wider_scope_on_load_lm_head_int8(float_dir, tmp_path):
    from omni.quant import in_default_scope

    model = omni.load(float_dir, components=("thinker",), quiet=True, quantize="int8", group_size=None,
                      quantize_scope=lambda name, m: in_default_scope(name, m) or name == "thinker.lm_head")
    assert isinstance(model.thinker.lm_head, QuantLinear)
    ref = dequantized_reference(float_dir, model, tmp_path / "ref")
    ids = torch.randint(0, 200, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _relative(model.thinker(input_ids=ids).logits, ref.thinker(input_ids=ids).logits) <= 1e-3
    omni.save(model, tmp_path / "saved")  # lm_head is written packed and read back packed
    assert isinstance(omni.load(tmp_path / "saved", quiet=True).thinker.lm_head, QuantLinear)
