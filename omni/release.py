"""The release registry: one `Release` record per model family, the only way shared code learns what differs.

    omni/models/qwen3_omni/__init__.py     register(Release(model_type="qwen3_omni_moe", ...))
    omni/models/qwen2_5_omni/__init__.py   register(Release(model_type="qwen2_5_omni", ...))

Shared code (config, Thinker, positions, generation, Processor, checkpoints) never imports a release package: it
asks this module, by `model_type` or by a config / model of the release, and reads the record's fields. Importing
`omni` imports `omni.models`, which registers both releases. Adding a third release is writing its package and
one `register(...)` call (docs/developing.md, "Adding a release").
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Release:
    """Everything about one release that shared code needs. Fields are read, never switched on by name."""

    name: str  # for messages: "Qwen3-Omni"
    model_type: str  # config.json's top-level `model_type`
    config: type  # its OmniConfig subclass (sections parse, validate and round-trip like every other release's)
    presets: dict  # preset name -> config.json dict
    weights: Any  # omni.checkpoints.keymap.Weights: the official key table, ignored keys, component prefixes

    # the Thinker's encoders, built from thinker_config.vision_config / .audio_config
    vision: type
    audio: type
    # mel frames -> audio tokens of that audio encoder: (n_frames (int or integer tensor), n_window) -> tokens
    audio_token_count: Callable
    time_rules: Any  # omni.positions.TimeRules: the position walk's release-specific details

    # speech: the Talker class, the vocoder (component name and class), and the speech entry points
    talker: type
    vocoder: str  # "code2wav" | "token2wav": the OmniModel attribute and config section `<vocoder>_config`
    vocoder_class: type
    voices: Callable  # model -> {voice name: what the release needs to speak with it}
    no_voices_hint: str  # what to do when a model has no voices at all
    spoken_reply: Callable  # (model, batch, reply, voice, thinker_eos_token_ids, **options) -> (codes, audio, lengths)
    stream_speech: Callable | None  # (model, batch, reply ids, voice, options, chunk, eos) -> waveform pieces; None: n/a
    speech_length_option: str  # the speech option that caps its length ("max_frames" / "max_new_tokens")
    # stream(speak=True)'s speech options and audio_chunk_frames (None: the release's default), checked before any
    # work: (model, speech options, audio_chunk_frames) -> None, raising InputError; None: checked as they are used
    check_stream_speech: Callable | None = None
    # its training.py (speech_loss, check_codes, text_steps: omni.training.speech); None: no speech training
    speech_training: Any = None
    # a new speaker vector can be learned (omni.training.voices: talker.learned_voices, <checkpoint>/voices/)
    learns_voices: bool = False
    # what `omni info` lists: (config, checkpoint directory or None) -> {"presets": [...], "learned": [...]}
    voice_names: Callable | None = None

    processor_defaults: dict = field(default_factory=dict)  # omni.Processor keyword defaults of this release
    # files beside the weights that only this release has: after_load(model, directory) once the weights are in,
    # save_extras(model, directory) after omni.save wrote the weights
    after_load: Callable | None = None
    save_extras: Callable | None = None
    sections: tuple = ()  # every Section class of the release's config tree (filled by `register`)


_BY_MODEL_TYPE: dict[str, Release] = {}
_BY_SECTION: dict[type, Release] = {}
PRESETS: dict[str, dict] = {}  # every release's presets, by name (omni.PRESETS)


def register(release: Release) -> Release:
    """Make a release known: its model_type, its config classes and its presets."""
    if release.model_type in _BY_MODEL_TYPE:
        raise ConfigError(f"a release with model_type {release.model_type!r} is already registered")
    clash = sorted(set(release.presets) & set(PRESETS))
    if clash:
        raise ConfigError(f"preset name(s) {clash} of {release.name} are taken by another release")
    sections = tuple(_section_classes(release.config))
    release = dataclasses.replace(release, sections=sections)
    _BY_MODEL_TYPE[release.model_type] = release
    for cls in sections:
        _BY_SECTION.setdefault(cls, release)
    PRESETS.update(release.presets)
    return release


def releases() -> MappingProxyType:
    """model_type -> Release, for every registered release."""
    return MappingProxyType(_BY_MODEL_TYPE)


def release_of(thing) -> Release:
    """The release of a `model_type` string, a config (any section of one) or a model (anything with `.config`)."""
    if isinstance(thing, str):
        if thing not in _BY_MODEL_TYPE:
            raise ConfigError(f"model_type {thing!r} is not supported; expected one of {sorted(_BY_MODEL_TYPE)}")
        return _BY_MODEL_TYPE[thing]
    config = getattr(thing, "config", thing)
    for cls in type(config).__mro__:
        if cls in _BY_SECTION:
            return _BY_SECTION[cls]
    raise ConfigError(
        f"{type(config).__name__} belongs to no registered release; build configs with omni.OmniConfig.from_dict / "
        "from_pretrained / from_name (or a release's own config classes)"
    )


def vocoders() -> tuple[str, ...]:
    """The vocoder component names of all releases, in registration order."""
    return tuple(dict.fromkeys(r.vocoder for r in _BY_MODEL_TYPE.values()))


def _section_classes(cls) -> list[type]:
    """`cls` and every config section class reachable from its annotations (depth first, no repeats)."""
    found, todo = [], [cls]
    while todo:
        c = todo.pop()
        if c in found:
            continue
        found.append(c)
        for tp in typing.get_type_hints(c).values():
            for arg in (tp, *typing.get_args(tp)):
                if isinstance(arg, type) and hasattr(arg, "MODEL_TYPES") and arg not in found:
                    todo.append(arg)
    return found
