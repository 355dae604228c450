"""Qwen3-Omni (model_type `qwen3_omni_moe`): the official checkpoint key names and their omni counterparts.

The only place that knows the official tensor names of this release. Left: the name on disk (`{}` = layer /
expert / codebook index, `{*}` = the rest of the key). Right: the omni parameter. Per-expert tensors on disk
(`...experts.{e}.gate_proj.weight`) become one stacked (E, F, D) parameter. The decoder-layer and audio-layer rows
every release shares are omni.checkpoints.keymap's DECODER_LAYER / AUDIO_ENCODER_LAYER, placed here by `under`.
"""

from __future__ import annotations

from ...checkpoints.keymap import AUDIO_ENCODER_LAYER, DECODER_LAYER, KeyMap, Weights, under

_DECODERS = {  # official layer prefix -> omni layer prefix
    "thinker.model.layers.{}.": "thinker.decoder.layers.{}.",
    "talker.model.layers.{}.": "talker.decoder.layers.{}.",
    "talker.code_predictor.model.layers.{}.": "talker.code_predictor.decoder.layers.{}.",
}

_THINKER = {
    "thinker.model.embed_tokens.weight": "thinker.embed_tokens.weight",
    "thinker.model.norm.weight": "thinker.decoder.norm.weight",
    "thinker.lm_head.weight": "thinker.lm_head.weight",
}

_VISION = {  # thinker.visual -> thinker.vision
    "thinker.visual.patch_embed.proj.{*}": "thinker.vision.patch_embed.proj.{*}",
    "thinker.visual.pos_embed.weight": "thinker.vision.pos_embed.weight",
    "thinker.visual.blocks.{}.norm1.{*}": "thinker.vision.blocks.{}.attn_norm.{*}",
    "thinker.visual.blocks.{}.attn.qkv.{*}": "thinker.vision.blocks.{}.attn.qkv.{*}",
    "thinker.visual.blocks.{}.attn.proj.{*}": "thinker.vision.blocks.{}.attn.proj.{*}",
    "thinker.visual.blocks.{}.norm2.{*}": "thinker.vision.blocks.{}.mlp_norm.{*}",
    "thinker.visual.blocks.{}.mlp.linear_fc1.{*}": "thinker.vision.blocks.{}.mlp.fc1.{*}",
    "thinker.visual.blocks.{}.mlp.linear_fc2.{*}": "thinker.vision.blocks.{}.mlp.fc2.{*}",
    "thinker.visual.merger.ln_q.{*}": "thinker.vision.merger.norm.{*}",
    "thinker.visual.merger.mlp.0.{*}": "thinker.vision.merger.fc1.{*}",
    "thinker.visual.merger.mlp.2.{*}": "thinker.vision.merger.fc2.{*}",
    "thinker.visual.merger_list.{}.ln_q.{*}": "thinker.vision.deepstack_mergers.{}.norm.{*}",
    "thinker.visual.merger_list.{}.mlp.0.{*}": "thinker.vision.deepstack_mergers.{}.fc1.{*}",
    "thinker.visual.merger_list.{}.mlp.2.{*}": "thinker.vision.deepstack_mergers.{}.fc2.{*}",
}

_AUDIO = {  # thinker.audio_tower -> thinker.audio
    "thinker.audio_tower.conv2d1.{*}": "thinker.audio.conv1.{*}",
    "thinker.audio_tower.conv2d2.{*}": "thinker.audio.conv2.{*}",
    "thinker.audio_tower.conv2d3.{*}": "thinker.audio.conv3.{*}",
    "thinker.audio_tower.conv_out.weight": "thinker.audio.conv_out.weight",
    "thinker.audio_tower.ln_post.{*}": "thinker.audio.norm_out.{*}",
    "thinker.audio_tower.proj1.{*}": "thinker.audio.proj1.{*}",
    "thinker.audio_tower.proj2.{*}": "thinker.audio.proj2.{*}",
}

_TALKER = {
    "talker.model.codec_embedding.weight": "talker.codec_embedding.weight",
    "talker.model.norm.weight": "talker.decoder.norm.weight",
    "talker.codec_head.weight": "talker.codec_head.weight",
    "talker.text_projection.linear_fc1.{*}": "talker.text_projection.fc1.{*}",
    "talker.text_projection.linear_fc2.{*}": "talker.text_projection.fc2.{*}",
    "talker.hidden_projection.linear_fc1.{*}": "talker.hidden_projection.fc1.{*}",
    "talker.hidden_projection.linear_fc2.{*}": "talker.hidden_projection.fc2.{*}",
    "talker.code_predictor.model.codec_embedding.{}.weight": "talker.code_predictor.codec_embedding.{}.weight",
    "talker.code_predictor.model.norm.weight": "talker.code_predictor.decoder.norm.weight",
    "talker.code_predictor.lm_head.{}.weight": "talker.code_predictor.lm_heads.{}.weight",
}

_CODE2WAV = {
    "code2wav.code_embedding.weight": "code2wav.code_embedding.weight",
    "code2wav.pre_transformer.layers.{}.input_layernorm.weight": "code2wav.transformer.layers.{}.attn_norm.weight",
    "code2wav.pre_transformer.layers.{}.self_attn.{*}": "code2wav.transformer.layers.{}.attn.{*}",
    "code2wav.pre_transformer.layers.{}.self_attn_layer_scale.scale": "code2wav.transformer.layers.{}.attn_scale",
    "code2wav.pre_transformer.layers.{}.post_attention_layernorm.weight": "code2wav.transformer.layers.{}.ffn_norm.weight",
    "code2wav.pre_transformer.layers.{}.mlp.{*}": "code2wav.transformer.layers.{}.ffn.{*}",
    "code2wav.pre_transformer.layers.{}.mlp_layer_scale.scale": "code2wav.transformer.layers.{}.ffn_scale",
    "code2wav.pre_transformer.norm.weight": "code2wav.transformer.norm.weight",
    "code2wav.upsample.{*}": "code2wav.upsample.{*}",  # nested (ConvTranspose, ConvNeXt) stages, same names
    "code2wav.decoder.{*}": "code2wav.decoder.{*}",  # causal conv decoder with SnakeBeta, same names
}


KEY_MAP = KeyMap({
    **under(_DECODERS, DECODER_LAYER),
    **under({"thinker.audio_tower.layers.{}.": "thinker.audio.layers.{}."}, AUDIO_ENCODER_LAYER),
    **_THINKER, **_VISION, **_AUDIO, **_TALKER, **_CODE2WAV,
})

WEIGHTS = Weights(
    KEY_MAP,
    components={"thinker": ("thinker.",), "talker": ("talker.",), "code2wav": ("code2wav.",)},
    ignored_suffixes=("rotary_emb.inv_freq", "positional_embedding.positional_embedding"),  # recomputed buffers
)
