"""OmniModel: the components of one release, built from an OmniConfig: Thinker, Talker and a vocoder (Code2Wav for
Qwen3-Omni, Token2Wav for Qwen2.5-Omni)."""

from __future__ import annotations

from torch import nn

from .code2wav import Code2Wav
from .config import OmniConfig
from .config_qwen2_5 import Qwen25TalkerConfig
from .errors import ConfigError
from .talker import Talker
from .talker_qwen2_5 import Qwen25Talker
from .thinker import Thinker
from .token2wav import Token2Wav

# code2wav: the Qwen3-Omni vocoder; token2wav: the Qwen2.5-Omni one (a config describes one or the other)
ALL_COMPONENTS = ("thinker", "talker", "code2wav", "token2wav")
IMPLEMENTED = ("thinker", "talker", "code2wav", "token2wav")  # grows as components land


def _described(config: OmniConfig | None, component: str) -> bool:
    """Does the config have a section for `component`? (Without a config, everything may be.)"""
    return config is None or component == "thinker" or getattr(config, f"{component}_config", None) is not None


def normalize_components(components, config: OmniConfig | None = None) -> tuple[str, ...]:
    if components is None:  # everything implemented that the config describes
        return tuple(c for c in IMPLEMENTED if _described(config, c))
    if isinstance(components, str):
        components = (components,)
    components = tuple(components)
    unknown = [c for c in components if c not in ALL_COMPONENTS]
    if unknown:
        raise ConfigError(f"unknown component(s) {unknown}; choose from {list(ALL_COMPONENTS)}")
    return components


class OmniModel(nn.Module):
    """Every component the config describes (or the requested subset): `.thinker`, `.talker`, `.code2wav` or
    `.token2wav` (None when not built).

    Under `with torch.device("meta"):` nothing is allocated, so even the 30B model builds instantly.
    """

    def __init__(self, config: OmniConfig, components=None):
        super().__init__()
        self.config = config
        self.components = normalize_components(components, config)
        not_ready = [c for c in self.components if c not in IMPLEMENTED]
        if not_ready and components is not None:
            raise ConfigError(f"component(s) {not_ready} are not implemented yet; available: {list(IMPLEMENTED)}")
        # a requested part the config has no section for (e.g. the talker of a thinker-only release) is not built
        self.components = tuple(c for c in self.components if _described(config, c))
        self.thinker = Thinker(config.thinker_config) if "thinker" in self.components else None
        self.talker = None
        if "talker" in self.components:
            config.check_talker_fits_thinker(type(config).__name__)
            qwen2_5 = isinstance(config.talker_config, Qwen25TalkerConfig)
            self.talker = (Qwen25Talker if qwen2_5 else Talker)(config.talker_config)
        self.code2wav = Code2Wav(config.code2wav_config) if "code2wav" in self.components else None
        self.token2wav = Token2Wav(config.token2wav_config) if "token2wav" in self.components else None
        self.speakers = {}  # Qwen2.5 voice presets (name -> Speaker), attached by omni.load from spk_dict.safetensors
        self.processor = None  # attached by omni.load when the checkpoint ships tokenizer files

    # -- generation ------------------------------------------------------------------------------------------------

    def generate(self, inputs, **options):
        """Generate a reply.

        inputs: a conversation (list of {"role", "content"} messages), a list of conversations, or a batch dict in
            the official processor layout (input_ids, attention_mask, pixel_values, ...).
        Text options: max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty,
            seed, stop_strings, eos_token_ids, pad_token_id, quiet, use_audio_in_video.
        Speech: speak=True, voice="ethan" (the config's speaker names), speech={SpeechSampling options}.

        Returns the new token ids (B, N) (padded after each row's end) for a batch dict; a `Generation` with
        `.tokens` and `.text` for conversations, plus `.audio` (B, 1, samples, 24 kHz), `.audio_lengths` and
        `.codes` when speak=True.
        """
        from .generation import generate

        return generate(self, inputs, **options)

    def stream(self, inputs, **options):
        """Like `generate` for one conversation, but yields the reply as it is produced: text pieces (str), then
        with speak=True waveform chunks (1-D tensors at 24 kHz; `audio_chunk_frames` codec frames each)."""
        from .generation import stream

        return stream(self, inputs, **options)

    # -- training switches (see omni.training) ---------------------------------------------------------------------

    def freeze(self, *components: str) -> int:
        """Stop training components, e.g. `model.freeze("vision", "audio")`; returns the parameters frozen."""
        from .training.switches import freeze

        return freeze(self, *components)

    def unfreeze(self, *components: str) -> int:
        """Train components again; returns the parameters made trainable."""
        from .training.switches import unfreeze

        return unfreeze(self, *components)

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        """Recompute each decoder layer / encoder block in the backward pass instead of storing activations."""
        from .training.switches import set_gradient_checkpointing

        set_gradient_checkpointing(self, enabled)
