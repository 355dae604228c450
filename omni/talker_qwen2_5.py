"""The Qwen2.5-Omni Talker: a dense Qwen2 decoder that turns the Thinker's reply into codec codes (one stream).

Unlike the Qwen3-Omni Talker (MoE, code predictor, 16 codebooks) it emits one code per step, 50 per second, which
Token2Wav (omni.token2wav) turns into speech. Every input vector lives in the *Thinker's* width and is projected
once (`thinker_to_talker_proj`) before the decoder:

    prompt      one position per prompt token: Thinker hidden state + Thinker input embedding (the embedding is
                zeroed at audio/image/video placeholders, whose hidden state stays)
    + 2         the speaker's text-BOS embedding (+ codec pad), then the first reply token's hidden + embedding
                (+ codec bos)
    decode j    codec_embedding(code j-1) + reply[j]: the reply's remaining tokens (hidden + embedding) one per step,
                then the tts text-end embedding, then the tts text-pad embedding for ever ("dual track")

Positions are the Thinker's multimodal ones (TMRoPE) over [prompt ids, speaker bos, first reply token]; decoding
continues from the rope deltas. Codes are sampled until codec pad or codec end (`generate_codes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config_qwen2_5 import Qwen25TalkerConfig, Qwen25ThinkerConfig  # noqa: F401 (the config is re-exported)
from .errors import InputError
from .generation import SamplingConfig, next_token
from .nn import Decoder, DecoderCache
from .positions import next_position_ids, rope_index_from_config
from .talker import TalkerOutput


class Qwen25Talker(nn.Module):
    def __init__(self, cfg: Qwen25TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_size)  # in the Thinker's width
        self.thinker_to_talker_proj = nn.Linear(cfg.embedding_size, cfg.hidden_size)
        self.decoder = Decoder(cfg)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> TalkerOutput:
        """inputs_embeds (B, T, embedding_size) in the Thinker's width; position_ids (3, B, T) (default: consecutive
        from the cache); attention_mask (B, S) over everything seen so far. -> logits (B, T, vocab) in fp32."""
        h = self.thinker_to_talker_proj(inputs_embeds)
        h = self.decoder(h, position_ids, attention_mask, cache=cache).last_hidden_state
        return TalkerOutput(self.codec_head(h).float(), h)


@dataclass
class Qwen25TalkerInputs:
    embeds: torch.Tensor  # (B, P + 2, E) the prompt
    attention_mask: torch.Tensor  # (B, P + 2)
    position_ids: torch.Tensor  # (3, B, P + 2)
    rope_deltas: torch.Tensor  # (B, 1)
    reply: torch.Tensor  # (B, L, E) text-track vectors of the decode steps; the last one repeats for ever


def build_talker_inputs(
    talker: Qwen25Talker,
    thinker_cfg: Qwen25ThinkerConfig,
    embed_tokens: nn.Module,
    input_ids: torch.Tensor,
    generated: torch.Tensor,
    embeds: torch.Tensor,
    hidden: torch.Tensor,
    speaker_bos: int,
    attention_mask: torch.Tensor | None = None,
    thinker_eos_token_ids=(),
    **media,
) -> Qwen25TalkerInputs:
    """The Talker's prompt from a finished Thinker reply.

    input_ids (B, P) the Thinker prompt; generated (B, G) its reply (G >= 2); embeds / hidden (B, P + G - 1, E): the
    Thinker's input embeddings (media features at placeholders) and final normed hidden states over the prompt and
    the reply tokens it was fed (all but the last); embed_tokens: the Thinker's token embedding; speaker_bos: the
    voice's text-BOS token (`Speaker.bos_token`). thinker_eos_token_ids: where a row's reply ends (the text track
    says text-end right after its last real token, then pads). media: image_grid_thw, video_grid_thw,
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

    text_end, text_pad = thinker_embedding(cfg.tts_text_end_token_id), thinker_embedding(cfg.tts_text_pad_token_id)
    stream = torch.cat([reply[:, 1:], text_end, text_pad], dim=1)  # (B, G, E)
    if len(thinker_eos_token_ids):
        # a row that stopped early: text-end right after its last real token (its eos slot), pads after that
        is_eos = torch.isin(generated, torch.as_tensor(thinker_eos_token_ids, device=device).reshape(-1))
        steps = torch.arange(G, device=device)
        end = torch.where(is_eos, steps, G).min(-1).values.clamp(1, G - 1)[:, None]  # (B, 1)
        stream = torch.where((steps >= end)[..., None], text_pad, stream)
        stream = torch.where((steps == end - 1)[..., None], text_end, stream)

    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    mask = torch.cat([mask, mask.new_ones(B, 2)], dim=1)
    text_ids = torch.cat([input_ids, torch.full((B, 1), speaker_bos, device=device), generated[:, :1]], dim=1)
    position_ids, deltas = rope_index_from_config(thinker_cfg, text_ids, mask, **media)
    return Qwen25TalkerInputs(x, mask, position_ids, deltas, stream)


@dataclass
class Qwen25Codes:
    codes: torch.Tensor  # (B, N) codec codes; past a row's length: its stop code, then codec pad
    lengths: torch.Tensor  # (B,) codes before each row's stop code


@torch.no_grad()
def generate_codes(
    talker: Qwen25Talker,
    inputs: Qwen25TalkerInputs,
    max_new_tokens: int = 4096,
    do_sample: bool = True,
    temperature: float = 0.9,
    top_k: int = 40,
    top_p: float = 0.8,
    repetition_penalty: float = 1.05,
    seed: int | None = None,
) -> Qwen25Codes:
    """Sample codes until codec pad or codec end (both stop a row) or `max_new_tokens`. Defaults: the release's.

    Codec start is never sampled. The repetition penalty counts the prompt's codec ids (mask, pad, start) as seen,
    as the reference does (its prompt is those ids).
    """
    cfg = talker.cfg
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                              top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    sampling.validate()
    x, mask = inputs.embeds, inputs.attention_mask
    B, T, _ = x.shape
    device = x.device
    stops = torch.tensor([cfg.tts_codec_pad_token_id, cfg.tts_codec_end_token_id], device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    seen = torch.tensor([[cfg.tts_codec_mask_token_id, cfg.tts_codec_pad_token_id, cfg.tts_codec_start_token_id]],
                        device=device).expand(B, -1)
    cache = talker.decoder.new_cache(B, T + max_new_tokens)
    logits = talker(x, inputs.position_ids, mask, cache).logits[:, -1]  # (B, V)
    codes = []
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        logits[:, cfg.tts_codec_start_token_id] = float("-inf")
        code = next_token(logits, seen, sampling, step, generator)
        code = code.masked_fill(finished, cfg.tts_codec_pad_token_id)
        finished = finished | torch.isin(code, stops)
        lengths += (~finished).long()
        codes.append(code)
        seen = torch.cat([seen, code[:, None]], dim=1)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        text = inputs.reply[:, min(step, inputs.reply.shape[1] - 1)]  # (B, E)
        x = (talker.codec_embedding(code) + text)[:, None]  # (B, 1, E)
        position_ids = next_position_ids(inputs.rope_deltas, mask.sum(-1, keepdim=True))
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        logits = talker(x, position_ids, mask, cache).logits[:, -1]
    out = torch.stack(codes, dim=1) if codes else torch.zeros(B, 0, dtype=torch.long, device=device)
    return Qwen25Codes(out, lengths)
