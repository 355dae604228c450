"""Qwen2.5-Omni speech: from the Thinker's finished reply to codec codes (the Talker) to a waveform (Token2Wav).

1. The Talker's input sequence is built from the Thinker's final hidden states and input embeddings over the
   prompt and the reply (`build_talker_inputs`), all in the Thinker's width:

       prompt       one position per prompt token: hidden state + input embedding (the embedding is zeroed at
                    audio/image/video placeholders, whose hidden state stays)
       + 2          the voice's text-BOS embedding (+ codec pad), then the first reply token's hidden + embedding
                    (+ codec start)
       trailing     the reply's remaining tokens (hidden + embedding), then text-end, then text-pad for ever.

2. The code loop (omni.speech.talker_steps; `generate_codes`), one code per step (50 per second):

       talker -> codec_head -> code (sampled; codec start is never chosen)
       next talker input = codec_embedding(code) + the next trailing vector
       ... until codec pad or codec end, or `max_new_tokens` codes.

3. Token2Wav turns each row's codes into 24 kHz audio with the voice's reference (`spoken_reply`), or streams
   them chunk by chunk as the loop makes them (`stream_speech`; token2wav/streaming.py).

Voices are speaker presets (`model.speakers`, read from `spk_dict.safetensors`; see token2wav/speakers.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ...checks import integer
from ...errors import InputError
from ...sampling import SamplingConfig, next_token
from ...positions import rope_index_from_config
from ...speech import SpeechCodes, TalkerInputs, check_speech_length, end_text_track, find_voice, reply_end
from ...speech import reread_reply, talker_steps
from .token2wav.streaming import StreamPlan, Token2WavStream, stream_plan

TALKER_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed")
TOKEN2WAV_OPTIONS = ("num_steps", "guidance_scale", "sway_coefficient")
NO_VOICES = ("put spk_dict.safetensors next to the weights (convert the release's spk_dict.pt once with "
             "docs/examples/convert_speakers.py)")


def voices(model) -> dict:
    """The voices of a model: name -> Speaker preset (attached by omni.load from spk_dict.safetensors)."""
    return dict(getattr(model, "speakers", None) or {})


def build_talker_inputs(
    talker,
    thinker_cfg,
    embed_tokens: nn.Module,
    input_ids: torch.Tensor,
    generated: torch.Tensor,
    embeds: torch.Tensor,
    hidden: torch.Tensor,
    speaker_bos: int,
    attention_mask: torch.Tensor | None = None,
    thinker_eos_token_ids=(),
    **media,
) -> TalkerInputs:
    """The Talker's prompt from a finished Thinker reply.

    input_ids (B, P) the Thinker prompt; generated (B, G) its reply (G >= 2); embeds / hidden (B, P + G - 1, E): the
    Thinker's input embeddings (media features at placeholders) and final normed hidden states over the prompt and
    the reply tokens it was fed (all but the last); embed_tokens: the Thinker's token embedding; speaker_bos: the
    voice's text-BOS token (`Speaker.bos_token`). thinker_eos_token_ids: where a row's reply ends (the text track
    says text-end in place of its end token, then pads). media: image_grid_thw, video_grid_thw,
    video_second_per_grid, audio_feature_lengths, use_audio_in_video: for the positions.
    """
    cfg = talker.cfg
    B, P = input_ids.shape
    G = generated.shape[1]
    if G < 2:
        raise InputError(f"the Talker needs a reply of at least 2 Thinker tokens, got {G}")
    if embeds.shape[:2] != (B, P + G - 1) or hidden.shape != embeds.shape:
        raise InputError(
            f"embeds and hidden must both be (batch, prompt + reply - 1, width) = ({B}, {P + G - 1}, ...), got "
            f"{tuple(embeds.shape)} and {tuple(hidden.shape)}"
        )
    device = input_ids.device
    media_ids = torch.tensor([cfg.audio_token_id, cfg.image_token_id, cfg.video_token_id], device=device)
    is_media = torch.isin(input_ids, media_ids)[..., None]  # (B, P, 1)
    prompt = hidden[:, :P] + embeds[:, :P].masked_fill(is_media, 0)
    reply = hidden[:, P:] + embeds[:, P:]  # (B, G - 1, E): reply tokens 0 .. G-2

    def thinker_embedding(token: int) -> torch.Tensor:  # (B, 1, E)
        return embed_tokens(torch.full((B, 1), token, dtype=torch.long, device=device)).to(prompt.dtype)

    def codec_embedding(code: int) -> torch.Tensor:  # (1, E)
        return talker.codec_embedding(torch.tensor([code], device=device)).to(prompt.dtype)

    bos = thinker_embedding(speaker_bos) + codec_embedding(cfg.tts_codec_pad_token_id)
    first = reply[:, :1] + codec_embedding(cfg.tts_codec_start_token_id)
    x = torch.cat([prompt, bos, first], dim=1)  # (B, P + 2, E)

    # the text track: reply tokens 1 .. G-2, then text-end; a row whose reply ended early (end token at step e)
    # says text-end in place of that token and pads after it
    text_end, text_pad = thinker_embedding(cfg.tts_text_end_token_id), thinker_embedding(cfg.tts_text_pad_token_id)
    trailing = torch.cat([reply[:, 1:], text_end], dim=1)  # (B, G - 1, E)
    if len(thinker_eos_token_ids):
        end = reply_end(generated, thinker_eos_token_ids).clamp(1, G - 1) - 1
        trailing = end_text_track(trailing, end, text_end, text_pad)

    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    mask = torch.cat([mask, mask.new_ones(B, 2)], dim=1)
    text_ids = torch.cat([input_ids, torch.full((B, 1), speaker_bos, device=device), generated[:, :1]], dim=1)
    position_ids, deltas = rope_index_from_config(thinker_cfg, text_ids, mask, **media)
    return TalkerInputs(x, mask, position_ids, deltas, trailing, text_pad)


@torch.no_grad()
def generate_codes(talker, inputs: TalkerInputs, **options) -> SpeechCodes:
    """Sample codes until codec pad or codec end (both stop a row) or `max_new_tokens` (options: `iter_codes`).
    Returns codes (B, N) (past a row's length: its stop code, then codec pad) and per-row lengths."""
    B, device = inputs.embeds.shape[0], inputs.embeds.device
    codes, lengths = [], torch.zeros(B, dtype=torch.long, device=device)
    for code, finished in iter_codes(talker, inputs, **options):
        codes.append(code)
        lengths += (~finished).long()
    out = torch.stack(codes, dim=1) if codes else torch.zeros(B, 0, dtype=torch.long, device=device)
    return SpeechCodes(out, lengths)


@torch.no_grad()
def iter_codes(
    talker,
    inputs: TalkerInputs,
    max_new_tokens: int = 4096,
    do_sample: bool = True,
    temperature: float = 0.9,
    top_k: int = 40,
    top_p: float = 0.8,
    repetition_penalty: float = 1.05,
    seed: int | None = None,
):
    """The code loop one step at a time (for streaming): yields (code (B,), finished (B,) bool), `finished`
    including the rows whose code this is a stop code (codec pad / end) for; past its stop a row says codec pad.
    Sampling defaults are the release's.

    Codec start is never sampled. The repetition penalty counts the prompt's codec ids (mask, pad, start) as seen,
    as the reference does (its prompt is those ids).
    """
    cfg = talker.cfg
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                              top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    sampling.validate()
    check_speech_length(talker.decoder, inputs, sampling.max_new_tokens, "max_new_tokens")
    B, device = inputs.embeds.shape[0], inputs.embeds.device
    seed = None if seed is None else integer("seed", seed, 0, 2**64 - 1)
    stops = torch.tensor([cfg.tts_codec_pad_token_id, cfg.tts_codec_end_token_id], device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    seen = [torch.tensor([[cfg.tts_codec_mask_token_id, cfg.tts_codec_pad_token_id, cfg.tts_codec_start_token_id]],
                         device=device).expand(B, -1)]

    def pick(logits, hidden, step, finished):
        logits[:, cfg.tts_codec_start_token_id] = float("-inf")
        code = next_token(logits, seen[0], sampling, step, generator).masked_fill(finished, cfg.tts_codec_pad_token_id)
        seen[0] = torch.cat([seen[0], code[:, None]], dim=1)
        return code, torch.isin(code, stops)

    yield from talker_steps(talker, inputs, max_new_tokens, pick, talker.codec_embedding)


@torch.no_grad()
def reply_talker_inputs(model, batch: dict, new_tokens: torch.Tensor, voice: str = "Chelsie",
                        thinker_eos_token_ids=()) -> TalkerInputs:
    """The Talker's prompt for a finished reply: batch = the prompt (processor layout), new_tokens (B, N) the reply."""
    speaker = find_voice(voices(model), voice, NO_VOICES)
    out, mask, layout = reread_reply(model.thinker, batch, new_tokens)
    return build_talker_inputs(
        model.talker, model.thinker.cfg, model.thinker.embed_tokens, batch["input_ids"],
        new_tokens.to(mask.device), out.hidden_states[0], out.hidden_states[-1], speaker.bos_token,
        attention_mask=mask, thinker_eos_token_ids=thinker_eos_token_ids, **layout,
    )


@torch.no_grad()
def speak(model, batch: dict, new_tokens: torch.Tensor, voice: str = "Chelsie", thinker_eos_token_ids=(),
          **options) -> SpeechCodes:
    """Codes for the Thinker's reply (options: the Talker's sampling, see `generate_codes`). A reply of fewer than
    two tokens gives no codes (the Talker starts from the reply's first two tokens: nothing to say)."""
    if new_tokens.shape[1] < 2:
        none = torch.zeros(new_tokens.shape[0], dtype=torch.long, device=new_tokens.device)
        return SpeechCodes(none[:, None][:, :0], none)
    inputs = reply_talker_inputs(model, batch, new_tokens, voice, thinker_eos_token_ids)
    return generate_codes(model.talker, inputs, **options)


@torch.no_grad()
def spoken_reply(model, batch: dict, new_tokens: torch.Tensor, voice: str = "Chelsie", thinker_eos_token_ids=(),
                 **options) -> tuple[SpeechCodes, torch.Tensor, torch.Tensor]:
    """Codes and waveforms for a finished reply. Returns (codes, audio (B, 1, S), audio_lengths (B,)).

    options: Talker sampling (max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed;
    defaults: the release's) and Token2Wav's (num_steps, guidance_scale, sway_coefficient). With a seed the DiT's
    starting noise comes from it too; without one, from torch's global generator (as the reference draws it).
    """
    unknown = sorted(set(options) - set(TALKER_OPTIONS) - set(TOKEN2WAV_OPTIONS))
    if unknown:
        raise InputError(f"unknown speech option(s) {unknown}; choose from {sorted(TALKER_OPTIONS + TOKEN2WAV_OPTIONS)}")
    speaker = find_voice(voices(model), voice, NO_VOICES)
    codes = speak(model, batch, new_tokens, voice, thinker_eos_token_ids,
                  **{k: v for k, v in options.items() if k in TALKER_OPTIONS})
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


STREAM_OPTIONS = ("past_blocks", "future_blocks", "vocoder_context")


def stream_plan_of(model, speech: dict, audio_chunk_frames: int | None) -> StreamPlan:
    """The checked chunk geometry of stream(speak=True) (InputError on unknown or out-of-range options).

    audio_chunk_frames: codes per chunk, a multiple of one DiT block's codes (block_size / repeats: 12 in the
    release); None: the release's streaming chunk, 3 blocks (36 codes, 0.72 s). speech: Talker and Token2Wav
    options as `spoken_reply` takes them, plus past_blocks, future_blocks, vocoder_context (see token2wav.streaming).
    """
    known = TALKER_OPTIONS + TOKEN2WAV_OPTIONS + STREAM_OPTIONS
    unknown = sorted(set(speech) - set(known))
    if unknown:
        raise InputError(f"unknown speech option(s) {unknown}; choose from {sorted(known)}")
    dit = model.token2wav.cfg.dit_config
    per_block = max(dit.block_size // dit.repeats, 1)  # codes per DiT block (stream_plan refuses a remainder)
    chunk = 3 * per_block if audio_chunk_frames is None else audio_chunk_frames
    if integer("audio_chunk_frames", chunk, 1, what="a positive number of codes") % per_block:
        raise InputError(
            f"audio_chunk_frames must be a multiple of {per_block} codes for Qwen2.5-Omni (streamed speech is cut at "
            f"DiT blocks of {dit.block_size} mel frames, {dit.repeats} per code); got {chunk}, e.g. {3 * per_block}"
        )
    return stream_plan(dit, chunk // per_block, speech.get("past_blocks"), speech.get("future_blocks"),
                       speech.get("vocoder_context", 20))


def check_stream_speech(model, speech: dict, audio_chunk_frames: int | None) -> None:
    """stream(speak=True)'s options, checked before the Thinker starts (the Release hook)."""
    stream_plan_of(model, speech, audio_chunk_frames)


def stream_speech(model, batch: dict, reply: list[int], voice: str = "Chelsie", speech: dict | None = None,
                  audio_chunk_frames: int | None = None, eos_token_ids=()):
    """Speak a finished reply (token ids, one conversation) as waveform pieces (1-D, 24 kHz): the Talker's codes
    go to the streaming Token2Wav (token2wav/streaming.py) as they come; a piece leaves each time a chunk of
    `audio_chunk_frames` codes and its look-ahead are in. With a seed the pieces start from the noise the whole
    decode (`spoken_reply`) starts from; docs/generation.md has their measured difference from it."""
    options = dict(speech or {})
    plan = stream_plan_of(model, options, audio_chunk_frames)
    speaker = find_voice(voices(model), voice, NO_VOICES)
    device = batch["input_ids"].device
    new_tokens = torch.tensor([reply], device=device)
    if new_tokens.shape[1] < 2:  # as `speak`: nothing to say
        return
    inputs = reply_talker_inputs(model, batch, new_tokens, voice, eos_token_ids or ())
    sampling = {k: v for k, v in options.items() if k in TOKEN2WAV_OPTIONS}
    seed = options.get("seed")
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    token2wav = model.token2wav
    stream = Token2WavStream(token2wav, *token2wav.voice(1, device, speaker), plan, generator=generator, **sampling)
    talker_options = {k: v for k, v in options.items() if k in TALKER_OPTIONS}
    for code, finished in iter_codes(model.talker, inputs, **talker_options):
        if bool(finished[0]):  # a stop code: not spoken
            break
        wave = stream.push(code[:, None])  # (1, n)
        if wave.shape[-1]:
            yield wave[0]
    wave = stream.finish()
    if wave.shape[-1]:
        yield wave[0]
