"""Qwen2.5-Omni (model_type `qwen2_5_omni`): the official checkpoint key names and their omni counterparts.

The only place that knows the official tensor names of this release (left: the name on disk, `{}` = layer
index, `{*}` = the rest of the key; right: the omni parameter). The decoder-layer and audio-layer rows every
release shares are omni.checkpoints.keymap's DECODER_LAYER / AUDIO_ENCODER_LAYER, placed here by `under`.
"""

from __future__ import annotations

from ...checkpoints.keymap import AUDIO_ENCODER_LAYER, DECODER_LAYER, KeyMap, Weights, under

_DECODERS = {  # official layer prefix -> omni layer prefix
    "thinker.model.layers.{}.": "thinker.decoder.layers.{}.",
    "talker.model.layers.{}.": "talker.decoder.layers.{}.",
}

_VISION = {  # thinker.visual -> thinker.vision
    "thinker.visual.patch_embed.proj.weight": "thinker.vision.patch_embed.proj.weight",
    "thinker.visual.blocks.{}.norm1.weight": "thinker.vision.blocks.{}.attn_norm.weight",
    "thinker.visual.blocks.{}.attn.q.{*}": "thinker.vision.blocks.{}.attn.q.{*}",
    "thinker.visual.blocks.{}.attn.k.{*}": "thinker.vision.blocks.{}.attn.k.{*}",
    "thinker.visual.blocks.{}.attn.v.{*}": "thinker.vision.blocks.{}.attn.v.{*}",
    "thinker.visual.blocks.{}.attn.proj.{*}": "thinker.vision.blocks.{}.attn.proj.{*}",
    "thinker.visual.blocks.{}.norm2.weight": "thinker.vision.blocks.{}.mlp_norm.weight",
    "thinker.visual.blocks.{}.mlp.{*}": "thinker.vision.blocks.{}.mlp.{*}",  # SwiGLU: gate/up/down_proj, biased
    "thinker.visual.merger.ln_q.weight": "thinker.vision.merger.norm.weight",
    "thinker.visual.merger.mlp.0.{*}": "thinker.vision.merger.fc1.{*}",
    "thinker.visual.merger.mlp.2.{*}": "thinker.vision.merger.fc2.{*}",
}

_THINKER = {
    "thinker.model.embed_tokens.weight": "thinker.embed_tokens.weight",
    "thinker.model.norm.weight": "thinker.decoder.norm.weight",
    "thinker.lm_head.weight": "thinker.lm_head.weight",
}

_AUDIO = {  # thinker.audio_tower -> thinker.audio (its layers: AUDIO_ENCODER_LAYER)
    "thinker.audio_tower.conv1.{*}": "thinker.audio.conv1.{*}",
    "thinker.audio_tower.conv2.{*}": "thinker.audio.conv2.{*}",
    "thinker.audio_tower.ln_post.{*}": "thinker.audio.norm_out.{*}",
    "thinker.audio_tower.proj.{*}": "thinker.audio.proj.{*}",
    # stored and kept for a lossless round trip; the forward pass does not use it (nor does the reference)
    "thinker.audio_tower.audio_bos_eos_token.weight": "thinker.audio.audio_bos_eos_token.weight",
}

_TALKER = {  # omni.models.qwen2_5_omni.talker.Qwen25Talker; its layers are dense decoder layers, as the Thinker's
    "talker.thinker_to_talker_proj.{*}": "talker.thinker_to_talker_proj.{*}",
    "talker.model.embed_tokens.weight": "talker.codec_embedding.weight",  # codec ids, in the Thinker's width
    "talker.model.norm.weight": "talker.decoder.norm.weight",
    "talker.codec_head.weight": "talker.codec_head.weight",
}

_DIT = "token2wav.code2wav_dit_model."
_DIT_BLOCK = _DIT + "transformer_blocks.{}."
_BIGVGAN = "token2wav.code2wav_bigvgan_model."
_TOKEN2WAV = {  # token2wav -> token2wav.dit (token2wav/dit.py) and token2wav.bigvgan (token2wav/bigvgan.py)
    _DIT + "time_embed.time_mlp.0.{*}": "token2wav.dit.time_embed.fc1.{*}",
    _DIT + "time_embed.time_mlp.2.{*}": "token2wav.dit.time_embed.fc2.{*}",
    _DIT + "text_embed.codec_embed.weight": "token2wav.dit.codec_embed.weight",
    _DIT + "input_embed.proj.{*}": "token2wav.dit.input_proj.{*}",
    _DIT + "input_embed.spk_encoder.{*}": "token2wav.dit.speaker_encoder.{*}",  # ECAPA-TDNN, named as on disk
    _DIT_BLOCK + "attn_norm.linear.{*}": "token2wav.dit.blocks.{}.attn_modulation.{*}",
    _DIT_BLOCK + "attn.to_q.{*}": "token2wav.dit.blocks.{}.attn.q_proj.{*}",
    _DIT_BLOCK + "attn.to_k.{*}": "token2wav.dit.blocks.{}.attn.k_proj.{*}",
    _DIT_BLOCK + "attn.to_v.{*}": "token2wav.dit.blocks.{}.attn.v_proj.{*}",
    _DIT_BLOCK + "attn.to_out.0.{*}": "token2wav.dit.blocks.{}.attn.o_proj.{*}",
    _DIT_BLOCK + "ff.ff.0.{*}": "token2wav.dit.blocks.{}.ffn.fc1.{*}",
    _DIT_BLOCK + "ff.ff.3.{*}": "token2wav.dit.blocks.{}.ffn.fc2.{*}",
    _DIT + "norm_out.linear.{*}": "token2wav.dit.final_modulation.{*}",
    _DIT + "proj_out.{*}": "token2wav.dit.proj_out.{*}",
    _BIGVGAN + "conv_pre.{*}": "token2wav.bigvgan.conv_pre.{*}",
    _BIGVGAN + "ups.{}.0.{*}": "token2wav.bigvgan.upsamples.{}.{*}",
    _BIGVGAN + "resblocks.{*}": "token2wav.bigvgan.resblocks.{*}",  # AMP blocks: convs1, convs2, activations.{}.act
    _BIGVGAN + "activation_post.{*}": "token2wav.bigvgan.activation_post.{*}",
    _BIGVGAN + "conv_post.{*}": "token2wav.bigvgan.conv_post.{*}",
}


KEY_MAP = KeyMap({
    **under(_DECODERS, DECODER_LAYER),
    **under({"thinker.audio_tower.layers.{}.": "thinker.audio.layers.{}."}, AUDIO_ENCODER_LAYER),
    **_THINKER, **_VISION, **_AUDIO, **_TALKER, **_TOKEN2WAV,
})

WEIGHTS = Weights(
    KEY_MAP,
    components={"thinker": ("thinker.",), "talker": ("talker.",), "token2wav": ("token2wav.",)},
    # recomputed buffers
    ignored_suffixes=("rotary_emb.inv_freq", "rotary_embed.inv_freq", "positional_embedding.positional_embedding"),
)
