"""Training the speech side: the Talker (and Qwen3-Omni's code predictor) learn to speak a known reply.

    loss = speech_loss(model, batch, reply, codes)          # SpeechLoss(loss, talker, code_predictor, aux)
    loss.loss.backward(); optimizer.step()

batch: the prompt as the processor makes it (input_ids ending with the assistant header, attention_mask, media
keys); reply (B, N): the Thinker's reply token ids, end token included (rows padded after it); codes: the codec
codes that speak the reply, (B, G, frames) for Qwen3-Omni (G = 16 codebooks at 12.5 frames/s), (B, steps) for
Qwen2.5-Omni (one codebook, 50 codes/s); lengths (B,): real frames/steps per row (default: all).

The Talker's input is built exactly as generation builds it (the Thinker re-reads prompt + reply, the speaker
token, the text track), then run teacher-forced in one pass (see `omni.speech.teacher_forced` and the release's
`training.py`). Where the codes come from is up to you: codes the model generated (`generate(..., speak=True)`
returns them as `.codes`), or the encoder of a codec whose code space the release's vocoder decodes. Only the
Thinker's weights are kept out of the graph by default (`train_thinker=False`: its re-read runs without grad);
freeze whatever else should not learn (omni.training.freeze) or add LoRA (omni.training.add_lora with
scope="talker").
"""

from __future__ import annotations

import torch

from ..checks import boolean
from ..errors import InputError
from ..release import release_of
from ..speech import SpeechLoss


def speech_loss(model, batch: dict, reply, codes, lengths=None, voice: str | torch.Tensor | None = None,
                train_thinker: bool = False, thinker_eos_token_ids=None) -> SpeechLoss:
    """The teacher-forced speech loss of `codes` speaking `reply` after the prompt `batch` (module docstring).

    voice: a voice name (default: the release's default voice) or, for Qwen3-Omni, a speaker vector (D,).
    thinker_eos_token_ids: where a reply ends (default: what generate() stops at)."""
    release = release_of(model)
    recipe = release.speech_training  # the release's training.py
    if recipe is None:
        raise InputError(f"speech training is not implemented for {release.name}")
    missing = [c for c in ("thinker", "talker") if getattr(model, c, None) is None]
    if missing:
        raise InputError(f"speech training needs the thinker and the talker; this model was loaded without "
                         f"{missing} (load with components=('thinker', 'talker'))")
    train_thinker = boolean("train_thinker", train_thinker)
    from ..generation import _prepare, _sampling_config

    batch, tok, _ = _prepare(model, batch)
    device = batch["input_ids"].device
    B = batch["input_ids"].shape[0]
    reply = _ids("reply", reply, device)
    if reply.shape[0] != B or reply.shape[1] < 2:
        raise InputError(f"reply must be (batch = {B}, >= 2 tokens) of the Thinker's reply ids, got "
                         f"{tuple(reply.shape)}")
    codes = _ids("codes", codes, device, dims=None)
    if codes.shape[0] != B:
        raise InputError(f"codes hold {codes.shape[0]} rows for a batch of {B}")
    steps = codes.shape[-1]
    lengths = torch.full((B,), steps, device=device) if lengths is None else _ids("lengths", lengths, device, dims=1)
    if lengths.shape != (B,) or bool((lengths < 1).any()) or bool((lengths > steps).any()):
        raise InputError(f"lengths must be (batch = {B},) counts in 1..{steps} (the codes' last axis), got "
                         f"{lengths.tolist()}")
    problem = recipe.check_codes(model.talker, codes, torch.arange(steps, device=device)[None] < lengths[:, None])
    if problem:
        raise InputError(problem)
    eos = thinker_eos_token_ids
    if eos is None:
        eos = _sampling_config(model, tok, {}).eos_token_ids
    needed = recipe.text_steps(reply, eos)
    short = (lengths < needed).nonzero().flatten().tolist()
    if short:
        raise InputError(f"the codes of row(s) {short} are shorter than the reply they speak: the Talker reads one "
                         f"text token per step, so row b needs at least {needed.tolist()} steps, got "
                         f"{lengths.tolist()}; pass the codes of the whole reply")
    if voice is None:
        voice = "ethan"  # generate()'s default; both releases have it
    return recipe.speech_loss(model, batch, reply, codes, lengths, voice, train_thinker, eos)


def _ids(name: str, value, device, dims=2) -> torch.Tensor:
    """An integer tensor on `device` from a tensor, array or nested list."""
    try:
        t = torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{name} must be an integer tensor, array or nested list ({e})") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise InputError(f"{name} must hold integer ids, got dtype {t.dtype}")
    if (t.dim() != dims) if dims is not None else (t.dim() < 2):
        raise InputError(f"{name} must have {dims or 'batch and step'} dimensions, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise InputError(f"{name} is empty")
    return t.long()
