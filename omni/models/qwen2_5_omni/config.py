"""Qwen2.5-Omni configuration (`model_type: qwen2_5_omni`): its config.json sections and its presets.

    Qwen25OmniConfig
      thinker_config: Qwen25ThinkerConfig   text: Qwen25TextConfig (dense), audio: Qwen25AudioConfig (Whisper-style),
                                            vision: Qwen25VisionConfig (window attention)
      talker_config: Qwen25TalkerConfig     the dense codec decoder (a Qwen2.5 decoder) and its token ids
      token2wav_config: Token2WavConfig     dit_config: DiTConfig, bigvgan_config: BigVGANConfig

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
class Qwen25TextConfig(TextConfig):
    """The dense Qwen2.5 decoder: q/k/v projections with biases (o_proj without), no q/k norm, chunked M-RoPE."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_text",)
    qk_norm: ClassVar[bool] = False
    mrope_interleaved: ClassVar[bool] = False

    @property
    def qkv_bias(self) -> bool:
        return True

    @property
    def o_proj_bias(self) -> bool:
        return False


@dataclass(kw_only=True)
class Qwen25AudioConfig(AudioConfig):
    """The Whisper-style encoder: two 1-D convs, attention inside 2 * n_window-frame chunks, 2x average pooling."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_audio_encoder",)

    n_window: int = 100  # attention / conv chunks are 2 * n_window mel frames (2 s)
    scale_embedding: bool = False

    def validate(self, where):
        super().validate(where)
        if self.scale_embedding:
            raise ConfigError(f"{where}.scale_embedding = true is not used by any release and not supported")


@dataclass(kw_only=True)
class Qwen25VisionConfig(VisionConfig):
    """The Qwen2.5-VL-style tower: RMSNorm, SwiGLU, window attention except in `fullatt_block_indexes`; no DeepStack."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_vision_encoder",)
    ALIASES: ClassVar = {"hidden_size": ("embed_dim",)}  # early release files name the width `embed_dim`

    depth: int = 32
    hidden_size: int = 3584  # the reference default; released files say 1280
    hidden_act: str = "silu"
    intermediate_size: int = 3420
    patch_size: int = 14
    window_size: int = 112  # window side in pixels: window_size / patch_size / spatial_merge_size merged tokens
    fullatt_block_indexes: list = field(default_factory=lambda: [7, 15, 23, 31])
    deepstack_visual_indexes: list = field(default_factory=list)

    def validate(self, where):
        super().validate(where)
        unit = self.patch_size * self.spatial_merge_size
        if self.window_size < unit or self.window_size % unit:
            raise ConfigError(f"{where}.window_size ({self.window_size}) must be a positive multiple of "
                              f"patch_size * spatial_merge_size ({unit})")
        if self.deepstack_visual_indexes:
            raise ConfigError(f"{where}: Qwen2.5-Omni vision has no DeepStack; remove deepstack_visual_indexes")


@dataclass(kw_only=True)
class Qwen25ThinkerConfig(ThinkerConfig):
    MODEL_TYPES: ClassVar = ("qwen2_5_omni_thinker",)
    # the release names the placeholder ids `*_token_index`
    ALIASES: ClassVar = {f"{kind}_token_id": (f"{kind}_token_index",) for kind in ("audio", "image", "video")}

    text_config: Qwen25TextConfig = REQUIRED
    audio_config: Qwen25AudioConfig | None = None
    vision_config: Qwen25VisionConfig | None = None
    audio_end_token_id: int = 151648
    vision_end_token_id: int = 151653


@dataclass(kw_only=True)
class Qwen25TalkerConfig(Qwen25TextConfig, MediaTokens):
    """`talker_config` of Qwen2.5-Omni: a Qwen2.5 decoder (q/k/v biases, chunked M-RoPE) plus its token ids.

    Defaults are the reference implementation's (the 7B numbers, except the widths the presets set).
    """

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_talker",)
    ALIASES: ClassVar = {f"{kind}_token_id": (f"{kind}_token_index",) for kind in ("audio", "image", "video")}

    vocab_size: int = 8448  # codec vocabulary: acoustic codes, then the control ids below
    embedding_size: int = 3584  # the Thinker's width: codec embeddings and every input vector live there
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    head_dim: int | None = 128
    use_sliding_window: bool = False
    tts_text_start_token_id: int = 151860  # Thinker ids of the text track's markers
    tts_text_end_token_id: int = 151861
    tts_text_pad_token_id: int = 151859
    tts_codec_start_token_id: int = 8293  # codec ids
    tts_codec_end_token_id: int = 8294
    tts_codec_pad_token_id: int = 8292
    tts_codec_mask_token_id: int = 8296
    vision_end_token_id: int = 151653
    audio_end_token_id: int = 151648
    spatial_merge_size: int = 2

    def validate(self, where):
        super().validate(where)
        if self.use_sliding_window:
            raise ConfigError(f"{where}.use_sliding_window: no release uses it and omni does not support it; "
                              "set it to false")
        for name in ("tts_codec_start_token_id", "tts_codec_end_token_id", "tts_codec_pad_token_id",
                     "tts_codec_mask_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ConfigError(f"{where}.{name} ({getattr(self, name)}) must be a codec id below vocab_size "
                                  f"({self.vocab_size})")


@dataclass(kw_only=True)
class DiTConfig(Section):
    """The flow-matching mel generator: codec codes + speaker -> 80-bin mel frames (two per code)."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_dit",)
    # the released json spells three fields the original (pre-transformers) way
    ALIASES: ClassVar = {"hidden_size": ("dim",), "num_hidden_layers": ("depth",), "num_attention_heads": ("heads",)}

    hidden_size: int = 1024
    num_hidden_layers: int = 22
    num_attention_heads: int = 16
    head_dim: int = 64
    ff_mult: int = 2
    emb_dim: int = 512  # codec embedding width
    rope_parameters: dict | None = None
    rope_theta: float | None = None
    max_position_embeddings: int = 32768  # longest mel the sampler accepts (frames)
    block_size: int = 24  # frames per attention block
    look_ahead_layers: list = field(default_factory=lambda: [10])  # these layers also see the next block
    look_backward_layers: list = field(default_factory=lambda: [0, 20])  # ... and these the previous one
    repeats: int = 2  # mel frames per codec code
    num_embeds: int = 8193  # codec vocabulary; the table has one row more
    mel_dim: int = 80
    dropout: float = 0.1  # training only
    # speaker side: x-vector width, ECAPA-TDNN encoder of the reference mel
    enc_emb_dim: int = 192
    enc_dim: int = 128
    enc_channels: list = field(default_factory=lambda: [256, 256, 256, 256, 768])
    enc_kernel_sizes: list = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 64
    enc_res2net_scale: int = 2
    enc_se_channels: int = 64

    @property
    def theta(self) -> float:
        return rope_theta(self, 10000.0)

    def validate(self, where):
        _positive(where, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                  num_attention_heads=self.num_attention_heads, head_dim=self.head_dim, block_size=self.block_size,
                  repeats=self.repeats, mel_dim=self.mel_dim, enc_res2net_scale=self.enc_res2net_scale)
        if self.head_dim % 2:
            raise ConfigError(f"{where}.head_dim must be even for rotary embeddings, got {self.head_dim}")
        n = len(self.enc_channels)
        if n < 3 or len(self.enc_kernel_sizes) != n or len(self.enc_dilations) != n:
            raise ConfigError(
                f"{where}: enc_channels, enc_kernel_sizes and enc_dilations must have one entry per encoder layer "
                f"(at least 3), got {len(self.enc_channels)}, {len(self.enc_kernel_sizes)}, {len(self.enc_dilations)}"
            )
        if sum(self.enc_channels[1:-1]) != self.enc_channels[-1]:
            raise ConfigError(
                f"{where}: the last enc_channels entry ({self.enc_channels[-1]}) must equal the sum of the SE-Res2Net "
                f"widths {self.enc_channels[1:-1]}: their outputs are concatenated into it"
            )
        if any(c % self.enc_res2net_scale for c in self.enc_channels[1:-1]):
            raise ConfigError(
                f"{where}: every SE-Res2Net width in enc_channels {self.enc_channels[1:-1]} must be divisible by "
                f"enc_res2net_scale ({self.enc_res2net_scale})"
            )


@dataclass(kw_only=True)
class BigVGANConfig(Section):
    """The vocoder: mel frames -> 24 kHz waveform, prod(upsample_rates) samples per frame."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni_bigvgan",)

    mel_dim: int = 80
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: list = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates: list = field(default_factory=lambda: [5, 3, 2, 2, 2, 2])
    upsample_kernel_sizes: list = field(default_factory=lambda: [11, 7, 4, 4, 4, 4])

    def validate(self, where):
        _positive(where, mel_dim=self.mel_dim, upsample_initial_channel=self.upsample_initial_channel)
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(
                f"{where}: upsample_rates {self.upsample_rates} and upsample_kernel_sizes "
                f"{self.upsample_kernel_sizes} must have the same length (one per upsampling stage)"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(
                f"{where}: resblock_kernel_sizes and resblock_dilation_sizes must have the same length "
                "(one per residual block of a stage)"
            )
        if any(len(d) != 3 for d in self.resblock_dilation_sizes):
            raise ConfigError(f"{where}: each resblock_dilation_sizes entry must list 3 dilations")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ConfigError(
                f"{where}: upsample_initial_channel ({self.upsample_initial_channel}) is halved at each of the "
                f"{len(self.upsample_rates)} stages and must stay an integer"
            )


@dataclass(kw_only=True)
class Token2WavConfig(Section):
    MODEL_TYPES: ClassVar = ("qwen2_5_omni_token2wav",)

    dit_config: DiTConfig | None = None
    bigvgan_config: BigVGANConfig | None = None

    def __post_init__(self):
        if self.dit_config is None:
            self.dit_config = DiTConfig()
        if self.bigvgan_config is None:
            self.bigvgan_config = BigVGANConfig()

    def validate(self, where):
        dit, vocoder = self.dit_config.mel_dim, self.bigvgan_config.mel_dim
        if dit != vocoder:
            raise ConfigError(f"{where}: dit_config.mel_dim ({dit}) and bigvgan_config.mel_dim ({vocoder}) must agree: "
                              "the vocoder reads the DiT's mel")


@dataclass(kw_only=True)
class Qwen25OmniConfig(OmniConfig):
    """Thinker (+ encoders), Talker and Token2Wav of Qwen2.5-Omni-7B / -3B."""

    MODEL_TYPES: ClassVar = ("qwen2_5_omni",)

    thinker_config: Qwen25ThinkerConfig = REQUIRED
    talker_config: Qwen25TalkerConfig | None = None
    token2wav_config: Token2WavConfig | None = None
    model_type: str = "qwen2_5_omni"


# What this release's processor does when the checkpoint's files do not say otherwise (omni.Processor options).
MEDIA_DEFAULTS = {
    "patch_size": 14,
    "image_mean": (0.48145466, 0.4578275, 0.40821073),  # CLIP
    "image_std": (0.26862954, 0.26130258, 0.27577711),
}
PROCESSOR_DEFAULTS = {
    "n_window": 100, "position_id_per_seconds": 25,
    "image_options": MEDIA_DEFAULTS,
    "video_options": {**MEDIA_DEFAULTS, "min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28},  # 28-pixel units
    # its feature extractor pads / cuts to n_samples (300 s in the release's preprocessor_config.json)
    "audio_options": {"max_samples": 300 * 16000},
    "video_fps": 2.0,  # the official processor's rate when none is given
}

# ---------------------------------------------------------------------------------------------------------------
# Presets, written as the config.json dicts they stand for.

_ROPE = {"rope_type": "default", "mrope_section": [16, 24, 24]}


def _qwen2_5_omni(text: dict, output_dim: int, talker: dict) -> dict:
    return {
        "model_type": "qwen2_5_omni",
        "enable_audio_output": True,
        "thinker_config": {
            "model_type": "qwen2_5_omni_thinker",
            "audio_token_index": 151646, "image_token_index": 151655, "video_token_index": 151656,
            "audio_start_token_id": 151647, "audio_end_token_id": 151648, "vision_start_token_id": 151652,
            "vision_end_token_id": 151653, "user_token_id": 872, "position_id_per_seconds": 25,
            "seconds_per_chunk": 2, "tie_word_embeddings": False,
            "text_config": {
                "model_type": "qwen2_5_omni_text", "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
                "rope_theta": 1000000.0, "rope_scaling": dict(_ROPE), "use_sliding_window": False, **text,
            },
            "audio_config": {
                "model_type": "qwen2_5_omni_audio_encoder", "num_mel_bins": 128, "encoder_layers": 32,
                "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "d_model": 1280,
                "max_source_positions": 1500, "n_window": 100, "output_dim": output_dim,
            },
            "vision_config": {
                "model_type": "qwen2_5_omni_vision_encoder", "depth": 32, "hidden_size": 1280, "hidden_act": "silu",
                "intermediate_size": 3420, "num_heads": 16, "in_channels": 3, "patch_size": 14,
                "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                "fullatt_block_indexes": [7, 15, 23, 31], "out_hidden_size": output_dim,
            },
        },
        "talker_config": {
            "model_type": "qwen2_5_omni_talker", "vocab_size": 8448, "embedding_size": text["hidden_size"],
            "num_hidden_layers": 24, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
            "rope_scaling": dict(_ROPE), "tts_codec_start_token_id": 8293, "tts_codec_end_token_id": 8294,
            "tts_codec_pad_token_id": 8292, "tts_codec_mask_token_id": 8296, "tts_text_start_token_id": 151860,
            "tts_text_end_token_id": 151861, "tts_text_pad_token_id": 151859, "audio_token_index": 151646,
            "image_token_index": 151655, "video_token_index": 151656, "vision_start_token_id": 151652,
            "audio_start_token_id": 151647, "audio_end_token_id": 151648, "position_id_per_seconds": 25,
            "seconds_per_chunk": 2, "spatial_merge_size": 2, **talker,
        },
        "token2wav_config": {
            "model_type": "qwen2_5_omni_token2wav",
            "dit_config": {"model_type": "qwen2_5_omni_dit"},  # the reference defaults are the released numbers
            "bigvgan_config": {"model_type": "qwen2_5_omni_bigvgan"},
        },
    }


# Qwen/Qwen2.5-Omni-7B and Qwen/Qwen2.5-Omni-3B config.json (numbers as released)
_QWEN2_5_OMNI_7B = _qwen2_5_omni(
    text={"vocab_size": 152064, "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
          "num_key_value_heads": 4, "intermediate_size": 18944},
    output_dim=3584,
    talker={"hidden_size": 896, "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 128,
            "intermediate_size": 18944},
)
_QWEN2_5_OMNI_3B = _qwen2_5_omni(
    text={"vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
          "num_key_value_heads": 2, "intermediate_size": 11008},
    output_dim=2048,
    # talker widths fit the released parameter count; its mrope_section is not published here: the chunked layout
    # scaled to head_dim 64 (it must sum to head_dim / 2)
    talker={"hidden_size": 896, "num_attention_heads": 14, "num_key_value_heads": 2, "head_dim": 64,
            "intermediate_size": 4864, "rope_scaling": {**_ROPE, "mrope_section": [8, 12, 12]}},
)


def _tiny_qwen2_5() -> dict:
    """A few-MB Qwen2.5-Omni thinker with every feature of the real one (window + full vision attention, chunked
    M-RoPE, 2 s audio chunks) on the tiny byte-level vocabulary of `omni.demo`: its placeholder and marker ids are
    those of that tokenizer (the `tiny` preset's), so its Processor and this model agree."""
    d = copy.deepcopy(_QWEN2_5_OMNI_7B)
    th = d["thinker_config"]
    media = TINY_TOKEN_IDS["media"]
    for kind in ("audio", "image", "video"):
        th[f"{kind}_token_index"] = media[f"{kind}_token_id"]
    th.update(audio_start_token_id=media["audio_start_token_id"], vision_start_token_id=media["vision_start_token_id"],
              user_token_id=media["user_token_id"], audio_end_token_id=media["audio_start_token_id"] + 1,
              vision_end_token_id=media["vision_start_token_id"] + 1)
    th["text_config"].update(
        vocab_size=512, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, max_position_embeddings=8192, rope_scaling={**_ROPE, "mrope_section": [2, 3, 3]},
    )
    th["audio_config"].update(encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, d_model=64,
                              output_dim=64)
    th["vision_config"].update(depth=3, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                               fullatt_block_indexes=[1])
    del d["talker_config"], d["token2wav_config"]  # thinker only: the speech tests build their own tiny speech configs
    d["enable_audio_output"] = False
    return d


PRESETS: dict[str, dict] = {
    "qwen2.5-omni-7b": _QWEN2_5_OMNI_7B,
    "qwen2.5-omni-3b": _QWEN2_5_OMNI_3B,
    "tiny-qwen2.5": _tiny_qwen2_5(),
}
