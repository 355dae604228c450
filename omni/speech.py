"""What speaking a reply means in every release: from the Thinker's finished reply to codec codes.

    reread_reply      the Thinker over prompt + reply (all but its last token), with hidden states
    <release>.speech  build_talker_inputs: the Talker's prompt and the text track it reads while it speaks
    talker_steps      the Talker's decode loop (below), one step per code (Qwen2.5) or 16-code frame (Qwen3)
    <release>.speech  spoken_reply: codes -> waveform with the release's vocoder

The decode loop, with a KV cache:

    talker(prompt)                                   -> logits, hidden of the last position
    step s:  pick(logits, hidden) -> codes, stop     (the release's sampling; a stopped row keeps a filler code)
             next input = embed(codes) + text track[s]    (the reply's text, one vector per step, then pad)
             position   = real tokens so far + rope delta (the same on all three M-RoPE rows)
    ... until every row has stopped, or `max_steps`.

A row whose reply ended early (a Thinker end token inside the batch's reply) says the text-end marker at its own
end and pads after it (`end_text_track`); voices are looked up by case-insensitive name (`find_voice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .errors import InputError
from .nn.losses import IGNORE
from .positions import next_position_ids
from .release import release_of
from .thinker import MEDIA_KEYS


@dataclass
class TalkerOutput:
    logits: torch.Tensor  # (B, T, codec vocab)
    hidden: torch.Tensor  # (B, T, D) after the final norm (Qwen3-Omni's code predictor starts from it)
    router_logits: tuple | None = None
    loss: torch.Tensor | None = None  # with `labels`: next-code cross-entropy (+ router aux loss, Qwen3-Omni)
    aux_loss: torch.Tensor | None = None  # the router load-balancing loss, with output_router_logits (Qwen3-Omni)


@dataclass
class TalkerInputs:
    embeds: torch.Tensor  # (B, T, D) the Talker's prompt
    attention_mask: torch.Tensor  # (B, T) 0 = left padding
    position_ids: torch.Tensor  # (3, B, T) M-RoPE ids
    rope_deltas: torch.Tensor  # (B, 1) next position = real tokens so far + delta
    trailing: torch.Tensor  # (B, N, D) the text track: one vector per decode step
    pad_embed: torch.Tensor  # (B, 1, D) added once the text track is used up

    def text(self, step: int) -> torch.Tensor:
        """The text-track vector added to the input after decode step `step`: (B, D)."""
        return self.trailing[:, step] if step < self.trailing.shape[1] else self.pad_embed[:, 0]


@dataclass
class SpeechCodes:
    codes: torch.Tensor  # (B, num_code_groups, frames) for Qwen3-Omni, (B, N) for Qwen2.5-Omni
    lengths: torch.Tensor  # (B,) frames / codes before each row's stop code


def reread_reply(thinker, batch: dict, new_tokens: torch.Tensor):
    """Run the Thinker over prompt + reply with hidden states: what either release's Talker conditions on.

    The last reply token is never fed back to the Thinker while generating, so the re-read stops before it.
    Runs with whatever grad mode the caller set (speech generation: none; training the Thinker jointly: on).
    Returns (Thinker output, prompt attention mask (B, T), the media layout `build_talker_inputs` takes)."""
    input_ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(input_ids) if mask is None else mask
    fed = torch.cat([input_ids, new_tokens.to(input_ids.device)[:, :-1]], 1)
    fed_mask = torch.cat([mask, mask.new_ones(fed.shape[0], fed.shape[1] - mask.shape[1])], 1)
    media = {k: batch[k] for k in MEDIA_KEYS if batch.get(k) is not None}
    out = thinker(input_ids=fed, attention_mask=fed_mask, output_hidden_states=True, logits_to_keep=1, **media)
    fam = batch.get("feature_attention_mask")
    layout = dict(
        image_grid_thw=batch.get("image_grid_thw"), video_grid_thw=batch.get("video_grid_thw"),
        video_second_per_grid=batch.get("video_second_per_grid"),
        audio_feature_lengths=fam.sum(-1) if fam is not None else None,
        use_audio_in_video=bool(batch.get("use_audio_in_video", False)),
    )
    return out, mask, layout


def token_embedding(thinker, trained: bool):
    """The Thinker's token embedding as the Talker's inputs read it (the tts_* markers): the module itself when the
    Thinker trains with the speech side, else a lookup whose result carries no gradient back to the Thinker."""
    if trained:
        return thinker.embed_tokens
    return lambda ids: thinker.embed_tokens(ids).detach()


def reply_end(reply_ids: torch.Tensor, eos_token_ids) -> torch.Tensor:
    """Index of each row's first end token in the reply (B, G) -> (B,); G where a row has none."""
    G = reply_ids.shape[1]
    is_eos = torch.isin(reply_ids, torch.as_tensor(eos_token_ids, device=reply_ids.device).reshape(-1))
    return torch.where(is_eos, torch.arange(G, device=reply_ids.device), G).min(-1).values


def end_text_track(track: torch.Tensor, end: torch.Tensor, end_embed: torch.Tensor, pad_embed: torch.Tensor):
    """The text track (B, N, D) of a batch whose rows end at different steps: row b says `end_embed` at step
    end[b] and `pad_embed` after it (end[b] >= N leaves the row as it is)."""
    step = torch.arange(track.shape[1], device=track.device)[None]  # (1, N)
    track = torch.where((step > end[:, None])[..., None], pad_embed.to(track.dtype), track)
    return torch.where((step == end[:, None])[..., None], end_embed.to(track.dtype), track)


@torch.no_grad()
def talker_steps(talker, inputs: TalkerInputs, max_steps: int, pick: Callable, embed: Callable) -> Iterator:
    """The decode loop (module docstring). pick(logits (B, V), hidden (B, 1, D), step, finished (B,)) ->
    (codes, stop (B,) bool); embed(codes) -> (B, D). Yields (codes, finished (B,)) after every step, `finished`
    including the rows that stop at this step; ends once every row has finished, or after `max_steps`."""
    embeds, mask = inputs.embeds, inputs.attention_mask
    B, T, _ = embeds.shape
    cache = talker.decoder.new_cache(B, T + max_steps)
    out = talker(embeds, inputs.position_ids, mask, cache)
    finished = torch.zeros(B, dtype=torch.bool, device=embeds.device)
    for step in range(max_steps):
        codes, stop = pick(out.logits[:, -1], out.hidden[:, -1:], step, finished)
        finished = finished | stop
        yield codes, finished
        if bool(finished.all()) or step == max_steps - 1:
            return
        x = (embed(codes) + inputs.text(step))[:, None]  # (B, 1, D)
        position_ids = next_position_ids(inputs.rope_deltas, mask.sum(-1, keepdim=True))
        mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
        out = talker(x, position_ids, mask, cache)


@dataclass
class SpeechLoss:
    """The speech side's training loss: loss = talker + router_aux_loss_coef * aux + code_predictor."""

    loss: torch.Tensor
    talker: torch.Tensor  # next-code cross-entropy of the Talker's codec head (code 0 of each frame; the code)
    code_predictor: torch.Tensor | None = None  # cross-entropy of codes 1..G-1 (Qwen3-Omni)
    aux: torch.Tensor | None = None  # router load-balancing loss (MoE Talker), before its coefficient


def teacher_forced(inputs: TalkerInputs, step_embeds: torch.Tensor, lengths: torch.Tensor):
    """The Talker's whole input when the codes it should say are known, for one causal pass.

    Position T+s holds what `talker_steps` feeds after step s: the embedding of step s's codes plus the text track
    at s, at position (real prompt tokens + s + rope delta). The logits at T-1+s then score step s's code, exactly
    as decoding would see them. step_embeds (B, F, D); lengths (B,) real steps per row (the rest is masked).
    Returns (embeds (B, T + F, D), attention_mask (B, T + F), position_ids (3, B, T + F))."""
    B, T, _ = inputs.embeds.shape
    F = step_embeds.shape[1]
    text = inputs.trailing[:, :F]
    if text.shape[1] < F:  # past the reply the text track is the pad vector
        text = torch.cat([text, inputs.pad_embed.expand(B, F - text.shape[1], -1)], 1)
    embeds = torch.cat([inputs.embeds, step_embeds + text.to(step_embeds.dtype)], 1)
    real = torch.arange(F, device=lengths.device)[None] < lengths[:, None]  # (B, F)
    mask = torch.cat([inputs.attention_mask, real.to(inputs.attention_mask.dtype)], 1)
    steps = next_position_ids(inputs.rope_deltas, inputs.attention_mask.sum(-1, keepdim=True), F)
    position_ids = torch.cat([inputs.position_ids.float(), steps.float()], 2)
    return embeds, mask, position_ids


def step_targets(codes: torch.Tensor, lengths: torch.Tensor, end: int) -> torch.Tensor:
    """What the Talker should say at each of F + 1 steps: codes (B, F) up to each row's length, then the end code,
    then -100 (not scored): (B, F + 1), aligned with the logits at positions T-1 .. T-1+F of `teacher_forced`."""
    B, F = codes.shape
    step = torch.arange(F + 1, device=codes.device)[None]
    padded = torch.cat([codes, codes.new_full((B, 1), IGNORE)], 1)
    targets = torch.where(step < lengths[:, None], padded, IGNORE)
    return torch.where(step == lengths[:, None], end, targets)


def check_speech_length(decoder, inputs: TalkerInputs, max_steps: int, option: str) -> None:
    """The Talker's prompt plus `max_steps` must fit its context: past it the positions have no meaning, and the
    KV cache would be sized for it before the first step (a huge limit must fail here, not in the allocator)."""
    limit, prompt = decoder.cfg.max_position_embeddings, inputs.embeds.shape[1]
    if prompt + max_steps > limit:
        raise InputError(f"the Talker's prompt ({prompt} positions) + {option} ({max_steps}) exceeds its context of "
                         f"{limit}; lower {option}")


def find_voice(voices: dict | None, voice, no_voices_hint: str = ""):
    """A voice by name, case-insensitive ("Chelsie", "chelsie"): whatever the release keeps per voice."""
    by_name = {str(name).lower(): v for name, v in (voices or {}).items()}
    if not by_name and no_voices_hint:
        raise InputError(f"this model has no voices: {no_voices_hint}")
    if not isinstance(voice, str) or voice.lower() not in by_name:
        raise InputError(f"unknown voice {voice!r}; available voices: {sorted(by_name) or 'none in config'}")
    return by_name[voice.lower()]


def check_can_speak(model, voice):
    """Fail before any generation work if speech cannot be produced (missing parts, unknown voice); returns the
    voice (what the release keeps for it)."""
    release = release_of(model)
    parts = ("thinker", "talker", release.vocoder)
    missing = [c for c in parts if getattr(model, c, None) is None]
    if missing:
        raise InputError(f"speech needs the {', '.join(parts[:-1])} and {parts[-1]}; this model was loaded without "
                         f"{missing} (load with components={parts}, the default)")
    return find_voice(release.voices(model), voice, release.no_voices_hint)
