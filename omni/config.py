"""Typed configuration for the Qwen omni models.

`OmniConfig.from_pretrained(dir_or_file)` reads an official ``config.json`` into one dataclass per component:

    OmniConfig
      thinker: ThinkerConfig      text: TextConfig, audio: AudioConfig, vision: VisionConfig
      talker: TalkerConfig        text: TextConfig (MoE + shared expert), code_predictor: TextConfig
      code2wav: Code2WavConfig

Field names are the official config.json keys, so a config reads like the file it came from, and keys omitted
from a file take the reference implementation's defaults (which are *not* the release's numbers: presets carry
those). Unknown keys are kept in ``extra`` and written back by ``to_dict()``, so a load/save round trip keeps
everything.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import ConfigError

REQUIRED: Any = dataclasses.MISSING  # marker default: the key must be present in config.json


def _is_section(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


@dataclass(kw_only=True)
class Section:
    """Base of every config block: strict-where-it-matters parsing, lossless round trip."""

    MODEL_TYPES: ClassVar[tuple[str, ...]] = ()  # accepted `model_type` values ("" = none written)
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {}  # field -> other keys the file may use for it

    extra: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "config"):
        if d is None:
            d = {}
        if isinstance(d, Section):
            return d
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        mt = d.get("model_type")
        if cls.MODEL_TYPES and mt not in (None, "", *cls.MODEL_TYPES):
            raise ConfigError(
                f"{where}: model_type is {mt!r}, expected one of {list(cls.MODEL_TYPES)}; "
                "is this config.json from a different model?"
            )
        hints = typing.get_type_hints(cls)
        kwargs, extra, missing = {}, {}, []
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            key = f.name
            if key not in d:
                key = next((a for a in cls.ALIASES.get(f.name, ()) if a in d), f.name)
                if key != f.name:
                    extra["_alias_" + f.name] = key  # write it back under the name it came with
            if key in d:
                value = d.pop(key)
                tp = hints[f.name]
                sub = _section_type(tp)
                if sub is not None:
                    value = None if value is None else sub.from_dict(value, f"{where}.{f.name}")
                kwargs[f.name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(f.name)
        if missing:
            raise ConfigError(f"{where}: missing required field(s) {missing}; add them to config.json")
        extra.update(d)
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        obj.extra = extra
        obj._given = frozenset(kwargs)
        obj.validate(where)
        return obj

    def validate(self, where: str) -> None:
        """Raise ConfigError for values the model cannot be built with. Subclasses extend."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            given = getattr(self, "_given", None)
            if given is not None and f.name not in given and value == _default(f):
                continue  # omitted in the file it came from: keep it omitted
            if isinstance(value, Section):
                value = value.to_dict()
            key = self.extra.get("_alias_" + f.name, f.name)
            out[key] = copy.deepcopy(value)
        out.update({k: copy.deepcopy(v) for k, v in self.extra.items() if not k.startswith("_alias_")})
        return out

    def replace(self, **changes):
        new = dataclasses.replace(self, **changes)
        new.extra = copy.deepcopy(self.extra)
        new.validate(type(self).__name__)
        return new


def _default(f):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _section_type(tp):
    if _is_section(tp):
        return tp
    for arg in typing.get_args(tp):
        if _is_section(arg):
            return arg
    return None


def _positive(where: str, **values):
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{where}.{name} must be a positive integer, got {v!r}")


def _check_text_fields(cfg: "TextConfig", where: str) -> None:
    """Types and ranges the decoder is built from, checked before a build can fail somewhere deep (or, for
    `hidden_act`, silently compute something else)."""
    _positive(where, intermediate_size=cfg.intermediate_size)
    if cfg.head_dim is not None:
        _positive(where, head_dim=cfg.head_dim)
    if isinstance(cfg.rms_norm_eps, bool) or not isinstance(cfg.rms_norm_eps, (int, float)) or not cfg.rms_norm_eps > 0:
        raise ConfigError(f"{where}.rms_norm_eps must be a positive number, got {cfg.rms_norm_eps!r}")
    if cfg.hidden_act != "silu":
        raise ConfigError(f"{where}.hidden_act is {cfg.hidden_act!r}; the Qwen decoders (and omni) use 'silu'")
    for name in ("rope_parameters", "rope_scaling"):
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}.{name} must be a JSON object (e.g. {{\"rope_theta\": 1000000.0}}), got {value!r}")
        sec = (value or {}).get("mrope_section")
        if sec is not None and (not isinstance(sec, list) or not all(isinstance(x, int) and x > 0 for x in sec)):
            raise ConfigError(f"{where}.{name}.mrope_section must be a list of positive integers, got {sec!r}")
    layers = cfg.mlp_only_layers
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(i, int) for i in layers)):
        raise ConfigError(f"{where}.mlp_only_layers must be a list of layer indexes, got {layers!r}")
    if not isinstance(cfg.num_experts, int) or cfg.num_experts < 0:
        raise ConfigError(f"{where}.num_experts must be 0 (dense) or a positive integer, got {cfg.num_experts!r}")
    if cfg.num_experts:
        _positive(where, moe_intermediate_size=cfg.moe_intermediate_size)


@dataclass(kw_only=True)
class TextConfig(Section):
    """A Qwen decoder stack: the Thinker LM, the Talker LM, the code predictor (MoE fields unused when dense)."""

    MODEL_TYPES: ClassVar = (
        "qwen3_omni_moe_text",
        "qwen3_omni_moe_talker_text",
        "qwen3_omni_moe_talker_code_predictor",
    )
    ALIASES: ClassVar = {"num_experts": ("num_local_experts",)}

    vocab_size: int = REQUIRED
    hidden_size: int = REQUIRED
    num_hidden_layers: int = REQUIRED
    num_attention_heads: int = REQUIRED
    num_key_value_heads: int | None = None  # None: same as num_attention_heads (no GQA)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    intermediate_size: int = 18944  # dense SwiGLU width (dense layers / code predictor)
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    max_position_embeddings: int = 32768
    # rotary: transformers 5 writes `rope_parameters`, the original release files `rope_theta` + `rope_scaling`
    rope_parameters: dict | None = None
    rope_theta: float | None = None
    rope_scaling: dict | None = None
    # mixture of experts (num_experts 0 = dense)
    num_experts: int = 0
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 768
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: list | None = None
    shared_expert_intermediate_size: int = 0  # > 0: a sigmoid-gated shared expert beside the routed ones (Talker)
    router_aux_loss_coef: float = 0.001
    # code predictor only
    num_code_groups: int | None = None

    # the release's architecture, not config.json keys (Qwen3-Omni here; omni.config_qwen2_5 overrides them)
    qk_norm: ClassVar[bool] = True  # RMSNorm over each query / key head before the rotary embedding
    mrope_interleaved: ClassVar[bool] = True  # M-RoPE slot layout (see omni.nn.rope)

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def o_proj_bias(self) -> bool:
        return self.attention_bias

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def theta(self) -> float:
        for src in (self.rope_parameters, self.rope_scaling):
            if src and "rope_theta" in src:
                return float(src["rope_theta"])
        return float(self.rope_theta if self.rope_theta is not None else 1e6)

    @property
    def mrope_section(self) -> list[int] | None:
        for src in (self.rope_parameters, self.rope_scaling):
            if src and src.get("mrope_section"):
                return list(src["mrope_section"])
        return None

    def is_moe_layer(self, i: int) -> bool:
        return (
            self.num_experts > 0
            and i not in (self.mlp_only_layers or [])
            and (i + 1) % self.decoder_sparse_step == 0
        )

    def validate(self, where):
        _positive(
            where,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
        )
        _check_text_fields(self, where)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"{where}: num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{where}: hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}); set head_dim explicitly"
            )
        if self.dim_head % 2:
            raise ConfigError(f"{where}: head_dim must be even for rotary embeddings, got {self.dim_head}")
        if self.num_experts:
            if not 0 < self.num_experts_per_tok <= self.num_experts:
                raise ConfigError(
                    f"{where}: num_experts_per_tok ({self.num_experts_per_tok}) must be in 1..num_experts "
                    f"({self.num_experts})"
                )
            if self.decoder_sparse_step <= 0:
                raise ConfigError(f"{where}: decoder_sparse_step must be >= 1")
        sec = self.mrope_section
        if sec is not None and sum(sec) != self.dim_head // 2:
            raise ConfigError(
                f"{where}: mrope_section {sec} must sum to head_dim/2 = {self.dim_head // 2}"
            )


@dataclass(kw_only=True)
class AudioConfig(Section):
    """The audio encoder (AuT): mel frames -> conv stem -> windowed transformer -> Thinker width."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_audio_encoder",)

    num_mel_bins: int = 128
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    d_model: int = 1280
    activation_function: str = "gelu"
    max_source_positions: int = 1500
    n_window: int = 50  # conv chunks are 2 * n_window mel frames
    n_window_infer: int = 800  # attention windows span n_window_infer mel frames
    conv_chunksize: int = 500
    downsample_hidden_size: int = 480
    output_dim: int = 3584

    def validate(self, where):
        _positive(where, d_model=self.d_model, encoder_attention_heads=self.encoder_attention_heads,
                  n_window=self.n_window, n_window_infer=self.n_window_infer, num_mel_bins=self.num_mel_bins,
                  encoder_layers=self.encoder_layers, encoder_ffn_dim=self.encoder_ffn_dim, output_dim=self.output_dim)
        if self.d_model % self.encoder_attention_heads:
            raise ConfigError(f"{where}: d_model {self.d_model} not divisible by heads {self.encoder_attention_heads}")


@dataclass(kw_only=True)
class VisionConfig(Section):
    """The vision encoder: patches -> ViT with 2-D rotary -> 2x2 merger (+ deepstack mergers)."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_vision_encoder",)

    depth: int = 27
    hidden_size: int = 1152
    hidden_act: str = "gelu_pytorch_tanh"
    intermediate_size: int = 4304
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 16
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    out_hidden_size: int = 3584
    num_position_embeddings: int = 2304
    deepstack_visual_indexes: list = field(default_factory=lambda: [8, 16, 24])

    def validate(self, where):
        _positive(where, hidden_size=self.hidden_size, num_heads=self.num_heads, patch_size=self.patch_size)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{where}: hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")


@dataclass(kw_only=True)
class ThinkerConfig(Section):
    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_thinker",)

    text_config: TextConfig = REQUIRED
    audio_config: AudioConfig | None = None
    vision_config: VisionConfig | None = None
    audio_token_id: int = 151646
    image_token_id: int = 151655
    video_token_id: int = 151656
    audio_start_token_id: int = 151647
    vision_start_token_id: int = 151652
    user_token_id: int = 872
    position_id_per_seconds: float = 25
    seconds_per_chunk: float = 2
    tie_word_embeddings: bool = False

    def __post_init__(self):  # absent encoder blocks take their defaults (the section types of this class)
        hints = typing.get_type_hints(type(self))
        if self.audio_config is None:
            self.audio_config = _section_type(hints["audio_config"])()
        if self.vision_config is None:
            self.vision_config = _section_type(hints["vision_config"])()


@dataclass(kw_only=True)
class TalkerConfig(Section):
    MODEL_TYPES: ClassVar = ("qwen3_omni_moe_talker",)

    text_config: TextConfig = REQUIRED
    code_predictor_config: TextConfig = REQUIRED
    num_code_groups: int = 32
    thinker_hidden_size: int = 2048
    accept_hidden_layer: int = 18
    codec_eos_token_id: int = 4198
    codec_nothink_id: int = 4203
    codec_think_bos_id: int = 4204
    codec_think_eos_id: int = 4205
    codec_pad_id: int = 4196
    codec_bos_id: int = 4197
    audio_token_id: int = 151646
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    audio_start_token_id: int = 151669
    position_id_per_seconds: float = 25
    seconds_per_chunk: float = 2
    spatial_merge_size: int = 2
    speaker_id: dict | None = None


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
        if self.rope_parameters and "rope_theta" in self.rope_parameters:
            return float(self.rope_parameters["rope_theta"])
        return float(self.rope_theta if self.rope_theta is not None else 10000.0)

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
class OmniConfig(Section):
    """The whole model: Thinker (+ encoders), Talker (+ code predictor) and Code2Wav."""

    MODEL_TYPES: ClassVar = ("qwen3_omni_moe",)

    thinker_config: ThinkerConfig = REQUIRED
    talker_config: TalkerConfig | None = None
    code2wav_config: Code2WavConfig | None = None
    model_type: str = "qwen3_omni_moe"
    enable_audio_output: bool = True
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    tts_pad_token_id: int = 151671
    tts_bos_token_id: int = 151672
    tts_eos_token_id: int = 151673
    system_token_id: int = 8948
    user_token_id: int = 872
    assistant_token_id: int = 77091

    # short names for the components
    @property
    def thinker(self) -> ThinkerConfig:
        return self.thinker_config

    @property
    def talker(self) -> TalkerConfig | None:
        return self.talker_config

    @property
    def code2wav(self) -> Code2WavConfig | None:
        return self.code2wav_config

    @classmethod
    def from_dict(cls, d, where="config"):
        """Build from a config.json-style dict (official keys; unknown keys are kept in `extra` and written back).
        The release is picked by `model_type`; a missing or impossible value raises ConfigError naming it."""
        if cls is OmniConfig and isinstance(d, dict) and d.get("model_type") in Qwen25OmniConfig.MODEL_TYPES:
            return Qwen25OmniConfig.from_dict(d, where)  # the release is picked by model_type
        if isinstance(d, dict) and "model_type" not in d:
            raise ConfigError(
                f"{where}: no `model_type`; expected one of {list(cls.MODEL_TYPES)} (an official Qwen-Omni config.json)"
            )
        if isinstance(d, dict) and d.get("model_type") not in cls.MODEL_TYPES:
            raise ConfigError(
                f"{where}: model_type {d.get('model_type')!r} is not supported; expected one of "
                f"{sorted(set(cls.MODEL_TYPES) | set(Qwen25OmniConfig.MODEL_TYPES))}"
            )
        return super().from_dict(d, where)

    def check_talker_fits_thinker(self, where: str = "config") -> None:
        """The Talker reads the Thinker's states: their widths and the layer it reads must agree. (Checked when a
        model with a Talker is built: a thinker-only model may carry a Talker section it never uses.)"""
        tk, text = self.talker_config, self.thinker_config.text_config
        if isinstance(tk, TalkerConfig):
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

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "OmniConfig":
        """Read `config.json` from a checkpoint directory (or the file itself)."""
        path = os.fspath(path)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise ConfigError(f"no config.json at {path!r}; pass a checkpoint directory or a config.json file")
        try:
            with open(file, encoding="utf-8") as f:
                d = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file} is not valid JSON: {e}") from None
        return cls.from_dict(d, where=os.path.basename(file))

    @classmethod
    def from_name(cls, name: str, **overrides) -> "OmniConfig":
        """A named preset (see `PRESETS`)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        cfg = cls.from_dict(copy.deepcopy(PRESETS[name]), where=f"preset {name}")
        return cfg.replace(**overrides) if overrides else cfg

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `config.json` (official keys, sorted) into `directory`, creating it if needed."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)


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


# Special token ids of the tiny preset: the official ones shifted to start at 256 (see omni.demo.tiny_tokenizer).
TINY_SPECIAL_BASE = 256
_OFFICIAL_SPECIAL_BASE = 151643


def _tiny_id(official: int) -> int:
    return official - _OFFICIAL_SPECIAL_BASE + TINY_SPECIAL_BASE


TINY_TOKEN_IDS = {
    "root": {
        "im_start_token_id": _tiny_id(151644), "im_end_token_id": _tiny_id(151645),
        "tts_pad_token_id": _tiny_id(151671), "tts_bos_token_id": _tiny_id(151672),
        "tts_eos_token_id": _tiny_id(151673),
        # role words are single BPE merges in the tiny tokenizer: ids fixed by omni.demo.tiny_tokenizer
        "system_token_id": 293, "user_token_id": 296, "assistant_token_id": 304,
    },
    "media": {
        "audio_token_id": _tiny_id(151675), "image_token_id": _tiny_id(151655), "video_token_id": _tiny_id(151656),
        "audio_start_token_id": _tiny_id(151669), "vision_start_token_id": _tiny_id(151652),
        "user_token_id": 296,
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


# Qwen2.5-Omni: its sections build on the ones above, so they live in their own module, imported last.
from .config_qwen2_5 import QWEN2_5_PRESETS, Qwen25OmniConfig  # noqa: E402

PRESETS.update(QWEN2_5_PRESETS)
