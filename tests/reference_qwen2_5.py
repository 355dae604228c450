"""Tiny random Qwen2.5-Omni reference models from transformers (the oracle), saved in the official on-disk layout.

Only the Thinker is built (`enable_audio_output=False`): save_pretrained then writes `thinker.*` tensors and a full
`qwen2_5_omni` config.json (talker / token2wav blocks at their defaults), which is what `omni.load(...,
components=("thinker",))` reads. transformers is a test dependency only; omni never imports it.
"""

from __future__ import annotations

import torch

from reference import is_norm_scale, load_part, randomise

ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 2, 2]}

TEXT = dict(
    vocab_size=256, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=2048, rope_parameters=ROPE,
)
AUDIO = dict(
    num_mel_bins=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16, output_dim=48,
    n_window=10, max_source_positions=100,
)
VISION = dict(
    depth=3, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=4, temporal_patch_size=2,
    spatial_merge_size=2, window_size=16, out_hidden_size=48, fullatt_block_indexes=[1],
)
IDS = dict(audio_token_index=200, image_token_index=201, video_token_index=202, audio_start_token_id=203,
           audio_end_token_id=204, vision_start_token_id=205, vision_end_token_id=206, position_id_per_seconds=25,
           seconds_per_chunk=2)


def is_centred(name: str) -> bool:
    """Parameters randomised around 1: norm scales, and the merger's LayerNorm (named ln_q)."""
    return is_norm_scale(name) or "ln_q" in name


def thinker_config_dict(text=None, audio=None, vision=None, **ids) -> dict:
    return dict(text_config={**TEXT, **(text or {})}, audio_config={**AUDIO, **(audio or {})},
                vision_config={**VISION, **(vision or {})}, **{**IDS, **ids})


def build_reference(directory, seed=0, **overrides):
    """Build, randomise and save a tiny Qwen2_5OmniForConditionalGeneration (thinker only); returns the fp32 model."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2_5OmniConfig(thinker_config=thinker_config_dict(**overrides), enable_audio_output=False)
    model = randomise(Qwen2_5OmniForConditionalGeneration(cfg).float().eval(), centred=is_centred)
    model.save_pretrained(directory)
    return model


def reference_and_tower(directory, tower_class, part: str):
    """(reference Thinker, omni `tower_class` built from the saved config's thinker.{part}_config and filled from
    the saved checkpoint through the key map) for one freshly built reference in `directory`."""
    from omni.config import OmniConfig

    ref = build_reference(directory)
    cfg = getattr(OmniConfig.from_pretrained(directory).thinker, f"{part}_config")
    from omni.models.qwen2_5_omni.weights import KEY_MAP

    return ref.thinker, load_part(directory, tower_class(cfg), f"thinker.{part}.", KEY_MAP)
