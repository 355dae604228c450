"""Qwen3-Omni speech: from the Thinker's finished reply to codec frames (Talker + code predictor) to a waveform.

1. The Talker's input sequence is built from the Thinker's sequence (prompt + reply), its input embeddings and
   the hidden states of layer `accept_hidden_layer` (`build_talker_inputs`, in three named parts):

       user turns   every token of every user turn (system and earlier assistant turns are left out):
                    hidden_projection(hidden state) at audio/image/video placeholders, text_projection(embedding)
                    elsewhere; rows with fewer user tokens are left-padded.
       assistant    9 positions, each the sum of a text track and a codec track:
                      text   <im_start> assistant \\n  pad pad pad pad  tts_bos  first reply token
                      codec     0         0      0   nothink think_bos think_eos speaker codec_pad codec_bos
                    (text entries are text_projection of Thinker embeddings; tts_* are Thinker tokens.)
       trailing     the rest of the reply, one vector per frame, then tts_eos, then tts_pad for ever.

2. The frame loop (omni.speech.talker_steps; `generate_codes`, or `iter_frames` to stream), one frame per step:

       talker -> codec_head -> code 0 (sampled; ids of the top 1024 except codec eos are suppressed)
       code predictor: [talker hidden, embed(code 0)] -> code 1 -> ... -> code G-1
       next talker input = sum of the G code embeddings + the next trailing vector
       ... until code 0 is codec eos, or `max_frames` frames.

3. Code2Wav decodes the codes (B, num_code_groups, frames) into 24 kHz audio (`spoken_reply`), or streams them
   (`stream_speech`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...checks import boolean, integer, number
from ...errors import InputError
from ...sampling import SamplingConfig, next_token
from ...positions import rope_index_from_config, text_position_ids
from ...speech import SpeechCodes, TalkerInputs, check_speech_length, end_text_track, find_voice, reply_end
from ...speech import reread_reply, talker_steps

_N_SUPPRESSED = 1024  # the top ids of the codec vocabulary are control tokens, never spoken


def speaker_id(cfg, voice: str) -> int:
    """The codec id of a voice's speaker token (talker_config.speaker_id), by name (case-insensitive)."""
    return int(find_voice(cfg.speaker_id, voice))


def voices(model) -> dict:
    """The voices of a model: name -> speaker codec id (config presets) or learned speaker vector (D,)
    (`Talker.learned_voices`, see omni.training.voices)."""
    learned = getattr(getattr(model, "talker", None), "learned_voices", {})
    return {**(model.config.talker_config.speaker_id or {}), **learned}


def speaker_embedding(talker, tk, voice) -> torch.Tensor:
    """The codec-track vector (D,) of a voice: a preset's row of the codec embedding, a learned vector found by
    name, or a vector passed directly (what omni.training.learn_voice trains)."""
    if torch.is_tensor(voice):
        return voice
    found = find_voice({**(tk.speaker_id or {}), **talker.learned_voices}, voice)
    if torch.is_tensor(found):
        return found
    return talker.codec_embedding(torch.tensor([int(found)], device=talker.codec_embedding.weight.device))[0]


def build_talker_inputs(
    talker,
    config,
    embed_tokens,
    input_ids: torch.Tensor,
    sequences: torch.Tensor,
    thinker_embeds: torch.Tensor,
    thinker_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    voice: str = "ethan",
    thinker_eos_token_ids=None,
    image_grid_thw=None,
    video_grid_thw=None,
    video_second_per_grid=None,
    audio_feature_lengths=None,
    use_audio_in_video: bool = False,
) -> TalkerInputs:
    """Assemble the Talker's prompt from the Thinker's work.

    input_ids (B, P): the prompt, ending with `<im_start>assistant\\n`; attention_mask (B, P) its mask.
    sequences (B, L): prompt + generated reply (rows that finished early padded after their eos).
    thinker_embeds / thinker_hidden (B, L', Dt): the Thinker's input embeddings (media features scattered in)
    and layer `accept_hidden_layer` outputs for the first L' tokens of `sequences` (L' = L - 1 when, as in the
    reference, the last generated token was never fed back). embed_tokens: the Thinker's token embedding.
    thinker_eos_token_ids: the reply's end token(s) (default <im_end>); the tts_eos marker goes after it.
    The media sizes are those of the prompt, for the Talker's TMRoPE positions.
    """
    tk = config.talker_config
    B, P = input_ids.shape
    if sequences.dim() != 2 or sequences.shape[0] != B or sequences.shape[1] <= P:
        raise InputError(f"sequences must be (B, > {P}) = prompt + reply, got {tuple(sequences.shape)}")
    width = tk.thinker_hidden_size
    if thinker_embeds.shape[-1] != width or thinker_hidden.shape[-1] != width:
        raise InputError(
            f"thinker states must be (B, L, {width}) (talker_config.thinker_hidden_size), got "
            f"{tuple(thinker_embeds.shape)} and {tuple(thinker_hidden.shape)}; pass the Thinker's input embeddings "
            f"and layer {tk.accept_hidden_layer} outputs"
        )
    L = min(thinker_embeds.shape[1], thinker_hidden.shape[1], sequences.shape[1])
    if L < P:
        raise InputError(f"thinker states cover {L} tokens, fewer than the {P}-token prompt")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
    speaker = speaker_embedding(talker, tk, voice)
    user_embeds, user_ids, user_mask = _user_part(talker, config, input_ids, mask, thinker_embeds, thinker_hidden)
    a = _assistant_start(config, input_ids, L)
    special = torch.tensor([[config.tts_bos_token_id, config.tts_eos_token_id, config.tts_pad_token_id]],
                           device=thinker_embeds.device)
    tts_bos, tts_eos, tts_pad = talker.text_projection(embed_tokens(special)).chunk(3, dim=1)  # 3 x (1, 1, D)
    reply = talker.text_projection(thinker_embeds[:, a:L])  # (B, L - a, D): <im_start> assistant \\n reply...
    assistant = _assistant_part(talker, tk, reply, speaker, tts_bos, tts_pad)
    eos_ids = thinker_eos_token_ids if thinker_eos_token_ids is not None else (config.im_end_token_id,)
    trailing = _text_track(reply, sequences[:, P:].to(reply.device), eos_ids, tts_eos, tts_pad)

    # -- the whole prompt and its positions -----------------------------------------------------------------
    embeds = torch.cat([user_embeds, assistant], 1)
    device = embeds.device
    ids = torch.cat([user_ids, torch.full((B, assistant.shape[1]), config.tts_pad_token_id, device=device)], 1)
    talker_mask = torch.cat([user_mask, user_mask.new_ones(B, assistant.shape[1])], 1)
    grids = (image_grid_thw, video_grid_thw)
    if audio_feature_lengths is not None or any(g is not None and g.numel() > 0 for g in grids):
        position_ids, deltas = rope_index_from_config(
            tk, ids, talker_mask, image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
            video_second_per_grid=video_second_per_grid, audio_feature_lengths=audio_feature_lengths,
            n_window=config.thinker_config.audio_config.n_window, use_audio_in_video=bool(use_audio_in_video),
        )
    else:
        position_ids, deltas = text_position_ids(talker_mask)
    return TalkerInputs(embeds, talker_mask, position_ids, deltas, trailing, tts_pad.expand(B, -1, -1))


def _user_part(talker, config, input_ids, mask, thinker_embeds, thinker_hidden):
    """Every position whose latest <im_start> opens a user turn, right-aligned: (embeds (B, U, D), ids (B, U),
    mask (B, U)). Media placeholders are read through hidden_projection, everything else through text_projection."""
    B, P = input_ids.shape
    device = thinker_embeds.device
    pos = torch.arange(P, device=input_ids.device).expand(B, -1)
    starts = torch.where(input_ids == config.im_start_token_id, pos, torch.full_like(pos, -1))
    turn_start = starts.cummax(-1).values.clamp_min(0)
    role = input_ids.gather(1, (turn_start + 1).clamp_max(P - 1))
    is_user = (role == config.user_token_id) & mask.bool()
    n_user = is_user.sum(-1)  # (B,)
    U = int(n_user.max())
    th = config.thinker_config  # placeholders as the Thinker wrote them
    media = (input_ids == th.audio_token_id) | (input_ids == th.image_token_id) | (input_ids == th.video_token_id)
    media = media.to(device)  # (B, P)
    D = config.talker_config.text_config.hidden_size
    full = thinker_embeds.new_empty(B, P, D)
    if media.any():
        full[media] = talker.hidden_projection(thinker_hidden[:, :P][media])
    full[~media] = talker.text_projection(thinker_embeds[:, :P][~media])
    # user positions sorted last (offset by P) keep their order and end up right-aligned in the last U columns
    order = torch.where(is_user, pos + P, pos).argsort(-1)[:, P - U:].to(device)  # (B, U)
    user_embeds = full.gather(1, order[..., None].expand(-1, -1, D))
    user_ids = input_ids.to(device).gather(1, order)
    user_mask = (torch.arange(U, device=device)[None] >= (U - n_user.to(device))[:, None]).long()
    return user_embeds, user_ids, user_mask


def _assistant_start(config, input_ids, L: int) -> int:
    """Where the last `<im_start> assistant` of the prompt starts (the same column in every row)."""
    header = (input_ids[:, :-1] == config.im_start_token_id) & (input_ids[:, 1:] == config.assistant_token_id)
    if not bool(header.any(-1).all()):
        raise InputError("the prompt has no '<|im_start|>assistant' turn to speak; end it with the generation prompt")
    last = [int(torch.nonzero(row).flatten()[-1]) for row in header]
    if len(set(last)) != 1:
        raise InputError(f"rows start the assistant turn at different positions {last}; left-pad the prompts")
    if L - last[0] < 4:
        raise InputError("the Thinker's reply is empty: there is no text to speak")
    return last[0]


def _assistant_part(talker, tk, reply, speaker: torch.Tensor, tts_bos, tts_pad) -> torch.Tensor:
    """The 9 assistant positions (module docstring): text track + codec track, (B, 9, D)."""
    B, _, D = reply.shape
    text_track = torch.cat([reply[:, :3], tts_pad.expand(B, 4, -1), tts_bos.expand(B, -1, -1), reply[:, 3:4]], 1)
    think = talker.codec_embedding(torch.tensor([tk.codec_nothink_id, tk.codec_think_bos_id, tk.codec_think_eos_id],
                                                device=reply.device))
    start = talker.codec_embedding(torch.tensor([tk.codec_pad_id, tk.codec_bos_id], device=reply.device))
    codec = torch.cat([think, speaker.to(think)[None], start])  # (6, D)
    codec_track = torch.cat([reply.new_zeros(B, 3, D), codec.expand(B, -1, -1)], 1)
    return text_track + codec_track


def _text_track(reply, reply_ids, eos_ids, tts_eos, tts_pad) -> torch.Tensor:
    """The trailing text (B, N, D): reply tokens 1.., then tts_eos. A row whose reply ended early (its end token
    at step e) says tts_eos at e, right after that end token, and pads after it."""
    B = reply.shape[0]
    trailing = torch.cat([reply[:, 4:], tts_eos.expand(B, -1, -1)], 1)
    return end_text_track(trailing, reply_end(reply_ids, eos_ids), tts_eos, tts_pad)


@dataclass
class SpeechSampling:
    """How codes are chosen. Defaults are the reference's: code 0 sampled at temperature 0.9, top-k 50 with a
    1.05 repetition penalty; codes 1.. sampled with top-k 50, top-p 0.8. `do_sample=False` makes both greedy."""

    max_frames: int = 4095
    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    code_do_sample: bool | None = None  # None: same as do_sample
    code_temperature: float = 1.0
    code_top_k: int = 50
    code_top_p: float = 0.8
    seed: int | None = None


def _sampling(options: dict) -> SpeechSampling:
    names = set(SpeechSampling.__dataclass_fields__)
    unknown = sorted(set(options) - names)
    if unknown:
        raise InputError(f"unknown speech option(s) {unknown}; choose from {sorted(names)}")
    s = SpeechSampling(**options)
    s.max_frames = integer("max_frames", s.max_frames, 1, what="a positive integer")
    s.repetition_penalty = number("repetition_penalty", s.repetition_penalty, 1e-3, 1e3,
                                  what="> 0 (in [0.001, 1000]; 1.0: none)")
    if s.code_do_sample is not None:
        s.code_do_sample = boolean("code_do_sample", s.code_do_sample)
    return s


@torch.no_grad()
def generate_codes(talker, inputs: TalkerInputs, **options) -> SpeechCodes:
    """Run the frame loop (options: see `SpeechSampling`). Returns codes (B, G, frames) and per-row lengths."""
    B, G = inputs.embeds.shape[0], talker.cfg.num_code_groups
    device = inputs.embeds.device
    frames, lengths = [], torch.zeros(B, dtype=torch.long, device=device)
    for frame, active in iter_frames(talker, inputs, **options):
        frames.append(frame.masked_fill(~active[:, None], 0))  # past a row's eos its codes are meaningless
        lengths += active.long()
    if not frames:
        return SpeechCodes(torch.zeros(B, G, 0, dtype=torch.long, device=device), lengths)
    return SpeechCodes(torch.stack(frames, dim=2), lengths)  # (B, G, F)


@torch.no_grad()
def iter_frames(talker, inputs: TalkerInputs, **options):
    """The frame loop, one frame at a time (for streaming): yields (codes (B, G), active (B,) bool), where
    `active` is False for rows that already said codec eos (their codes are filler). Options: `SpeechSampling`."""
    s = _sampling(options)
    tk = talker.cfg
    V, eos = tk.text_config.vocab_size, tk.codec_eos_token_id
    first = SamplingConfig(max_new_tokens=s.max_frames, do_sample=s.do_sample, temperature=s.temperature,
                           top_k=s.top_k, top_p=s.top_p)
    rest = SamplingConfig(do_sample=s.do_sample if s.code_do_sample is None else s.code_do_sample,
                          temperature=s.code_temperature, top_k=s.code_top_k, top_p=s.code_top_p)
    first.validate()
    rest.validate()
    check_speech_length(talker.decoder, inputs, s.max_frames, "max_frames")
    B, device = inputs.embeds.shape[0], inputs.embeds.device
    suppressed = torch.tensor([i for i in range(max(V - _N_SUPPRESSED, 0), V) if i != eos], device=device)
    seed = None if s.seed is None else integer("seed", s.seed, 0, 2**64 - 1)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    cp_cache = talker.code_predictor.new_cache(B)
    seen = [torch.empty(B, 0, dtype=torch.long, device=device)]  # code 0s so far, for the repetition penalty
    # The reference exempts a row's first n code 0s from the penalty, n = its left padding in the Talker prompt
    # (it skips "prompt padding" in a history that holds no prompt); kept so that batched codes match it.
    exempt = (inputs.attention_mask != 0).int().argmax(-1)  # (B,)

    def pick(logits, hidden, f, finished):
        logits = _penalise(logits.float(), seen[0], exempt, s.repetition_penalty)
        logits = logits.index_fill(1, suppressed, float("-inf"))
        code0 = next_token(logits, seen[0], first, f, generator)
        code0 = torch.where(finished, torch.full_like(code0, eos), code0)  # finished rows keep saying eos
        seen[0] = torch.cat([seen[0], code0[:, None]], 1)
        stop = code0 == eos
        if bool((finished | stop).all()):  # nothing left to say: no frame
            return None, stop
        return _predict_rest(talker, hidden, code0, rest, cp_cache, generator), stop  # (B, G)

    for frame, finished in talker_steps(talker, inputs, s.max_frames, pick, talker.frame_embedding):
        if frame is None:
            return
        yield frame, ~finished


def _penalise(logits, seen, exempt, penalty: float) -> torch.Tensor:
    """Repetition penalty over the code 0s seen so far (B, n), skipping each row's first `exempt` (B,) of them:
    positive logits are divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0 or seen.shape[1] == 0:
        return logits
    counted = torch.arange(seen.shape[1], device=seen.device)[None] >= exempt[:, None]
    hit = torch.zeros(logits.shape[0], logits.shape[1] + 1, dtype=torch.bool, device=logits.device)
    hit.scatter_(1, seen.masked_fill(~counted, logits.shape[1]), True)  # exempt ones land in a spare column
    hit = hit[:, :-1]
    return torch.where(hit, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def _predict_rest(talker, hidden, code0, cfg: SamplingConfig, cache, generator) -> torch.Tensor:
    """Codes 1..G-1 of a frame from the Talker's hidden state (B, 1, D) and code 0 (B,) -> frame (B, G)."""
    cp = talker.code_predictor
    cache.reset()  # positions restart at 0 for every frame
    h = torch.cat([hidden, talker.codec_embedding(code0)[:, None]], 1)  # (B, 2, D)
    codes = [code0]
    none_seen = code0.new_empty(code0.shape[0], 0)
    for k in range(1, talker.cfg.num_code_groups):
        y = cp(h, cache)[:, -1]  # (B, D)
        code = next_token(cp.logits(k, y), none_seen, cfg, k - 1, generator)
        codes.append(code)
        h = cp.embed(k, code)[:, None]
    return torch.stack(codes, 1)


@torch.no_grad()
def reply_talker_inputs(model, batch: dict, new_tokens: torch.Tensor, voice: str = "ethan",
                        thinker_eos_token_ids=None) -> TalkerInputs:
    """The Talker's prompt for a finished Thinker reply (see `speak`); feed it to `generate_codes`/`iter_frames`."""
    if model.talker is None or model.thinker is None:
        raise InputError("speech needs both the thinker and the talker; load with components=('thinker', 'talker')")
    out, mask, layout = reread_reply(model.thinker, batch, new_tokens)
    input_ids = batch["input_ids"]
    sequences = torch.cat([input_ids, new_tokens.to(input_ids.device)], 1)
    layer = model.config.talker_config.accept_hidden_layer
    return build_talker_inputs(
        model.talker, model.config, model.thinker.embed_tokens, input_ids, sequences, out.hidden_states[0],
        out.hidden_states[layer], mask, voice, thinker_eos_token_ids, **layout,
    )


@torch.no_grad()
def speak(model, batch: dict, new_tokens: torch.Tensor, voice: str = "ethan", thinker_eos_token_ids=None,
          **options) -> SpeechCodes:
    """Codes for the Thinker's reply: batch = the prompt batch (processor layout) the reply was generated from,
    new_tokens (B, N) the reply (e.g. from omni.generation.generate_tokens). Options: see `SpeechSampling`."""
    inputs = reply_talker_inputs(model, batch, new_tokens, voice, thinker_eos_token_ids)
    return generate_codes(model.talker, inputs, **options)


@torch.no_grad()
def spoken_reply(model, batch: dict, new_tokens: torch.Tensor, voice: str = "ethan", thinker_eos_token_ids=None,
                 **options) -> tuple[SpeechCodes, torch.Tensor, torch.Tensor]:
    """`speak`, then Code2Wav: (codes, waveforms (B, 1, S) silent past each row's speech, their lengths (B,))."""
    codes = speak(model, batch, new_tokens, voice, thinker_eos_token_ids, **options)
    c2w, lengths = model.code2wav, codes.lengths
    samples = torch.tensor([c2w.chunked_length(int(n)) for n in lengths], device=lengths.device)
    if codes.codes.shape[-1] == 0:
        empty = torch.zeros(len(lengths), 1, 0, dtype=c2w.code_embedding.weight.dtype, device=lengths.device)
        return codes, empty, samples
    wav = c2w.chunked_decode(codes.codes)  # the reference's long-form decode (chunks with left context)
    keep = torch.arange(wav.shape[-1], device=wav.device)[None, None] < samples[:, None, None]
    return codes, wav * keep, samples


def stream_speech(model, batch: dict, reply: list[int], voice: str = "ethan", speech: dict | None = None,
                  audio_chunk_frames: int | None = 8, eos_token_ids=None):
    """Speak a finished reply (token ids, one conversation) as waveform chunks (1-D, 24 kHz): the Talker's frames
    go to the exact streaming Code2Wav decoder `audio_chunk_frames` at a time. `speech`: SpeechSampling options."""
    device = batch["input_ids"].device
    inputs = reply_talker_inputs(model, batch, torch.tensor([reply], device=device), voice, eos_token_ids)
    frames = (frame[:, :, None] for frame, _ in iter_frames(model.talker, inputs, **(speech or {})))
    chunk = 8 if audio_chunk_frames is None else audio_chunk_frames  # None: stream()'s "the release's default"
    for wav in model.code2wav.stream_decode(frames, chunk_size=chunk):  # (1, 1, n) each
        yield wav[0, 0]
