"""Qwen3-Omni (Qwen3-Omni-30B-A3B Instruct / Thinking / Captioner): `model_type: qwen3_omni_moe`.

    config.py     its config.json sections and presets ("qwen3-omni-30b-a3b", "tiny")
    weights.py    the official key table
    vision.py     VisionTokenizer: ViT with 2-D rotary, learned position table, DeepStack mergers
    audio.py      AudioTokenizer: the AuT encoder (conv2d stem, windowed attention), audio_token_count
    talker.py     Talker (MoE + shared expert) and CodePredictor: 16 codes per 80 ms frame
    speech.py     the Talker's inputs, the frame loop, speak / spoken_reply / stream_speech
    code2wav.py   Code2Wav: codes -> 24 kHz waveform, streamable

Everything shared code needs is the one `RELEASE` record below. Learned voices (omni.training.voices) load from
and save to `<checkpoint>/voices/` through its after_load / save_extras hooks.
"""

from ...positions import TimeRules
from ...release import Release, register
from . import speech, training
from .audio import AudioTokenizer, audio_token_count
from .code2wav import Code2Wav
from .config import PRESETS, Qwen3OmniConfig
from .talker import Talker
from .vision import VisionTokenizer
from .weights import WEIGHTS


def after_load(model, directory: str) -> None:
    """Voice files beside the weights (`voices/<name>.safetensors`) become learned voices."""
    from ...training.voices import load_voices_beside

    load_voices_beside(model, directory)


def save_extras(model, directory: str) -> None:
    from ...training.voices import save_voices_beside

    save_voices_beside(model, directory)


def voice_names(config, directory=None) -> dict:
    from ...training.voices import voice_file_names

    learned = voice_file_names(directory) if directory is not None else []
    tk = config.talker_config
    return {"presets": list((tk.speaker_id or {}) if tk is not None else {}), "learned": learned}


RELEASE = register(Release(
    name="Qwen3-Omni",
    model_type="qwen3_omni_moe",
    config=Qwen3OmniConfig,
    presets=PRESETS,
    weights=WEIGHTS,
    vision=VisionTokenizer,
    audio=AudioTokenizer,
    audio_token_count=audio_token_count,
    time_rules=TimeRules(),  # fractional video times, audio-in-video merged by time, padding at position 0
    talker=Talker,
    vocoder="code2wav",
    vocoder_class=Code2Wav,
    voices=speech.voices,
    no_voices_hint="",  # the voices are talker_config.speaker_id: a config without them lists none
    spoken_reply=speech.spoken_reply,
    stream_speech=speech.stream_speech,
    speech_training=training,
    learns_voices=True,
    voice_names=voice_names,
    after_load=after_load,
    save_extras=save_extras,
    speech_length_option="max_frames",
    processor_defaults={"n_window": 50, "position_id_per_seconds": 13.0},
))
