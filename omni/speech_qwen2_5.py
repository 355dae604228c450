"""Speech output of Qwen2.5-Omni: a finished Thinker reply -> Talker codes -> Token2Wav waveform (24 kHz).

    Thinker forward over [prompt, reply[:-1]]  ->  input embeddings and final hidden states
    build_talker_inputs (omni.talker_qwen2_5)  ->  the Talker's prompt + the reply's text track
    generate_codes                             ->  codec codes per row, until codec pad / end
    Token2Wav, one row at a time               ->  waveform (B, 1, samples), silent past each row's end

The voice is a speaker preset (`model.speakers`, read from `spk_dict.safetensors`; see omni.token2wav.speakers).
"""

from __future__ import annotations

import torch

from .errors import InputError
from .generation import reread_reply
from .talker_qwen2_5 import Qwen25Codes, Qwen25TalkerInputs, build_talker_inputs, generate_codes
from .token2wav import Speaker

TALKER_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed")
TOKEN2WAV_OPTIONS = ("num_steps", "guidance_scale", "sway_coefficient")


def find_speaker(speakers: dict | None, voice: str) -> Speaker:
    """A voice preset by name, case-insensitive ("Chelsie", "chelsie")."""
    by_name = {name.lower(): s for name, s in (speakers or {}).items()}
    if voice.lower() not in by_name:
        if not by_name:
            raise InputError(
                "this model has no speaker presets: put spk_dict.safetensors next to the weights (convert the "
                "release's spk_dict.pt once with docs/examples/convert_speakers.py)"
            )
        raise InputError(f"unknown voice {voice!r}; available: {sorted(speakers)}")
    return by_name[voice.lower()]


def check_can_speak(model, voice: str) -> Speaker:
    """Fail before any generation work if speech cannot be produced (missing parts, unknown voice)."""
    missing = [c for c in ("thinker", "talker", "token2wav") if getattr(model, c, None) is None]
    if missing:
        raise InputError(f"speech needs the thinker, talker and token2wav; this model was loaded without {missing} "
                         "(load with components=('thinker', 'talker', 'token2wav'), the default)")
    return find_speaker(getattr(model, "speakers", None), voice)


@torch.no_grad()
def reply_talker_inputs(model, batch: dict, new_tokens: torch.Tensor, voice: str,
                        thinker_eos_token_ids=()) -> Qwen25TalkerInputs:
    """The Talker's prompt for a finished reply: batch = the prompt (processor layout), new_tokens (B, N) the reply."""
    speaker = check_can_speak(model, voice)
    out, mask, layout = reread_reply(model.thinker, batch, new_tokens)
    return build_talker_inputs(
        model.talker, model.thinker.cfg, model.thinker.embed_tokens, batch["input_ids"],
        new_tokens.to(mask.device), out.hidden_states[0], out.hidden_states[-1], speaker.bos_token,
        attention_mask=mask, thinker_eos_token_ids=thinker_eos_token_ids, **layout,
    )


@torch.no_grad()
def speak(model, batch: dict, new_tokens: torch.Tensor, voice: str = "Chelsie", thinker_eos_token_ids=(),
          **options) -> tuple[Qwen25Codes, torch.Tensor, torch.Tensor]:
    """Codes and waveforms for a finished reply. Returns (codes, audio (B, 1, S), audio_lengths (B,)).

    options: Talker sampling (max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed;
    defaults: the release's) and Token2Wav's (num_steps, guidance_scale, sway_coefficient). With a seed the DiT's
    starting noise comes from it too; without one, from torch's global generator (as the reference draws it).
    """
    unknown = sorted(set(options) - set(TALKER_OPTIONS) - set(TOKEN2WAV_OPTIONS))
    if unknown:
        raise InputError(f"unknown speech option(s) {unknown}; choose from {sorted(TALKER_OPTIONS + TOKEN2WAV_OPTIONS)}")
    speaker = check_can_speak(model, voice)
    if new_tokens.shape[1] < 2:  # the Talker starts from the reply's first two tokens: nothing to say
        B, device = new_tokens.shape[0], new_tokens.device
        none = torch.zeros(B, dtype=torch.long, device=device)
        return Qwen25Codes(none[:, None][:, :0], none), torch.zeros(B, 1, 0, device=device), none
    inputs = reply_talker_inputs(model, batch, new_tokens, voice, thinker_eos_token_ids)
    codes = generate_codes(model.talker, inputs, **{k: v for k, v in options.items() if k in TALKER_OPTIONS})
    sampling = {k: v for k, v in options.items() if k in TOKEN2WAV_OPTIONS}
    if options.get("seed") is not None:
        sampling["generator"] = torch.Generator(device=codes.codes.device).manual_seed(options["seed"])
    token2wav = model.token2wav
    lengths = codes.lengths * token2wav.samples_per_code
    samples = int(lengths.max()) if lengths.numel() else 0
    audio = torch.zeros(codes.codes.shape[0], 1, samples, device=codes.codes.device)
    for row, n in enumerate(codes.lengths.tolist()):  # one row at a time: each its own noise, as the reference
        if n:
            wave = token2wav(codes.codes[row:row + 1, :n], speaker, **sampling)  # (1, n * samples_per_code)
            audio[row, 0, :wave.shape[1]] = wave[0]
    return codes, audio, lengths


spoken_reply = speak  # the name omni.generation calls for either release: (codes, audio, audio_lengths)
