"""Audio in and out: load any clip as 16 kHz mono float32, make 128-bin log-mel features; write speech as a wav.

    load_audio(path | array | tensor) ──decode (soundfile, else PyAV), down-mix, resample──► (N,) float32 @ 16 kHz
    log_mel_features([wave, ...]) ──pad to the longest, centered STFT, Slaney mel, log10──► input_features (B, 128, T)
                                                                                            feature_attention_mask (B, T)
    write_wav(path, waveform) ──16-bit PCM, standard library `wave`──► a 24 kHz mono .wav (the vocoders' output)

Features are the ones the official processor makes with transformers' WhisperFeatureExtractor (n_fft 400 with a
periodic Hann window, hop 160, reflect-padded centered STFT, power spectrum, 128 Slaney mel filters over
0-8 kHz, log10 of max(mel, 1e-10), floor at each clip's maximum - 8, then (x + 4) / 4, last STFT frame dropped),
computed here batched with `torch.stft`.

Batching changes numbers, as it does officially: clips are right-padded with zeros to the longest one *before*
the STFT, so the last frames of a shorter clip see zeros (not the reflection of its own end), and the padded
frames take part in that clip's maximum. A clip of L samples owns ceil(L / 160) frames of the T = Lmax // 160.

Length: the official Qwen3-Omni processor calls the extractor with `padding=True, truncation=False`, so there is
no maximum: no 30 s (or 300 s) cut is applied here either. Long clips cost memory linearly; the encoder's
attention is windowed, so they are fine for the model.

Reading and resampling follow the model cards' pipeline (qwen-omni-utils -> `librosa.load(..., sr=16000)`):
channels are averaged in float32 before resampling; other rates go through soxr in its high-quality mode (librosa's
default, so the samples are the same); files libsndfile cannot read (m4a, video sound tracks) are decoded through
16-bit PCM, as audioread's ffmpeg reader delivers them.
"""

from __future__ import annotations

import math
import os
import wave as wav_format
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import integer
from ..errors import MediaError
from ..files import atomic_write

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 128
_FRAMES_PER_PIECE = 6000  # STFT frames computed at once (60 s): bounds the memory of long clips

__all__ = ["SAMPLE_RATE", "load_audio", "resample", "log_mel_features", "mel_filters"]


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_audio(src, sr: int = SAMPLE_RATE, *, orig_sr: int | None = None,
               sampling_rate: int | None = None) -> np.ndarray:
    """A clip as float32 mono at `sr` Hz (`sampling_rate` is another name for `sr`).

    src: a file path (wav/flac/ogg... through soundfile; mp3/m4a/aac and the sound track of video files through
    PyAV), a numpy array or torch tensor (give its rate as `orig_sr`, or pass `(array, rate)`). Arrays may be 1-D or
    2-D (channels on the shorter axis); channels are averaged. Integer PCM is scaled to [-1, 1).
    """
    sr = sampling_rate if sampling_rate is not None else sr
    _check_rate(sr, "target sample rate")
    if isinstance(src, tuple) and len(src) == 2 and not isinstance(src[1], (np.ndarray, torch.Tensor)):
        src, orig_sr = src
    if isinstance(src, (str, os.PathLike)):
        from .image import local_path

        where = local_path(src, "audio")
        wave, orig_sr = _read_file(where)
    elif isinstance(src, (np.ndarray, torch.Tensor, list)):
        if orig_sr is None:
            raise MediaError("load_audio got an array without its sample rate: pass orig_sr=<Hz> "
                             "(or a tuple (array, rate))")
        wave, where = _as_mono(src), "the audio array"
    else:
        raise MediaError(f"cannot load audio from a {type(src).__name__}; pass a file path, a numpy array or a "
                         "torch tensor")
    _check_rate(orig_sr, f"sample rate of {where}")
    _check_wave(wave, where)
    if int(orig_sr) != int(sr):
        wave = resample(wave, int(orig_sr), int(sr))
    return wave


def _check_rate(rate, what: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or not rate > 0 \
            or int(rate) != rate:
        raise MediaError(f"{what} must be a positive whole number of Hz, got {rate!r}")


def _check_wave(wave: np.ndarray, where: str) -> None:
    if wave.size == 0:
        raise MediaError(f"{where} holds no samples (empty audio)")
    if not np.isfinite(wave).all():
        raise MediaError(f"{where} contains NaN or infinite samples; clean or re-decode the audio")


def _pcm_to_float(wave: np.ndarray) -> np.ndarray:
    """8/16/32-bit integer PCM scaled to [-1, 1) by its type's range; other numbers pass through as values."""
    if wave.dtype.kind in "iu" and wave.dtype.itemsize == 8:  # no 64-bit PCM exists: plain numbers (lists of ints)
        return wave.astype(np.float64)
    if wave.dtype.kind == "i":
        return wave.astype(np.float64) / -float(np.iinfo(wave.dtype).min)
    if wave.dtype.kind == "u":
        half = (float(np.iinfo(wave.dtype).max) + 1) / 2
        return (wave.astype(np.float64) - half) / half
    if wave.dtype.kind != "f":
        raise MediaError(f"audio samples must be numbers, got dtype {wave.dtype}")
    return wave


def _as_mono(wave) -> np.ndarray:
    """1-D float32 from a 1-D or 2-D (channels on the shorter axis) array / tensor / list."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().float().cpu().numpy() if wave.is_floating_point() else wave.detach().cpu().numpy()
    wave = _pcm_to_float(np.asarray(wave))
    if wave.ndim == 2:
        wave = wave.mean(axis=int(np.argmin(wave.shape)))  # down-mix: average the channels
    elif wave.ndim != 1:
        raise MediaError(f"audio must be 1-D (samples) or 2-D (channels x samples), got shape {wave.shape}")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_file(path: str) -> tuple[np.ndarray, int]:
    if not os.path.isfile(path):
        raise MediaError(f"audio file not found: {path!r}")
    errors = []
    try:
        import soundfile

        data, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (N, C)
        return _as_mono(data.mean(axis=1)), int(rate)
    except ImportError:
        errors.append("soundfile is not installed")
    except Exception as e:  # libsndfile refuses mp3-in-mp4, video containers...: try PyAV next
        errors.append(f"soundfile: {e}")
    try:
        return _read_with_av(path)
    except ImportError:
        errors.append("PyAV (av) is not installed")
    except MediaError:
        raise
    except Exception as e:
        errors.append(f"PyAV: {e}")
    raise MediaError(f"cannot read audio from {path!r} ({'; '.join(errors)}); is it an audio or video file? "
                     "`pip install soundfile av` reads wav/flac/ogg/mp3/m4a and video sound tracks")


def _as_16_bit(x: np.ndarray) -> np.ndarray:
    """Float samples through 16-bit PCM and back, as ffmpeg converts them (round to nearest, clip)."""
    return (np.clip(np.rint(x.astype(np.float32) * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def _read_with_av(path: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any container PyAV opens (mp3, m4a, aac, mp4/mkv/webm...)."""
    import av

    with av.open(path) as container:
        streams = container.streams.audio
        if not streams:
            raise MediaError(f"{path!r} has no audio stream (a silent video?)")
        stream = streams[0]
        pieces, rate = [], stream.rate or stream.codec_context.sample_rate
        for frame in container.decode(stream):
            data = frame.to_ndarray()  # planar (C, n) or packed (1, n * C)
            if not frame.format.is_planar:
                data = data.reshape(-1, len(frame.layout.channels)).T
            # as the cards' pipeline reads such files (audioread through the ffmpeg CLI): 16-bit samples, then the
            # channels averaged in float32
            pieces.append(_as_16_bit(_pcm_to_float(data)).mean(axis=0, dtype=np.float32))  # (n,)
    if not pieces:
        raise MediaError(f"{path!r}: the audio stream decoded to no samples")
    return np.concatenate(pieces).astype(np.float32), int(rate)


# ---------------------------------------------------------------------------------------------------------------
# Resampling


def resample(wave, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample a 1-D signal (numpy or torch) from orig_sr to new_sr as the model cards' pipeline does: librosa's
    default, soxr in its high-quality mode, then cut or zero-padded to ceil(N * new / orig) samples."""
    _check_rate(orig_sr, "orig_sr")
    _check_rate(new_sr, "new_sr")
    import soxr

    x = wave.detach().float().cpu().numpy().reshape(-1) if torch.is_tensor(wave) else \
        np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
    if int(orig_sr) == int(new_sr):
        return x.copy()
    y = soxr.resample(x, int(orig_sr), int(new_sr), quality="soxr_hq")
    n = math.ceil(len(x) * float(new_sr) / int(orig_sr))
    return np.ascontiguousarray(y[:n] if len(y) >= n else np.pad(y, (0, n - len(y))), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Log-mel features


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic (27 mel per ln 6.4) above."""
    mel = 3.0 * f / 200.0
    log = f >= 1000.0
    mel[log] = 15.0 + np.log(f[log] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f = 200.0 * m / 3.0
    log = m >= 15.0
    f[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log] - 15.0))
    return f


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters on the Slaney mel scale, 0 to sr/2 Hz."""
    fft_hz = np.linspace(0, sr // 2, n_fft // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0], n_mels + 2)
    edges = _mel_to_hz(edges_mel)  # filter k rises from edges[k], peaks at edges[k+1], falls to edges[k+2]
    rise = (fft_hz[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    fall = (edges[None, 2:] - fft_hz[:, None]) / np.diff(edges)[None, 1:]
    tri = np.maximum(0.0, np.minimum(rise, fall))  # (freqs, n_mels)
    tri *= 2.0 / (edges[2:] - edges[:-2])[None]  # equal area per filter
    return torch.from_numpy(tri.T.astype(np.float32))


def log_mel_features(waveforms, sr: int = SAMPLE_RATE, *, device=None, max_samples: int | None = None) -> dict:
    """Batch of 1-D waveforms -> {input_features (B, 128, T) float32, feature_attention_mask (B, T) int32}.

    Waveforms at another rate than 16 kHz are resampled first. T = longest clip // 160 frames, or with
    `max_samples` (the Qwen2.5-Omni processor: 30 s = 480000) every clip is cut to and padded to that many samples
    (T = max_samples // 160), which changes the last frames' values and the per-clip peak like the official one.
    """
    if isinstance(waveforms, (np.ndarray, torch.Tensor)) and np.ndim(waveforms) == 1:
        waveforms = [waveforms]
    if not isinstance(waveforms, (list, tuple)) or not waveforms:
        raise MediaError("log_mel_features takes a non-empty list of 1-D waveforms")
    _check_rate(sr, "sr")
    waves = []
    for i, w in enumerate(waveforms):
        w = _as_mono(w) if not (isinstance(w, np.ndarray) and w.ndim == 1 and w.dtype == np.float32) else w
        _check_wave(w, f"waveform {i}")
        if int(sr) != SAMPLE_RATE:
            w = resample(w, int(sr), SAMPLE_RATE)
        if len(w) < HOP_LENGTH:
            raise MediaError(f"waveform {i} has {len(w)} samples; at least {HOP_LENGTH} (10 ms at 16 kHz) are needed "
                             "for one mel frame")
        waves.append(torch.from_numpy(np.ascontiguousarray(w)))
    if max_samples is not None:
        if not isinstance(max_samples, int) or max_samples < N_FFT:
            raise MediaError(f"max_samples must be an integer of at least {N_FFT}, got {max_samples!r}")
        waves = [w[:max_samples] for w in waves]
    lengths = torch.tensor([len(w) for w in waves])
    longest = int(lengths.max()) if max_samples is None else max_samples
    if longest <= N_FFT // 2:
        raise MediaError(f"the longest waveform has {longest} samples; the centered STFT needs more than "
                         f"{N_FFT // 2} (12.5 ms at 16 kHz)")
    batch = torch.zeros(len(waves), longest)  # right-padded with silence, as the official extractor does
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    batch = batch.to(device) if device is not None else batch

    window = torch.hann_window(N_FFT, device=batch.device)  # periodic
    filters = mel_filters().to(batch.device)
    # centered STFT = reflect-pad by n_fft/2, then plain frames; done a piece of frames at a time so a long clip
    # never holds its whole complex spectrogram (20 minutes: 0.2 GB complex + 0.1 GB power per copy)
    padded = F.pad(batch[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[:, 0]
    T = longest // HOP_LENGTH  # the STFT's last frame is dropped
    log = torch.empty(len(waves), N_MELS, T, device=batch.device)
    for f0 in range(0, T, _FRAMES_PER_PIECE):
        f1 = min(f0 + _FRAMES_PER_PIECE, T)
        piece = padded[:, f0 * HOP_LENGTH: (f1 - 1) * HOP_LENGTH + N_FFT]
        spec = torch.stft(piece, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)  # (B, 201, n)
        log[..., f0:f1] = torch.clamp(filters @ spec.abs() ** 2, min=1e-10).log10()
    peak = log.amax(dim=(1, 2), keepdim=True)  # per clip, padded frames included
    log = torch.maximum(log, peak - 8.0).add_(4.0).div_(4.0)

    owned = torch.clamp((lengths + HOP_LENGTH - 1) // HOP_LENGTH, max=T)  # frames whose start is inside the clip
    mask = (torch.arange(T)[None] < owned[:, None]).to(torch.int32)
    return {"input_features": log, "feature_attention_mask": mask.to(log.device)}


SPEECH_SAMPLE_RATE = 24000  # what both releases' vocoders produce


MAX_WAV_CHANNELS = 16


def write_wav(path: str | os.PathLike, waveform, sample_rate: int = SPEECH_SAMPLE_RATE) -> None:
    """Write 16-bit PCM: waveform (samples,) mono or (channels, samples), a tensor or an array.

    Float samples are in [-1, 1] (beyond it they are clipped; NaN / inf are refused); integer samples are PCM at
    their own width (int16 as is; int8 / uint8 / int32 scaled to 16 bits). Everything is checked before the file
    is opened, and the file is written under a temporary name and renamed: a failed call leaves `path` as it was.
    """
    pcm = _pcm16(waveform)  # (channels, samples) int16
    rate = integer("sample_rate", sample_rate, 1, 1_000_000, error=MediaError, what="an integer in 1..1000000 (Hz)")
    if not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"path must be a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MediaError(f"{path} is a directory; give the wav file's path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MediaError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        with atomic_write(path, "wb") as f, wav_format.open(f, "wb") as w:
            w.setnchannels(pcm.shape[0])
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())  # frames: channels interleaved
    except OSError as e:
        raise MediaError(f"cannot write {path}: {e}") from None


def _pcm16(waveform) -> np.ndarray:
    """A waveform as (channels, samples) 16-bit PCM, or MediaError saying what is wrong with it."""
    if torch.is_tensor(waveform):
        waveform = waveform.detach().cpu()
        waveform = waveform.float().numpy() if waveform.dtype in (torch.bfloat16, torch.float16) else waveform.numpy()
    try:
        x = np.asarray(waveform)
    except (TypeError, ValueError) as e:
        raise MediaError(f"waveform must be a tensor or an array of samples ({e})") from None
    if x.dtype.kind not in "fiu":
        raise MediaError(f"waveform must hold float or integer samples, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or not 1 <= x.shape[0] <= MAX_WAV_CHANNELS:
        raise MediaError(f"waveform must be (samples,) or (channels, samples) with 1..{MAX_WAV_CHANNELS} channels, "
                         f"got shape {x.shape}" + ("; pass waveform.T for (samples, channels)" if x.ndim == 2 else ""))
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise MediaError("waveform holds NaN or infinite samples")
        return (np.clip(x.astype(np.float64), -1.0, 1.0) * 32767.0).round().astype(np.int16)
    if x.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return ((x.astype(np.int32) - 128) << 8).astype(np.int16)
    bits = x.dtype.itemsize * 8
    if x.dtype.kind == "u":
        x = x.astype(np.int64) - (1 << (bits - 1))
    shift = bits - 16
    x = x.astype(np.int64)
    return (x >> shift if shift > 0 else x << -shift).astype(np.int16)
