"""Training the Qwen2.5-Omni speech side: the Talker's loss of a known reply's codes, teacher-forced.

Generation makes one code per Talker step (omni.speech.talker_steps). When the codes are known, the same inputs
are built at once (omni.speech.teacher_forced) and one causal pass scores every step:

    Thinker re-read of prompt + reply  ->  build_talker_inputs (prompt, speaker bos, first reply token, text track)
    Talker over [prompt, embed(code_0) + text_0, ..., embed(code_{N-1}) + text_{N-1}]
        logits at T-1+s  vs  code s (s < length), codec end at s = length                  -> talker loss

There is no code predictor (one codebook) and no router (a dense decoder): loss = talker.
"""

from __future__ import annotations

import torch

from ...nn.losses import token_loss
from ...speech import SpeechLoss, find_voice, reply_end, reread_reply, step_targets, teacher_forced, token_embedding
from .speech import NO_VOICES, build_talker_inputs, voices


def check_codes(talker, codes: torch.Tensor, real: torch.Tensor) -> str | None:
    """What is wrong with target codes (B, N), or None: one codebook, ids below the vocabulary, no control ids.
    real (B, N): the steps inside each row's length (past it, codes are filler and not read)."""
    cfg = talker.cfg
    if codes.dim() != 2:
        return f"Qwen2.5-Omni codes are (batch, steps): one codebook, got shape {tuple(codes.shape)}"
    control = [cfg.tts_codec_pad_token_id, cfg.tts_codec_start_token_id, cfg.tts_codec_end_token_id,
               cfg.tts_codec_mask_token_id]
    if codes.shape != real.shape:
        return f"codes {tuple(codes.shape)} and lengths disagree"
    bad = (codes < 0) | (codes >= cfg.vocab_size) | torch.isin(codes, torch.tensor(control, device=codes.device))
    bad &= real
    if bool(bad.any()):
        return (f"codes must be spoken codec ids in 0..{cfg.vocab_size - 1} other than the control ids {control}; "
                f"found {codes[bad][:5].tolist()}")
    return None


def text_steps(reply: torch.Tensor, eos_token_ids) -> torch.Tensor:
    """Steps of the text track each row's codes must cover (B,): reply tokens 1.. up to its end, then text-end."""
    G = reply.shape[1]
    if not len(eos_token_ids):
        return torch.full((reply.shape[0],), G - 1, device=reply.device)
    return reply_end(reply, eos_token_ids).clamp(1, G - 1)


def speech_loss(model, batch: dict, reply: torch.Tensor, codes: torch.Tensor, lengths: torch.Tensor,
                voice="Chelsie", train_thinker: bool = False, thinker_eos_token_ids=()) -> SpeechLoss:
    """batch: the prompt (processor layout, left-padded, ending with the assistant header); reply (B, N) the
    Thinker's reply ids; codes (B, S) the codes that speak it, lengths (B,) real codes per row.
    omni.training.speech_loss checks all of these first."""
    speaker = find_voice(voices(model), voice, NO_VOICES)
    with torch.set_grad_enabled(train_thinker and torch.is_grad_enabled()):
        out, mask, layout = reread_reply(model.thinker, batch, reply)
    # the Talker's parts are used outside its forward: run() gathers them under FSDP (omni.nn.entry)
    return model.talker.run(_score, model, batch, reply, out, mask, layout, codes, lengths, speaker, train_thinker,
                            thinker_eos_token_ids)


def _score(model, batch, reply, out, mask, layout, codes, lengths, speaker, train_thinker, thinker_eos_token_ids):
    talker = model.talker
    inputs = build_talker_inputs(
        talker, model.thinker.cfg, token_embedding(model.thinker, train_thinker), batch["input_ids"], reply.to(mask.device),
        out.hidden_states[0], out.hidden_states[-1], speaker.bos_token, attention_mask=mask,
        thinker_eos_token_ids=thinker_eos_token_ids, **layout,
    )
    T = inputs.embeds.shape[1]
    embeds, talker_mask, position_ids = teacher_forced(inputs, talker.codec_embedding(codes), lengths)
    result = talker.forward(embeds, position_ids, talker_mask)  # not __call__: see the Qwen3-Omni training.py
    loss = token_loss(result.logits[:, T - 1:], step_targets(codes, lengths, talker.cfg.tts_codec_end_token_id))
    return SpeechLoss(loss, loss)
