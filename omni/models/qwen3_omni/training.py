"""Training the Qwen3-Omni speech side: the loss of a known reply's codes, teacher-forced.

Generation makes one frame per Talker step (omni.speech.talker_steps). When the frames are known, the same
inputs are built at once (omni.speech.teacher_forced) and one causal pass scores every step:

    Thinker re-read of prompt + reply  ->  build_talker_inputs (user turns, 9 assistant positions, text track)
    Talker over [prompt, frame_0 + text_0, ..., frame_{F-1} + text_{F-1}]     frame_s = sum of its G embeddings
        logits at T-1+s  vs  code 0 of frame s (s < length), codec eos at s = length          -> talker loss
    code predictor over [hidden at T-1+s, embed(code 0), embed(code 1), ..., embed(code G-2)] for each real frame
        logits at k      vs  code k, k = 1..G-1                                                -> code_predictor loss

loss = talker + router_aux_loss_coef * aux + code_predictor. The hidden state the code predictor starts from is
the Talker's own output, so its loss trains the Talker too (as decoding depends on it).
"""

from __future__ import annotations

import torch

from ...nn.losses import token_loss
from ...speech import SpeechLoss, reply_end, reread_reply, step_targets, teacher_forced, token_embedding
from .speech import build_talker_inputs


def spoken_codes(talker) -> tuple[int, int]:
    """(code 0 ids, codes 1.. ids) that a frame may hold: the codec vocabulary below its top 1024 control ids, and
    the code predictor's vocabulary."""
    return talker.cfg.text_config.vocab_size - 1024, talker.code_predictor.cfg.vocab_size


def speech_loss(model, batch: dict, reply: torch.Tensor, codes: torch.Tensor, lengths: torch.Tensor, voice="ethan",
                train_thinker: bool = False, thinker_eos_token_ids=None) -> SpeechLoss:
    """batch: the prompt (processor layout, left-padded, ending with the assistant header); reply (B, N) the
    Thinker's reply ids (its end token included); codes (B, G, F) the frames that speak it, lengths (B,) real
    frames per row. omni.training.speech_loss checks all of these first."""
    with torch.set_grad_enabled(train_thinker and torch.is_grad_enabled()):
        out, mask, layout = reread_reply(model.thinker, batch, reply)
    # the Talker's parts are used outside its forward: run() gathers them under FSDP (omni.nn.entry)
    return model.talker.run(_score, model, batch, reply, out, mask, layout, codes, lengths, voice, train_thinker,
                            thinker_eos_token_ids)


def _score(model, batch, reply, out, mask, layout, codes, lengths, voice, train_thinker, thinker_eos_token_ids):
    talker = model.talker
    input_ids = batch["input_ids"]
    sequences = torch.cat([input_ids, reply.to(input_ids.device)], 1)
    layer = model.config.talker_config.accept_hidden_layer
    inputs = build_talker_inputs(
        talker, model.config, token_embedding(model.thinker, train_thinker), input_ids, sequences, out.hidden_states[0],
        out.hidden_states[layer], mask, voice, thinker_eos_token_ids, **layout,
    )
    B, G, F = codes.shape
    T = inputs.embeds.shape[1]
    frames = codes.transpose(1, 2)  # (B, F, G)
    steps = talker.frame_embedding(frames.reshape(B * F, G)).reshape(B, F, -1)
    embeds, talker_mask, position_ids = teacher_forced(inputs, steps, lengths)
    # .forward, not __call__: inside run() the parameters are gathered already; a nested FSDP forward would free them
    result = talker.forward(embeds, position_ids, talker_mask, output_router_logits=True)
    scored = result.logits[:, T - 1:]  # (B, F + 1, V): the logits that choose code 0 of frame s, then eos
    talker_loss = token_loss(scored, step_targets(frames[..., 0], lengths, talker.cfg.codec_eos_token_id))
    real = torch.arange(F, device=codes.device)[None] < lengths[:, None]  # (B, F)
    hidden = result.hidden[:, T - 1:T - 1 + F][real]  # (N, D) the state each real frame's code 0 came from
    known = frames[real]  # (N, G)
    cp_loss = talker.code_predictor.loss(hidden, talker.codec_embedding(known[:, 0]), known)
    coef = talker.cfg.text_config.router_aux_loss_coef
    loss = talker_loss + cp_loss if result.aux_loss is None else talker_loss + coef * result.aux_loss + cp_loss
    return SpeechLoss(loss, talker_loss, cp_loss, result.aux_loss)


def check_codes(talker, codes: torch.Tensor, real: torch.Tensor) -> str | None:
    """What is wrong with target frames (B, G, F), or None: G codebooks, code 0 a spoken codec id (below the
    control ids), codes 1.. inside the code predictor's vocabulary. real (B, F): the frames inside each row's
    length (past it, frames are filler and not read)."""
    G = talker.cfg.num_code_groups
    if codes.dim() != 3 or codes.shape[1] != G:
        return f"Qwen3-Omni codes are (batch, {G} groups, frames), got shape {tuple(codes.shape)}"
    first, rest = spoken_codes(talker)
    for name, part, limit in (("code 0", codes[:, 0], first), ("codes 1..", codes[:, 1:], rest)):
        bad = ((part < 0) | (part >= limit)) & (real if part.dim() == 2 else real[:, None])
        if bool(bad.any()):
            return f"{name} of every frame must lie in 0..{limit - 1}, found {part[bad][:5].tolist()}"
    return None


def text_steps(reply: torch.Tensor, eos_token_ids) -> torch.Tensor:
    """Steps of the text track each row's frames must cover (B,): reply tokens 1.. up to its end token, then
    tts_eos (omni.models.qwen3_omni.speech, `_text_track`)."""
    N = reply.shape[1]
    return torch.minimum(reply_end(reply, eos_token_ids) + 1, torch.tensor(N - 1))
