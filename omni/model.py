"""OmniModel: the Thinker, Talker and Code2Wav of one release, built from an OmniConfig."""

from __future__ import annotations

from torch import nn

from .code2wav import Code2Wav
from .config import OmniConfig, TalkerConfig
from .errors import ConfigError
from .talker import Talker
from .thinker import Thinker

ALL_COMPONENTS = ("thinker", "talker", "code2wav")
IMPLEMENTED = ("thinker", "talker", "code2wav")  # grows as components land


def normalize_components(components, config: OmniConfig | None = None) -> tuple[str, ...]:
    if components is None:  # everything implemented that the config describes
        described = {"thinker": True, "talker": config is None or isinstance(config.talker_config, TalkerConfig),
                     "code2wav": config is None or config.code2wav_config is not None}
        return tuple(c for c in IMPLEMENTED if described[c])
    if isinstance(components, str):
        components = (components,)
    components = tuple(components)
    unknown = [c for c in components if c not in ALL_COMPONENTS]
    if unknown:
        raise ConfigError(f"unknown component(s) {unknown}; choose from {list(ALL_COMPONENTS)}")
    return components


class OmniModel(nn.Module):
    """Every component the config describes (or the requested subset), with `.thinker`, `.talker`, `.code2wav`.

    Under `with torch.device("meta"):` nothing is allocated, so even the 30B model builds instantly.
    """

    def __init__(self, config: OmniConfig, components=None):
        super().__init__()
        self.config = config
        self.components = normalize_components(components, config)
        not_ready = [c for c in self.components if c not in IMPLEMENTED]
        if not_ready and components is not None:
            raise ConfigError(f"component(s) {not_ready} are not implemented yet; available: {list(IMPLEMENTED)}")
        if "talker" in self.components and config.talker_config is not None and not isinstance(
                config.talker_config, TalkerConfig):
            raise ConfigError(f"the talker of {config.model_type} is not implemented yet; load with "
                              "components=('thinker',)")
        self.thinker = Thinker(config.thinker_config) if "thinker" in self.components else None
        if "talker" in self.components and config.talker_config is None:  # e.g. a thinker-only release
            self.components = tuple(c for c in self.components if c != "talker")
        self.talker = Talker(config.talker_config) if "talker" in self.components else None
        if "code2wav" in self.components and config.code2wav_config is None:
            self.components = tuple(c for c in self.components if c != "code2wav")
        self.code2wav = Code2Wav(config.code2wav_config) if "code2wav" in self.components else None
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
