"""Autoregressive text generation for the Thinker: prefill once, then one token per step from the KV cache.

    prefill   thinker(prompt batch, cache)            -> logits of the last prompt token, rope deltas
    step      thinker(new token, position, cache)     -> logits of the new token
              position of a new token = (real tokens so far) + rope delta   (same on all three M-RoPE rows)

Rows are decoded together; a row that has finished (eos, im_end or a stop string) keeps receiving the pad token,
and the loop ends when every row has finished or `max_new_tokens` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .checks import boolean, integer
from .errors import InputError
from .nn.kv_cache import advance, static_decode_step
from .release import release_of
from .sampling import SamplingConfig, next_token
from .speech import check_can_speak
from .thinker import MEDIA_KEYS

# ---------------------------------------------------------------------------------------------------------------
# The decode loop


@torch.no_grad()
def decode_steps(
    thinker,
    batch: dict,
    cfg: SamplingConfig,
    text_of: Callable[[list[int]], str] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,), step by step (pad for rows that already finished)."""
    cfg.validate()
    input_ids = batch.get("input_ids")
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise InputError("generation needs `input_ids` of shape (batch, prompt_length) with a non-empty prompt")
    if cfg.stop_strings and text_of is None:
        raise InputError("stop strings need a tokenizer to decode with (load a checkpoint that ships one)")
    B, T = input_ids.shape
    device = input_ids.device
    mask = batch.get("attention_mask")
    mask = torch.ones_like(input_ids) if mask is None else mask.to(device)
    limit = thinker.cfg.text_config.max_position_embeddings
    if T + cfg.max_new_tokens > limit:
        raise InputError(
            f"prompt ({T} tokens) + max_new_tokens ({cfg.max_new_tokens}) exceeds the model's context of {limit}"
        )
    if cfg.max_new_tokens == 0:
        return
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    cache = thinker.decoder.new_cache(B, T + cfg.max_new_tokens)
    media = {k: batch[k] for k in MEDIA_KEYS if batch.get(k) is not None}
    out = thinker(input_ids=input_ids, attention_mask=mask, cache=cache, logits_to_keep=1, **media)
    delta = out.rope_deltas if out.rope_deltas is not None else torch.zeros(B, 1, device=device)
    seen = input_ids
    eos = torch.tensor(list(cfg.eos_token_ids) or [-1], device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(B)]
    logits = out.logits[:, -1]
    step_fn = _compiled_step(thinker, cfg.compile) if cfg.compile else None
    for step in range(cfg.max_new_tokens):
        tok = next_token(logits, seen, cfg, step, generator)
        tok = torch.where(finished, torch.full_like(tok, cfg.pad_token_id), tok)
        yield tok
        finished = finished | torch.isin(tok, eos)
        if cfg.stop_strings:
            for b in range(B):
                if not finished[b]:
                    generated[b].append(int(tok[b]))
                    text = text_of(generated[b])
                    if any(s in text for s in cfg.stop_strings):
                        finished[b] = True
        if bool(finished.all()) or step == cfg.max_new_tokens - 1:
            return
        # finished rows only need *some* valid id to keep the batch going (the pad id may be -1 or out of vocab)
        fed = torch.where(finished, torch.zeros_like(tok), tok)
        seen = torch.cat([seen, fed[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = (mask.sum(-1, keepdim=True) - 1 + delta).to(torch.float)[None].expand(3, -1, -1)  # (3, B, 1)
        if step_fn is None:
            logits = thinker(input_ids=fed[:, None], attention_mask=mask, position_ids=pos, cache=cache).logits[:, -1]
        else:
            logits = _static_step(thinker, step_fn, fed, pos, mask, cache)


def _compiled_step(thinker, backend):
    """torch.compile of one decode step through the lm_head, built once per Thinker and backend (recompiles only on
    new shapes). The lm_head is inside the graph so that it, too, runs as a fused matrix-vector reduction
    (omni.nn.linear)."""
    backend = "inductor" if backend is True else backend
    compiled = thinker.__dict__.setdefault("_compiled_decode_steps", {})
    if backend not in compiled:
        compiled[backend] = torch.compile(_decode_logits, fullgraph=True, backend=backend)
    return compiled[backend]


def _decode_logits(thinker, h, position_ids, write_pos, key_mask, cache) -> torch.Tensor:
    return thinker.lm_head(static_decode_step(thinker.decoder, h, position_ids, write_pos, key_mask, cache))


def _static_step(thinker, step_fn, fed, pos, mask, cache) -> torch.Tensor:
    """One token per row through the compiled step: the cache slots are the mask's columns, so the new token
    goes to slot `mask.shape[1] - 1` and attends to every real slot up to it."""
    slot = mask.shape[1] - 1
    capacity = cache.layers[0].k.shape[2]
    key_mask = torch.zeros(mask.shape[0], capacity, dtype=torch.bool, device=mask.device)
    key_mask[:, : slot + 1] = mask.bool()
    h = thinker.embed_tokens(fed[:, None])
    logits = step_fn(thinker, h, pos, torch.tensor([slot], device=mask.device), key_mask[:, None, None], cache)
    advance(cache, 1)
    return logits[:, -1]


def generate_tokens(thinker, batch: dict, cfg: SamplingConfig, text_of=None, progress: bool = False) -> torch.Tensor:
    """All new tokens, (B, N): N <= max_new_tokens, rows padded with `pad_token_id` after they finish."""
    steps = decode_steps(thinker, batch, cfg, text_of)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, total=cfg.max_new_tokens, desc="generating", leave=False)
    tokens = list(steps)
    B = batch["input_ids"].shape[0]
    if not tokens:
        return torch.empty(B, 0, dtype=torch.long, device=batch["input_ids"].device)
    return torch.stack(tokens, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# The user-facing entry points behind OmniModel.generate / OmniModel.stream


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, N) new token ids, padded after each row's end
    text: list[str]  # decoded replies, one per conversation
    audio: torch.Tensor | None = None  # (B, 1, samples) at 24 kHz when speech was asked for; zeros past a row's end
    audio_lengths: torch.Tensor | None = None  # (B,) samples of speech in each row
    codes: torch.Tensor | None = None  # (B, num_code_groups, frames) the codec frames the audio was decoded from


def _is_conversation(inputs) -> bool:
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and isinstance(inputs[0], (dict, list, tuple))


def _sampling_config(model, tokenizer, options: dict) -> SamplingConfig:
    cfg = model.config
    eos = [cfg.im_end_token_id]
    if tokenizer is not None and getattr(tokenizer, "eos_token_id", None) is not None:
        eos.append(tokenizer.eos_token_id)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    known = {f for f in SamplingConfig.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown generation option(s) {unknown}; known: {sorted(known)}")
    options = dict(options)
    options.setdefault("eos_token_ids", tuple(dict.fromkeys(eos)))
    options.setdefault("pad_token_id", pad if pad is not None else cfg.im_end_token_id)
    options.setdefault("stop_strings", ())
    return SamplingConfig(**options).validate()


def _prepare(model, inputs, use_audio_in_video=False):
    """(batch dict on the model's device, tokenizer or None, was it a conversation?)"""
    if model.thinker is None:
        raise InputError("this model was loaded without the thinker; load it with components including 'thinker'")
    device = next(model.thinker.parameters()).device
    if isinstance(inputs, dict):
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        batch.update(_ids_and_mask(batch.get("input_ids"), batch.get("attention_mask"), device))
        if use_audio_in_video:  # the keyword means the same for a batch as for a conversation
            batch["use_audio_in_video"] = True
        tok = model.processor.tokenizer if model.processor is not None else None
        return batch, tok, False
    if not _is_conversation(inputs):
        raise InputError("generate() takes a conversation (list of {'role', 'content'} messages) or a batch dict")
    if model.processor is None:
        raise InputError(
            "this model has no processor (the checkpoint ships no tokenizer files); pass a batch dict with "
            "input_ids instead, or attach one: model.processor = omni.Processor.from_pretrained(dir)"
        )
    conversations = [inputs] if isinstance(inputs[0], dict) else list(inputs)
    batch = model.processor(conversations, use_audio_in_video=use_audio_in_video, padding_side="left")
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch["use_audio_in_video"] = use_audio_in_video  # the positions depend on the prompt layout it chose
    return batch, model.processor.tokenizer, True


def _ids_and_mask(input_ids, attention_mask, device) -> dict:
    """input_ids and attention_mask of a batch dict as generation needs them: long tensors (lists, numpy arrays and
    small integer dtypes converted), a 0/1 mask with at least one token per row and no gap, and left padding
    (right-padded rows are shifted: decoding appends at the right, so a row's last real token must be there)."""
    def as_tensor(name, value):
        if value is None or torch.is_tensor(value):
            return value
        try:
            return torch.as_tensor(value, device=device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"{name} must be a tensor, a numpy array or a nested list of integers ({e})") from None

    input_ids, mask = as_tensor("input_ids", input_ids), as_tensor("attention_mask", attention_mask)
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[0] == 0:
        shape = None if input_ids is None else tuple(input_ids.shape)
        raise InputError(f"generation needs `input_ids` of shape (batch >= 1, prompt_length), got {shape}")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise InputError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    input_ids = input_ids.long()
    if mask is None:
        return {"input_ids": input_ids}
    if tuple(mask.shape) != tuple(input_ids.shape):
        raise InputError(f"attention_mask shape {tuple(mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
    if mask.dtype.is_complex or not bool(((mask == 0) | (mask == 1)).all()):
        raise InputError("attention_mask must hold only 0 (padding) and 1 (token)")
    mask = mask.long()
    real = mask.sum(-1)
    if bool((real == 0).any()):
        raise InputError(f"row(s) {(real == 0).nonzero().flatten().tolist()} of the batch have no tokens "
                         "(attention_mask all 0); drop them")
    first = mask.argmax(-1)  # each row's first real token
    if bool((mask.cumsum(-1).gather(1, (first + real - 1)[:, None]).squeeze(1) != real).any()):
        raise InputError("attention_mask has padding between a row's tokens; pad only at the start or the end")
    shift = input_ids.shape[1] - (first + real)  # right padding of each row
    if bool((shift > 0).any()):  # right-padded rows: rotate the padding to the left
        cols = (torch.arange(input_ids.shape[1], device=input_ids.device)[None] - shift[:, None]) % input_ids.shape[1]
        input_ids, mask = input_ids.gather(1, cols), mask.gather(1, cols)
    return {"input_ids": input_ids, "attention_mask": mask}


def generate(model, inputs, quiet: bool = True, use_audio_in_video: bool = False, speak: bool = False,
             voice: str = "ethan", speech: dict | None = None, **options):
    """See OmniModel.generate. With `speak=True` the reply is also spoken by the release's Talker and vocoder
    (`Release.spoken_reply`; `speech`: its options, e.g. {"do_sample": False, "max_frames": 500} for Qwen3-Omni,
    {"num_steps": 10} for Qwen2.5-Omni)."""
    quiet, speak, use_audio_in_video = _flags(quiet=quiet, speak=speak, use_audio_in_video=use_audio_in_video)
    speech = _speech_dict(speech)
    if speak:
        check_can_speak(model, voice)
    batch, tok, conversation = _prepare(model, inputs, use_audio_in_video)
    cfg = _sampling_config(model, tok, options)
    text_of = (lambda ids: tok.decode(ids, skip_special_tokens=True)) if tok is not None else None
    tokens = generate_tokens(model.thinker, batch, cfg, text_of, progress=not quiet)
    if not conversation and not speak:
        return tokens
    texts = [tok.decode(_until_eos(row, cfg), skip_special_tokens=True) for row in tokens.tolist()] if tok else []
    result = Generation(tokens=tokens, text=texts)
    if speak and tokens.shape[1] > 0:
        codes, result.audio, result.audio_lengths = release_of(model).spoken_reply(
            model, batch, _feedable(tokens, cfg), voice, cfg.eos_token_ids, **_speech_options(speech, cfg))
        result.codes = codes.codes
    return result


def _flags(**flags) -> tuple[bool, ...]:
    return tuple(boolean(name, value) for name, value in flags.items())


def _speech_dict(speech) -> dict | None:
    if speech is not None and not isinstance(speech, dict):
        raise InputError(f"speech must be a dict of speech options (e.g. {{'max_frames': 500}}), got {speech!r}")
    return speech


def _until_eos(row: list[int], cfg: SamplingConfig) -> list[int]:
    ids = []
    for t in row:
        if t in cfg.eos_token_ids:
            break
        ids.append(t)
    return ids


def _feedable(tokens: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The reply with its padding replaced by an end token: the Talker re-reads it through the Thinker."""
    end = cfg.eos_token_ids[0] if cfg.eos_token_ids else 0
    return tokens.masked_fill(tokens == cfg.pad_token_id, end) if cfg.pad_token_id < 0 else tokens


def _speech_options(speech: dict | None, cfg: SamplingConfig) -> dict:
    options = dict(speech or {})
    if cfg.seed is not None:  # one seed makes the whole reply, text and voice, reproducible
        options.setdefault("seed", cfg.seed)
    return options


def stream(model, inputs, use_audio_in_video: bool = False, speak: bool = False, voice: str = "ethan",
           speech: dict | None = None, audio_chunk_frames: int | None = None,
           **options) -> Iterator[str | torch.Tensor]:
    """See OmniModel.stream: yields text pieces (str) as the Thinker writes them, then, with `speak=True`,
    waveform chunks (1-D float tensors at 24 kHz) as the Talker produces `audio_chunk_frames` codec frames
    (None: the release's default, 8 Qwen3-Omni frames / 36 Qwen2.5-Omni codes)."""
    speak, use_audio_in_video = _flags(speak=speak, use_audio_in_video=use_audio_in_video)
    speech = _speech_dict(speech)
    if audio_chunk_frames is not None:
        audio_chunk_frames = integer("audio_chunk_frames", audio_chunk_frames, 1, what="a positive number of frames")
    if speak:
        release = release_of(model)
        if release.stream_speech is None:
            raise InputError(f"streamed speech is not implemented for {release.name}; use generate(..., speak=True), "
                             "or stream the text with speak=False")
        check_can_speak(model, voice)
        if release.check_stream_speech is not None:
            release.check_stream_speech(model, speech or {}, audio_chunk_frames)
    batch, tok, _ = _prepare(model, inputs, use_audio_in_video)
    if batch["input_ids"].shape[0] != 1:
        raise InputError("stream() decodes one conversation at a time; use generate() for batches")
    if tok is None:
        raise InputError("stream() needs a tokenizer to decode with (the model has no processor)")
    cfg = _sampling_config(model, tok, options)
    # checked above, eagerly; the pieces come from a generator
    return _stream(model, batch, tok, cfg, speak, voice, speech, audio_chunk_frames)


def _stream(model, batch, tok, cfg: SamplingConfig, speak: bool, voice: str, speech, audio_chunk_frames):
    from .media.text import StreamDecoder

    decoder = StreamDecoder(tok)
    text_of = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    reply = []
    for tok_b in decode_steps(model.thinker, batch, cfg, text_of):
        t = int(tok_b[0])
        reply.append(t)
        if t in cfg.eos_token_ids:
            break
        piece = decoder.push(t)
        if piece:
            yield piece
    rest = decoder.flush()
    if rest:
        yield rest
    if speak and reply:
        yield from release_of(model).stream_speech(model, batch, reply, voice, _speech_options(speech, cfg),
                                                   audio_chunk_frames, cfg.eos_token_ids)
