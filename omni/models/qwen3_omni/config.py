"""Qwen3-Omni configuration (`model_type: qwen3_omni_moe`): its config.json sections and its presets.

    Qwen3OmniConfig
      thinker_config: Qwen3ThinkerConfig   text: Qwen3TextConfig (MoE), audio: Qwen3AudioConfig (AuT),
                                           vision: Qwen3VisionConfig (ViT + DeepStack)
      talker_config: Qwen3TalkerConfig     text: Qwen3TextConfig (MoE + shared expert), code_predictor: Qwen3TextConfig
      code2wav_config: Code2WavConfig

The sections extend omni.config's bases with what this release has; field defaults are the reference
implementation's, the presets at the bottom carry the released numbers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

from ...config import REQUIRED, AudioConfig, MediaTokens, OmniConfig, Section, TextConfig, ThinkerConfig, VisionConfig
from ...config import rope_theta
from ...config import _positive
from ...demo import TINY_TOKEN_IDS
from ...errors import ConfigError


@dataclass(kw_only=True)
class Qwen3TextConfig(TextConfig):
    """A Qwen3 decoder: the Thinker LM (MoE), the Talker LM (MoE + shared expert), the code predictor (dense)."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_text", "qwen3_omni_moe_talker_text", "qwen3_omni_moe_talker_code_predictor")
    qk_norm: ClassVar[bool] = True
    mrope_interleaved: ClassVar[bool] = True

    num_code_groups: int | None = None  # code predictor only


@dataclass(kw_only=True)
class Qwen3AudioConfig(AudioConfig):
    """The audio encoder (AuT): mel frames -> conv stem -> windowed transformer -> Thinker width."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_audio_encoder",)

    n_window: int = 50  # conv chunks are 2 * n_window mel frames
    n_window_infer: int = 800  # attention windows span n_window_infer mel frames
    conv_chunksize: int = 500
    downsample_hidden_size: int = 480

    def validate(self, where):
        super().validate(where)
        _positive(where, n_window_infer=self.n_window_infer)


@dataclass(kw_only=True)
class Qwen3VisionConfig(VisionConfig):
    """The vision encoder: patches -> ViT with 2-D rotary -> 2x2 merger (+ deepstack mergers)."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_vision_encoder",)

    depth: int = 27
    hidden_size: int = 1152
    hidden_act: str = "gelu_pytorch_tanh"
    intermediate_size: int = 4304
    patch_size: int = 16
    num_position_embeddings: int = 2304
    deepstack_visual_indexes: list = field(default_factory=lambda: [8, 16, 24])


@dataclass(kw_only=True)
class Qwen3ThinkerConfig(ThinkerConfig):
    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_thinker",)

    text_config: Qwen3TextConfig = REQUIRED
    audio_config: Qwen3AudioConfig | None = None
    vision_config: Qwen3VisionConfig | None = None


@dataclass(kw_only=True)
class Qwen3TalkerConfig(MediaTokens):
    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_talker",)

    text_config: Qwen3TextConfig = REQUIRED
    code_predictor_config: Qwen3TextConfig = REQUIRED
    num_code_groups: int = 32
    thinker_hidden_size: int = 2048
    accept_hidden_layer: int = 18
    codec_eos_token_id: int = 4198
    codec_nothink_id: int = 4203
    codec_think_bos_id: int = 4204
    codec_think_eos_id: int = 4205
    codec_pad_id: int = 4196
    codec_bos_id: int = 4197
    audio_start_token_id: int = 151669
    spatial_merge_size: int = 2  # the Talker's own (its positions use it, not the vision tower's)
    speaker_id: dict | None = None  # voice name -> codec id of its speaker token

    def validate(self, where):
        V = self.text_config.vocab_size
        codec = {name: getattr(self, name) for name in ("codec_eos_token_id", "codec_nothink_id", "codec_think_bos_id",
                                                        "codec_think_eos_id", "codec_pad_id", "codec_bos_id")}
        codec.update({f"speaker_id[{voice!r}]": i for voice, i in (self.speaker_id or {}).items()})
        for name, i in codec.items():
            if not 0 <= i < V:
                raise ConfigError(f"{where}.{name} ({i}) must be a codec id below text_config.vocab_size ({V})")


@dataclass(kw_only=True)
class Code2WavConfig(Section):
    """The codec decoder: 16 codebooks per 80 ms frame -> 24 kHz waveform."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_code2wav",)

    codebook_size: int = 2048
    num_quantizers: int = 16
    hidden_size: int = 1024
    num_hidden_layers: int = 8
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    intermediate_size: int = 3072
    hidden_act: str = "silu"
    sliding_window: int = 72
    rms_norm_eps: float = 1e-5
    layer_scale_initial_scale: float = 0.01
    max_position_embeddings: int = 8000
    rope_parameters: dict | None = None
    rope_theta: float | None = None
    attention_bias: bool = False
    upsample_rates: list = field(default_factory=lambda: [8, 5, 4, 3])
    upsampling_ratios: list = field(default_factory=lambda: [2, 2])
    decoder_dim: int = 1536

    @property
    def theta(self) -> float:
        return rope_theta(self, 10000.0)

    def validate(self, where):
        _positive(where, hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
                  num_key_value_heads=self.num_key_value_heads, num_quantizers=self.num_quantizers,
                  codebook_size=self.codebook_size)
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"{where}: hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}), itself a multiple of num_key_value_heads ({self.num_key_value_heads})"
            )


@dataclass(kw_only=True)
class Qwen3OmniConfig(OmniConfig):
    """The whole model: Thinker (+ encoders), Talker (+ code predictor) and Code2Wav."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe",)

    thinker_config: Qwen3ThinkerConfig = REQUIRED
    talker_config: Qwen3TalkerConfig | None = None
    code2wav_config: Code2WavConfig | None = None
    model_type: str = "qwen3_omni_moe"

    @property
    def code2wav(self) -> Code2WavConfig | None:
        return self.code2wav_config

    def check_talker_fits_thinker(self, where: str = "config") -> None:
        """The Talker reads the Thinker's states: their widths and the layer it reads must agree."""
        tk, text = self.talker_config, self.thinker_config.text_config
        if tk is None:
            return
        if tk.thinker_hidden_size != text.hidden_size:
            raise ConfigError(
                f"{where}: talker_config.thinker_hidden_size ({tk.thinker_hidden_size}) must equal the Thinker's "
                f"text_config.hidden_size ({text.hidden_size}); the Talker reads the Thinker's hidden states"
            )
        if not 0 <= tk.accept_hidden_layer <= text.num_hidden_layers:
            raise ConfigError(
                f"{where}: talker_config.accept_hidden_layer ({tk.accept_hidden_layer}) must be in "
                f"0..{text.num_hidden_layers} (the Thinker's num_hidden_layers)"
            )


# ---------------------------------------------------------------------------------------------------------------
# Presets, written as the config.json dicts they stand for.

_QWEN3_OMNI_30B_A3B = {  # Qwen/Qwen3-Omni-30B-A3B-Instruct config.json (numbers as released)
    "model_type": "qwen3_omni_moe",
    "enable_audio_output": True,
    "thinker_config": {
        "model_type": "qwen3_omni_moe_thinker",
        "audio_token_id": 151675, "image_token_id": 151655, "video_token_id": 151656,
        "audio_start_token_id": 151669, "vision_start_token_id": 151652, "user_token_id": 872,
        "position_id_per_seconds": 13, "seconds_per_chunk": 2, "tie_word_embeddings": False,
        "text_config": {
            "model_type": "qwen3_omni_moe_text", "vocab_size": 152064, "hidden_size": 2048,
            "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
            "intermediate_size": 768, "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
            "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "rms_norm_eps": 1e-6,
            "max_position_embeddings": 65536, "router_aux_loss_coef": 0.001,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [24, 20, 20], "interleaved": True},
        },
        "audio_config": {
            "model_type": "qwen3_omni_moe_audio_encoder", "num_mel_bins": 128, "encoder_layers": 32,
            "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "d_model": 1280, "max_source_positions": 1500,
            "n_window": 50, "n_window_infer": 800, "conv_chunksize": 500, "downsample_hidden_size": 480,
            "output_dim": 2048,
        },
        "vision_config": {
            "model_type": "qwen3_omni_moe_vision_encoder", "depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
            "num_heads": 16, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "out_hidden_size": 2048, "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24],
        },
    },
    "talker_config": {
        "model_type": "qwen3_omni_moe_talker",
        "num_code_groups": 16, "thinker_hidden_size": 2048, "accept_hidden_layer": 24,
        "codec_eos_token_id": 2150, "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
        "codec_pad_id": 2148, "codec_bos_id": 2149, "audio_token_id": 151675, "image_token_id": 151655,
        "video_token_id": 151656, "vision_start_token_id": 151652, "audio_start_token_id": 151669,
        "position_id_per_seconds": 13, "seconds_per_chunk": 2, "spatial_merge_size": 2,
        "speaker_id": {"chelsie": 2301, "ethan": 2302, "aiden": 2303},
        "text_config": {
            "model_type": "qwen3_omni_moe_talker_text", "vocab_size": 3072, "hidden_size": 1024,
            "num_hidden_layers": 20, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 128,
            "intermediate_size": 2048, "moe_intermediate_size": 384, "num_experts": 128, "num_experts_per_tok": 6,
            "norm_topk_prob": True, "shared_expert_intermediate_size": 768, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 65536,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                "mrope_section": [24, 20, 20], "interleaved": True},
        },
        "code_predictor_config": {
            "model_type": "qwen3_omni_moe_talker_code_predictor", "vocab_size": 2048, "hidden_size": 1024,
            "num_hidden_layers": 5, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
            "intermediate_size": 3072, "num_code_groups": 16, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        },
    },
    "code2wav_config": {
        "codebook_size": 2048, "num_quantizers": 16, "hidden_size": 1024, "num_hidden_layers": 8,
        "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 3072, "sliding_window": 72,
        "rms_norm_eps": 1e-5, "layer_scale_initial_scale": 0.01, "max_position_embeddings": 8000,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2], "decoder_dim": 1536,
    },
}



def _tiny() -> dict:
    """A few-MB model with every feature of the real one (MoE, deepstack, shared expert...), for tests and the demo.

    Its vocabulary is the small byte-level one `omni.demo` builds (256 bytes, the Qwen special tokens in their
    official order from id 256, then role-word merges), so token ids differ from the release's.
    """
    d = copy.deepcopy(_QWEN3_OMNI_30B_A3B)
    d.update(TINY_TOKEN_IDS["root"])
    th = d["thinker_config"]
    th.update(TINY_TOKEN_IDS["media"])
    d["talker_config"].update(TINY_TOKEN_IDS["media"])
    th["text_config"].update(
        vocab_size=512, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 2, 2],
                         "interleaved": True},
    )
    th["audio_config"].update(
        num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, d_model=64,
        downsample_hidden_size=16, output_dim=64,
    )
    th["vision_config"].update(
        depth=3, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
        num_position_embeddings=64, deepstack_visual_indexes=[0, 1],
    )
    tk = d["talker_config"]
    tk.update(thinker_hidden_size=64, accept_hidden_layer=2)
    tk["text_config"].update(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        intermediate_size=64, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
        shared_expert_intermediate_size=64, max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 2, 2],
                         "interleaved": True},
    )
    tk["code_predictor_config"].update(
        hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        intermediate_size=128,
    )
    d["code2wav_config"].update(
        hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
        decoder_dim=64,
    )
    return d


PRESETS: dict[str, dict] = {
    "qwen3-omni-30b-a3b": _QWEN3_OMNI_30B_A3B,
    "tiny": _tiny(),
}
