"""Tiny random reference models from transformers (the oracle), saved in the official on-disk layout.

transformers is a test dependency only; omni never imports it.
"""

from __future__ import annotations

import copy

import torch

ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 2, 2], "interleaved": True}

TEXT = dict(
    vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=12, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2,
    max_position_embeddings=1024, rope_parameters=ROPE,
)
AUDIO = dict(
    num_mel_bins=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16, output_dim=32,
    n_window=50, n_window_infer=200, downsample_hidden_size=8, max_source_positions=100,
)
VISION = dict(
    depth=3, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=4, temporal_patch_size=2,
    spatial_merge_size=2, out_hidden_size=32, num_position_embeddings=16, deepstack_visual_indexes=[0, 1],
)
IDS = dict(audio_token_id=200, image_token_id=201, video_token_id=202, audio_start_token_id=203,
           vision_start_token_id=204, position_id_per_seconds=13)
TALKER = dict(
    text_config=dict(
        vocab_size=64, hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=12, moe_intermediate_size=8, shared_expert_intermediate_size=16,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, rope_parameters=ROPE,
    ),
    code_predictor_config=dict(
        vocab_size=32, hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=12, num_code_groups=4,
    ),
    num_code_groups=4, thinker_hidden_size=32, accept_hidden_layer=2, codec_eos_token_id=40,
    codec_nothink_id=41, codec_think_bos_id=42, codec_think_eos_id=43, codec_pad_id=44, codec_bos_id=45,
    speaker_id={"ethan": 50, "chelsie": 51}, spatial_merge_size=2, **IDS,
)
CODE2WAV = dict(
    codebook_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
    intermediate_size=32, num_quantizers=4, upsample_rates=[2, 2], upsampling_ratios=[2], decoder_dim=16,
    sliding_window=8,
)


def tiny_config_dict(text=None, audio=None, vision=None, talker=None, code2wav=None) -> dict:
    """Keyword dicts for Qwen3OmniMoeConfig; each argument updates the matching block."""
    th = dict(text_config={**TEXT, **(text or {})}, audio_config={**AUDIO, **(audio or {})},
              vision_config={**VISION, **(vision or {})}, **IDS)
    tk = copy.deepcopy(TALKER)
    for k, v in (talker or {}).items():
        tk[k] = {**tk[k], **v} if isinstance(v, dict) and k in tk and isinstance(tk[k], dict) else v
    return dict(thinker_config=th, talker_config=tk, code2wav_config={**CODE2WAV, **(code2wav or {})})


def build_reference(directory, seed=0, **overrides):
    """Build, randomise and save a tiny Qwen3OmniMoeForConditionalGeneration; returns the fp32 model."""
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen3OmniMoeConfig(**tiny_config_dict(**overrides))
    model = randomise(Qwen3OmniMoeForConditionalGeneration(cfg).float().eval())
    model.save_pretrained(directory)
    return model


def is_norm_scale(name: str) -> bool:
    return "norm" in name and name.endswith("weight")


def randomise(model, centred=is_norm_scale):
    """Default init leaves norms at 1 and some tensors at 0: randomise everything so every weight matters
    (parameters named by `centred` around 1, the rest around 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if centred(name) else 0.0) + 0.1 * torch.randn_like(p))
    return model


def load_part(directory, module, prefix: str, key_map):
    """Fill a standalone omni module (e.g. a tower) from the checkpoint in `directory` through a release's production
    key map: the tensors whose omni names start with `prefix`, loaded strictly (any mismatch raises)."""
    import glob
    import os

    from safetensors.torch import load_file

    state = {}
    for file in glob.glob(os.path.join(directory, "*.safetensors")):
        for key, tensor in load_file(file).items():
            mapped = key_map.to_omni(key)
            if mapped is not None and mapped.name.startswith(prefix):
                state[mapped.name[len(prefix):]] = tensor
    module.load_state_dict(state, strict=True)
    return module.eval()
