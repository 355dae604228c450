"""Typed configuration: the sections every release's config.json shares (their machinery: omni.sections).

`OmniConfig.from_pretrained(dir_or_file)` reads an official ``config.json`` into one dataclass per section; the
top-level `model_type` picks the release (omni.release), whose package declares its own sections on these bases:

    OmniConfig                     thinker_config, talker_config, <vocoder>_config, special token ids
      ThinkerConfig                text_config: TextConfig, audio_config: AudioConfig, vision_config: VisionConfig
      (Qwen3-Omni: omni/models/qwen3_omni/config.py, Qwen2.5-Omni: omni/models/qwen2_5_omni/config.py)

Field names are the official config.json keys, so a config reads like the file it came from, and keys omitted
from a file take the reference implementation's defaults (which are *not* the release's numbers: presets carry
those). Unknown keys are kept in ``extra`` and written back by ``to_dict()``, so a load/save round trip keeps
everything.
"""

from __future__ import annotations

import copy
import json
import os
import typing
from dataclasses import dataclass
from typing import ClassVar

from .errors import ConfigError
from .files import atomic_write
from .release import PRESETS, release_of, releases
from .sections import REQUIRED, Section, _positive, _section_type  # noqa: F401  (re-exported for the releases)

def rope_theta(section, default: float) -> float:
    """The rotary base of a section: `rope_parameters` (transformers 5), else `rope_scaling`, else `rope_theta`,
    else `default` (the reference's default for that section)."""
    for src in (getattr(section, "rope_parameters", None), getattr(section, "rope_scaling", None)):
        if src and "rope_theta" in src:
            return float(src["rope_theta"])
    return float(section.rope_theta if section.rope_theta is not None else default)


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

    # the release's architecture, not config.json keys: each release's TextConfig sets them
    qk_norm: ClassVar[bool]  # RMSNorm over each query / key head before the rotary embedding
    mrope_interleaved: ClassVar[bool]  # M-RoPE slot layout (see omni.nn.rope)

    @property
    def qkv_bias(self) -> bool:  # a release may fix these regardless of `attention_bias` (Qwen2.5: q/k/v only)
        return self.attention_bias

    o_proj_bias = qkv_bias

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def theta(self) -> float:
        return rope_theta(self, 1e6)

    @property
    def mrope_section(self) -> list[int] | None:
        for src in (self.rope_parameters, self.rope_scaling):
            if src and src.get("mrope_section"):
                return list(src["mrope_section"])
        return None

    def is_moe_layer(self, i: int) -> bool:
        return self.num_experts > 0 and i not in (self.mlp_only_layers or []) and (i + 1) % self.decoder_sparse_step == 0

    def validate(self, where):
        _positive(where, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                  num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                  num_key_value_heads=self.num_key_value_heads)
        _check_text_fields(self, where)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"{where}: num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"{where}: hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                              f"({self.num_attention_heads}); set head_dim explicitly")
        if self.dim_head % 2:
            raise ConfigError(f"{where}: head_dim must be even for rotary embeddings, got {self.dim_head}")
        if self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ConfigError(f"{where}: num_experts_per_tok ({self.num_experts_per_tok}) must be in 1..num_experts "
                              f"({self.num_experts})")
        if self.num_experts and self.decoder_sparse_step <= 0:
            raise ConfigError(f"{where}: decoder_sparse_step must be >= 1")
        sec = self.mrope_section
        if sec is not None and sum(sec) != self.dim_head // 2:
            raise ConfigError(f"{where}: mrope_section {sec} must sum to head_dim/2 = {self.dim_head // 2}")


@dataclass(kw_only=True)
class AudioConfig(Section):
    """The audio encoder fields both releases share (defaults: the reference's; a release adds its own)."""

    num_mel_bins: int = 128
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    d_model: int = 1280
    activation_function: str = "gelu"
    max_source_positions: int = 1500
    n_window: int = REQUIRED  # the conv stem reads chunks of 2 * n_window mel frames
    output_dim: int = 3584

    def validate(self, where):
        _positive(where, d_model=self.d_model, encoder_attention_heads=self.encoder_attention_heads,
                  n_window=self.n_window, num_mel_bins=self.num_mel_bins, encoder_layers=self.encoder_layers,
                  encoder_ffn_dim=self.encoder_ffn_dim, output_dim=self.output_dim)
        if self.d_model % self.encoder_attention_heads:
            raise ConfigError(f"{where}: d_model {self.d_model} not divisible by heads {self.encoder_attention_heads}")


@dataclass(kw_only=True)
class VisionConfig(Section):
    """The vision encoder fields both releases share: patches of (temporal_patch_size, patch_size, patch_size)
    pixels, merged m x m (m = spatial_merge_size) into one Thinker token of width out_hidden_size."""

    depth: int = REQUIRED
    hidden_size: int = REQUIRED
    hidden_act: str = REQUIRED
    intermediate_size: int = REQUIRED
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = REQUIRED
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    out_hidden_size: int = 3584

    def validate(self, where):
        _positive(where, hidden_size=self.hidden_size, num_heads=self.num_heads, patch_size=self.patch_size)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{where}: hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")


@dataclass(kw_only=True)
class MediaTokens(Section):
    """The ids of the media placeholders and start markers in a prompt, and its time scale: what the position walk
    reads (omni.positions.rope_index_from_config). The Thinker's section has them, and so do the Talkers'."""

    audio_token_id: int = 151646
    image_token_id: int = 151655
    video_token_id: int = 151656
    audio_start_token_id: int = 151647
    vision_start_token_id: int = 151652
    position_id_per_seconds: float = 25
    seconds_per_chunk: float = 2


@dataclass(kw_only=True)
class ThinkerConfig(MediaTokens):
    """The Thinker: its decoder, its two encoders and (MediaTokens) the ids of the media placeholders and markers."""

    text_config: TextConfig = REQUIRED
    audio_config: AudioConfig | None = None
    vision_config: VisionConfig | None = None
    user_token_id: int = 872
    tie_word_embeddings: bool = False

    def __post_init__(self):  # absent encoder blocks take their defaults (the section types of this class)
        hints = typing.get_type_hints(type(self))
        if self.audio_config is None:
            self.audio_config = _section_type(hints["audio_config"])()
        if self.vision_config is None:
            self.vision_config = _section_type(hints["vision_config"])()


@dataclass(kw_only=True)
class OmniConfig(Section):
    """The whole model: Thinker (+ encoders), Talker and a vocoder. `OmniConfig.from_dict` / `from_pretrained` /
    `from_name` return the release's subclass, picked by `model_type`."""

    thinker_config: ThinkerConfig = REQUIRED
    talker_config: Section | None = None
    model_type: str = REQUIRED
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
    def talker(self):
        return self.talker_config

    @classmethod
    def from_dict(cls, d, where="config"):
        """Build from a config.json-style dict (official keys; unknown keys are kept in `extra` and written back).
        The release is picked by `model_type`; a missing or impossible value raises ConfigError naming it."""
        if isinstance(d, dict) and "model_type" not in d:
            raise ConfigError(f"{where}: no `model_type`; expected one of {sorted(releases())} (an official "
                              "Qwen-Omni config.json)")
        if cls is OmniConfig and isinstance(d, dict):
            return release_of(d["model_type"]).config.from_dict(d, where)
        return super().from_dict(d, where)

    def check_talker_fits_thinker(self, where: str = "config") -> None:
        """Raise ConfigError when the Talker section cannot read this Thinker (checked when a Talker is built: a
        thinker-only model may carry a Talker section it never uses). A release with such constraints overrides."""

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
        except RecursionError:
            raise ConfigError(f"{file} is nested too deeply to be a config.json") from None
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
        with atomic_write(os.path.join(directory, "config.json")) as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

