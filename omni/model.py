"""OmniModel: the components of one release, built from an OmniConfig: Thinker, Talker and the release's vocoder
(Code2Wav for Qwen3-Omni, Token2Wav for Qwen2.5-Omni). Which classes those are is the release's record
(omni.release); this module only assembles them."""

from __future__ import annotations

from torch import nn

from .config import OmniConfig
from .errors import ConfigError, OmniError
from .release import release_of, vocoders
from .thinker import Thinker


def all_components() -> tuple[str, ...]:
    """Every component name a release can have: thinker, talker, then each release's vocoder."""
    return ("thinker", "talker", *vocoders())


def _described(config: OmniConfig | None, component: str) -> bool:
    """Does the config have a section for `component`? (Without a config, everything may be.)"""
    return config is None or component == "thinker" or getattr(config, f"{component}_config", None) is not None


def normalize_components(components, config: OmniConfig | None = None) -> tuple[str, ...]:
    known = all_components()
    if components is None:  # everything the config describes
        return tuple(c for c in known if _described(config, c))
    if isinstance(components, str):
        components = (components,)
    if not isinstance(components, (list, tuple, set, frozenset)) or not all(isinstance(c, str) for c in components):
        raise ConfigError(f"components must be a component name or a list of them, e.g. ('thinker',), got "
                          f"{components!r}")
    components = tuple(components)
    unknown = [c for c in components if c not in known]
    if unknown:
        raise ConfigError(f"unknown component(s) {unknown}; choose from {list(known)}")
    return components


class OmniModel(nn.Module):
    """Every component the config describes (or the requested subset): `.thinker`, `.talker`, and the vocoder,
    `.code2wav` or `.token2wav` (each None when not built).

    Under `with torch.device("meta"):` nothing is allocated, so even the 30B model builds instantly.
    """

    def __init__(self, config: OmniConfig, components=None):
        super().__init__()
        try:
            self._build(config, components)
        except OmniError:
            raise
        except (RuntimeError, OverflowError, ValueError, MemoryError) as e:  # sizes no tensor can have
            raise ConfigError(f"the model this config describes cannot be built: {type(e).__name__}: {e}; check its "
                              "sizes") from None

    def _build(self, config: OmniConfig, components) -> None:
        release = release_of(config)
        self.config = config
        # a requested part the config has no section for (e.g. the talker of a thinker-only release) is not built
        self.components = tuple(c for c in normalize_components(components, config) if _described(config, c))
        self.thinker = Thinker(config.thinker_config) if "thinker" in self.components else None
        self.talker = None
        if "talker" in self.components:
            config.check_talker_fits_thinker(type(config).__name__)
            self.talker = release.talker(config.talker_config)
        for name in vocoders():
            built = name == release.vocoder and name in self.components
            setattr(self, name, release.vocoder_class(getattr(config, f"{name}_config")) if built else None)
        self.speakers = {}  # Qwen2.5 voice presets (name -> Speaker), attached by omni.load from spk_dict.safetensors
        self.processor = None  # attached by omni.load when the checkpoint ships tokenizer files

    # -- generation ------------------------------------------------------------------------------------------------

    def generate(self, inputs, **options):
        """Generate a reply.

        inputs: a conversation (list of {"role", "content"} messages), a list of conversations, or a batch dict in
            the official processor layout (input_ids, attention_mask, pixel_values, ...).
        Text options: max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty,
            seed, stop_strings, eos_token_ids, pad_token_id, quiet, use_audio_in_video, compile.
        Speech: speak=True, voice="ethan" (the model's voices, any case), speech={the release's speech options}.

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
