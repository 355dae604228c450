"""The Thinker: modality tokenizers feeding one decoder that writes text (MoE in Qwen3-Omni, dense in Qwen2.5-Omni).

    input_ids ──embed──┐
    pixel_values ──vision tower──► scattered into the image/video placeholder positions (+ deepstack)
    input_features ──audio tower──► scattered into the audio placeholder positions
                       └──► Decoder (M-RoPE positions) ──► lm_head ──► logits

The two towers are the release's (its `Release.vision` / `.audio`, built from the config's sections); the rest is
the same code for every release.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import ThinkerConfig
from .errors import InputError
from .nn import Decoder
from .nn.linear import Linear
from .nn.losses import causal_lm_loss
from .nn.moe import load_balancing_loss
from .positions import rope_index_from_config
from .release import release_of

# The media keys of the official processor's batch (besides input_ids and attention_mask), as the Thinker takes them.
MEDIA_KEYS = (
    "pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "video_second_per_grid",
    "input_features", "feature_attention_mask", "use_audio_in_video",
)


@dataclass
class ThinkerOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    hidden_states: tuple | None = None  # embeddings, then each layer's output (last one after the final norm)
    router_logits: tuple | None = None
    rope_deltas: torch.Tensor | None = None  # (B, 1): next position = cache length + delta


class Thinker(nn.Module):
    # called outside `forward` (the Talker's inputs read token embeddings; the compiled decode step): an FSDP unit
    fsdp_units = ("embed_tokens",)

    def __init__(self, cfg: ThinkerConfig):
        super().__init__()
        self.cfg = cfg
        t = cfg.text_config
        self.embed_tokens = nn.Embedding(t.vocab_size, t.hidden_size)
        self.decoder = Decoder(t)
        self.lm_head = Linear(t.hidden_size, t.vocab_size, bias=False)
        release = release_of(cfg)  # the release decides the encoders; the rest is shared
        self.vision = release.vision(cfg.vision_config)
        self.audio = release.audio(cfg.audio_config)

    # -- inputs -> embeddings ---------------------------------------------------------------------------------

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values=None,
        image_grid_thw=None,
        pixel_values_videos=None,
        video_grid_thw=None,
        input_features=None,
        feature_attention_mask=None,
    ):
        """Token embeddings with the media features written into their placeholder positions.

        Returns (embeddings (B, T, D), visual_mask (B, T) | None, deepstack features | None). Audio, image and
        video features are scattered in that order, each in sequence order; deepstack features are laid out over
        the union of image and video positions.
        """
        c = self.cfg
        check_token_ids(input_ids, c.text_config.vocab_size)
        h = self.embed_tokens(input_ids)
        if input_features is not None:
            feats = self.audio(input_features, feature_attention_mask)
            h = _scatter(h, input_ids == c.audio_token_id, feats, "audio")
        visual = {}  # kind -> (mask, deepstack list)
        for kind, pixels, grid, token in (
            ("image", pixel_values, image_grid_thw, c.image_token_id),
            ("video", pixel_values_videos, video_grid_thw, c.video_token_id),
        ):
            if pixels is None:
                if grid is not None:  # the positions would count this media, the embeddings would not hold it
                    name = "pixel_values" if kind == "image" else "pixel_values_videos"
                    raise InputError(f"{kind}_grid_thw was given without {name}; pass both (as omni.Processor "
                                     f"returns them) or neither")
                continue
            if grid is None:
                raise InputError(f"{kind} pixels were given without their {kind}_grid_thw")
            feats, deep = self.vision(pixels, grid)
            mask = input_ids == token
            h = _scatter(h, mask, feats, kind)
            visual[kind] = (mask, deep)
        if not visual:
            return h, None, None
        visual_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for mask, _ in visual.values():
            visual_mask |= mask
        deepstack = []
        for level in range(len(next(iter(visual.values()))[1])):
            joint = h.new_zeros(int(visual_mask.sum()), h.shape[-1])
            for mask, deep in visual.values():
                joint[mask[visual_mask]] = deep[level].to(h.dtype)
            deepstack.append(joint)
        return h, visual_mask, deepstack

    def positions(self, input_ids, attention_mask, image_grid_thw=None, video_grid_thw=None,
                  video_second_per_grid=None, feature_attention_mask=None, use_audio_in_video=False):
        """M-RoPE position ids (3, B, T) and rope deltas (B, 1) of a prompt (see omni.positions)."""
        frames = feature_attention_mask.sum(-1) if feature_attention_mask is not None else None
        return rope_index_from_config(
            self.cfg, input_ids, attention_mask, image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw,
            video_second_per_grid=video_second_per_grid, audio_feature_lengths=frames,
            use_audio_in_video=bool(use_audio_in_video),
        )

    # -- forward ---------------------------------------------------------------------------------------------------

    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, labels, position_ids, cache) -> None:
        """Shapes, dtypes and ranges of the text-side inputs, named before anything deep can fail on them."""
        D = self.cfg.text_config.hidden_size
        if input_ids is not None and (_tensor("input_ids", input_ids).dim() != 2):
            raise InputError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        if inputs_embeds is not None:
            e = _tensor("inputs_embeds", inputs_embeds)
            if e.dim() != 3 or e.shape[-1] != D or not e.is_floating_point():
                raise InputError(f"inputs_embeds must be floating (batch, seq_len, {D}), got {e.dtype} "
                                 f"{tuple(e.shape)}")
        B, T = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        past = cache.length if cache is not None else 0
        if attention_mask is not None:
            m = _tensor("attention_mask", attention_mask)
            if m.dim() != 2 or m.shape[0] != B or m.shape[1] != past + T:
                raise InputError(f"attention_mask must be (batch, cached + new tokens) = ({B}, {past + T}), got "
                                 f"{tuple(m.shape)}")
        if position_ids is not None:
            p = _tensor("position_ids", position_ids)
            if tuple(p.shape) not in ((3, B, T), (B, T)):
                raise InputError(f"position_ids must be (3, {B}, {T}) (M-RoPE) or ({B}, {T}), got {tuple(p.shape)}")
        if labels is not None:
            lab = _tensor("labels", labels)
            V = self.cfg.text_config.vocab_size
            if tuple(lab.shape) != (B, T):
                raise InputError(f"labels must have the shape of input_ids ({B}, {T}), got {tuple(lab.shape)}")
            if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
                raise InputError(f"labels must hold integer token ids (or -100 to skip), got dtype {lab.dtype}")
            bad = (lab != -100) & ((lab < 0) | (lab >= V))
            if bool(bad.any()):
                raise InputError(f"labels must be token ids in 0..{V - 1} or -100 (skipped), got "
                                 f"{lab[bad][:5].tolist()}")

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        video_second_per_grid: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        use_audio_in_video: bool = False,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache=None,
        output_hidden_states: bool = False,
        output_router_logits: bool = False,
        logits_to_keep: int = 0,
    ) -> ThinkerOutput:
        """Accepts exactly the keys of the official processor's batch (plus labels, cache and output flags).

        logits_to_keep: 0 = logits for every position; n = only the last n (generation needs one: over a long prompt
        the lm_head is a large share of the prefill)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise InputError(f"logits_to_keep must be an int >= 0 (0 = every position), got {logits_to_keep!r}")
        if logits_to_keep and labels is not None:
            raise InputError("labels need the logits of every position; drop logits_to_keep to compute a loss")
        self._check_inputs(input_ids, inputs_embeds, attention_mask, labels, position_ids, cache)
        visual_mask = deepstack = None
        if inputs_embeds is None:
            inputs_embeds, visual_mask, deepstack = self.embed(
                input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw,
                input_features, feature_attention_mask,
            )
        rope_deltas = None
        first_pass = cache is None or cache.length == 0
        if position_ids is None and attention_mask is not None and input_ids is not None and first_pass:
            position_ids, rope_deltas = self.positions(
                input_ids, attention_mask, image_grid_thw, video_grid_thw, video_second_per_grid,
                feature_attention_mask, use_audio_in_video,
            )
        out = self.decoder(
            inputs_embeds, position_ids, attention_mask, cache=cache, visual_mask=visual_mask, deepstack=deepstack,
            output_hidden_states=output_hidden_states,
        )
        h = out.last_hidden_state
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        aux_loss = None
        if output_router_logits and out.router_logits:
            t = self.cfg.text_config
            aux_loss = load_balancing_loss(out.router_logits, t.num_experts, t.num_experts_per_tok, attention_mask)
            if loss is not None:
                loss = loss + t.router_aux_loss_coef * aux_loss
        return ThinkerOutput(
            logits=logits,
            loss=loss,
            aux_loss=aux_loss,
            hidden_states=out.hidden_states,
            router_logits=out.router_logits if output_router_logits else None,
            rope_deltas=rope_deltas,
        )


def _tensor(name: str, value) -> torch.Tensor:
    if not torch.is_tensor(value):
        raise InputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """Token ids must be integers in 0..vocab_size-1: an id past the table is an IndexError on CPU and a device-side
    assert on GPU (which leaves the CUDA context unusable), so it is caught here, named, with the likely cause."""
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise InputError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}; pass a long tensor")
    if input_ids.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one host sync
    if low < 0 or high >= vocab_size:
        raise InputError(
            f"input_ids hold ids in {low}..{high}, outside this model's vocabulary 0..{vocab_size - 1}; were they made "
            "by another tokenizer (or padded with -100/-1)? Use the checkpoint's own processor"
        )


def _scatter(h: torch.Tensor, mask: torch.Tensor, feats: torch.Tensor, kind: str) -> torch.Tensor:
    """Write `feats` (N, D) into the N positions where `mask` (B, T) is set, in sequence order."""
    n = int(mask.sum())
    if n != feats.shape[0]:
        raise InputError(
            f"{kind}: the prompt has {n} {kind} placeholder tokens but the {kind} inputs give {feats.shape[0]} "
            f"features; build the prompt with omni.Processor so placeholders match the media"
        )
    h = h.clone()
    h[mask] = feats.to(h.dtype)
    return h
