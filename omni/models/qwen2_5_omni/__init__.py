"""Qwen2.5-Omni (Qwen2.5-Omni-7B / -3B): `model_type: qwen2_5_omni`.

    config.py     its config.json sections (Token2Wav's included) and presets ("qwen2.5-omni-7b", "-3b",
                  "tiny-qwen2.5")
    weights.py    the official key table
    vision.py     Qwen25VisionTokenizer: Qwen2.5-VL-style ViT, window attention, RMSNorm + SwiGLU blocks
    audio.py      Qwen25AudioTokenizer: the Whisper-style encoder, pooled_audio_token_count
    talker.py     Qwen25Talker: a dense decoder, one codec code per 20 ms step
    speech.py     the Talker's inputs, the code loop, speak / spoken_reply / stream_speech
    token2wav/    Token2Wav: DiT flow matching (dit.py, ecapa.py) -> mel -> BigVGAN (bigvgan.py); voices (speakers.py);
                  chunked streaming (streaming.py)

Everything shared code needs is the one `RELEASE` record below.
"""

import os

from ...positions import TimeRules
from ...release import Release, register
from . import speech, training
from .audio import Qwen25AudioTokenizer, pooled_audio_token_count
from .config import PRESETS, PROCESSOR_DEFAULTS, Qwen25OmniConfig
from .talker import Qwen25Talker
from .token2wav import Token2Wav
from .token2wav.speakers import SPEAKERS_FILE, load_speakers, save_speakers
from .vision import Qwen25VisionTokenizer
from .weights import WEIGHTS



def after_load(model, directory: str) -> None:
    """Token2Wav runs in fp32 whatever the load dtype (as the release runs its ODE and vocoder); the voices come
    from spk_dict.safetensors beside the weights."""
    if model.token2wav is not None:
        model.token2wav.float()
    if os.path.isfile(os.path.join(directory, SPEAKERS_FILE)):
        model.speakers = load_speakers(directory)


def save_extras(model, directory: str) -> None:
    if model.speakers:
        save_speakers(model.speakers, os.path.join(directory, SPEAKERS_FILE))


RELEASE = register(Release(
    name="Qwen2.5-Omni",
    model_type="qwen2_5_omni",
    config=Qwen25OmniConfig,
    presets=PRESETS,
    weights=WEIGHTS,
    vision=Qwen25VisionTokenizer,
    audio=Qwen25AudioTokenizer,
    audio_token_count=pooled_audio_token_count,
    # whole position units for video times, audio-in-video in chunks with shared markers, padding at position 1
    time_rules=TimeRules(integer_times=True, av_chunks=True, shared_markers=True, padding_position=1),
    talker=Qwen25Talker,
    vocoder="token2wav",
    vocoder_class=Token2Wav,
    voices=speech.voices,
    no_voices_hint=speech.NO_VOICES,
    spoken_reply=speech.spoken_reply,
    stream_speech=speech.stream_speech,  # chunked Token2Wav (token2wav/streaming.py)
    speech_training=training,
    speech_length_option="max_new_tokens",
    check_stream_speech=speech.check_stream_speech,
    processor_defaults=PROCESSOR_DEFAULTS,
    after_load=after_load,
    save_extras=save_extras,
))
