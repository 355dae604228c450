"""Typed config of the Qwen2.5-Omni Token2Wav (`token2wav_config` in config.json): a DiT and a BigVGAN.

Field names are the official keys; omitted keys take the reference implementation's defaults, which for these two
blocks are also the released numbers (Qwen2.5-Omni-7B and -3B share one Token2Wav).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import Code2WavConfig, ConfigError, Section, _positive


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

    theta = Code2WavConfig.theta  # the same rule: rope_parameters, else rope_theta, else 10000

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
        if self.dit_config.mel_dim != self.bigvgan_config.mel_dim:
            raise ConfigError(
                f"{where}: dit_config.mel_dim ({self.dit_config.mel_dim}) and bigvgan_config.mel_dim "
                f"({self.bigvgan_config.mel_dim}) must agree: the vocoder reads the DiT's mel"
            )
