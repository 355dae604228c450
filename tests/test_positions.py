"""TMRoPE position ids (omni.positions) against the reference `get_rope_index`: exact equality.

Prompts are laid out the way the official processor writes them; the reference is called on a tiny random
transformers Thinker (and Talker) built from tests/reference.py's config.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni.models.qwen3_omni.audio import audio_token_count
from omni.models.qwen3_omni.config import Qwen3TalkerConfig as TalkerConfig
from omni.models.qwen3_omni.config import Qwen3ThinkerConfig as ThinkerConfig
from omni.errors import ConfigError, InputError
from omni.positions import (
    next_position_ids,
    rope_index,
    rope_index_from_config,
    text_position_ids,
)

from reference import IDS, tiny_config_dict

AUDIO, IMAGE, VIDEO = IDS["audio_token_id"], IDS["image_token_id"], IDS["video_token_id"]
AS, VS = IDS["audio_start_token_id"], IDS["vision_start_token_id"]
AE, VE = 206, 205  # end markers: ordinary ids here (positions never look at them)
PPS = IDS["position_id_per_seconds"]
MERGE = 2


def ref_token_count(frames):
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

    return int(_get_feat_extract_output_lengths(torch.tensor(frames), 50))


_MODELS = {}


def reference_models():
    """The reference Thinker and Talker (random weights; only their get_rope_index is used)."""
    if not _MODELS:
        from transformers import Qwen3OmniMoeConfig
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
            Qwen3OmniMoeTalkerForConditionalGeneration,
            Qwen3OmniMoeThinkerForConditionalGeneration,
        )

        d = tiny_config_dict(talker={"spatial_merge_size": 1})
        cfg = Qwen3OmniMoeConfig(**d)
        _MODELS["thinker"] = Qwen3OmniMoeThinkerForConditionalGeneration(cfg.thinker_config).eval()
        _MODELS["talker"] = Qwen3OmniMoeTalkerForConditionalGeneration(cfg.talker_config).eval()
        _MODELS["thinker_cfg"] = ThinkerConfig.from_dict(d["thinker_config"])
        _MODELS["talker_cfg"] = TalkerConfig.from_dict(d["talker_config"])
    return _MODELS


# ---------------------------------------------------------------------------------------------------------------
# prompt layout (as the processor writes it)


class Prompt:
    """Builds rows of token ids plus the batch-wide media lists, in prompt order."""

    def __init__(self, merge=MERGE):
        self.merge = merge
        self.rows, self.images, self.videos, self.seconds, self.frames = [], [], [], [], []
        self.text_gen = torch.Generator().manual_seed(0)

    def row(self, *items):
        toks = []
        for kind, *args in items:
            if kind == "text":
                toks += torch.randint(0, 190, (args[0],), generator=self.text_gen).tolist()
            elif kind == "image":
                self.images.append(args[0])
                toks += [VS] + [IMAGE] * self._n(args[0]) + [VE]
            elif kind == "video":
                self.videos.append(args[0])
                self.seconds.append(args[1])
                toks += [VS] + [VIDEO] * self._n(args[0]) + [VE]
            elif kind == "audio":
                self.frames.append(args[0])
                toks += [AS] + [AUDIO] * ref_token_count(args[0]) + [AE]
            elif kind == "aiv":  # video with its audio track: vs, as, merged placeholders, ae, ve
                grid, sec, frames = args
                self.videos.append(grid)
                self.seconds.append(sec)
                self.frames.append(frames)
                toks += [VS, AS] + self._interleave(grid, sec, ref_token_count(frames)) + [AE, VE]
        self.rows.append(toks)
        return self

    def _n(self, grid):
        return grid[0] * (grid[1] // self.merge) * (grid[2] // self.merge)

    def _interleave(self, grid, sec, n_audio):
        per_frame = (grid[1] // self.merge) * (grid[2] // self.merge)
        video_t = [f * sec * PPS for f in range(grid[0]) for _ in range(per_frame)]
        out, v, a = [], 0, 0
        while v < len(video_t) and a < n_audio:
            if video_t[v] <= a:
                out.append(VIDEO)
                v += 1
            else:
                out.append(AUDIO)
                a += 1
        return out + [VIDEO] * (len(video_t) - v) + [AUDIO] * (n_audio - a)

    def batch(self):
        """(input_ids, attention_mask) with left padding."""
        T = max(len(r) for r in self.rows)
        ids = torch.zeros(len(self.rows), T, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(self.rows):
            ids[b, T - len(r):] = torch.tensor(r)
            mask[b, T - len(r):] = 1
        return ids, mask

    def media(self):
        return dict(
            image_grid_thw=torch.tensor(self.images) if self.images else None,
            video_grid_thw=torch.tensor(self.videos) if self.videos else None,
            video_second_per_grid=torch.tensor(self.seconds) if self.seconds else None,
            audio_feature_lengths=torch.tensor(self.frames) if self.frames else None,
        )


def check(prompt, use_audio_in_video=False, component="thinker", mask=True):
    """omni (from config, from feature lengths) == reference, exactly; also the token-count entry point."""
    models = reference_models()
    ids, attention_mask = prompt.batch()
    m = prompt.media()
    want_pos, want_delta = models[component].get_rope_index(
        ids, m["image_grid_thw"], m["video_grid_thw"], attention_mask, use_audio_in_video,
        m["audio_feature_lengths"], m["video_second_per_grid"],
    )
    got_pos, got_delta = rope_index_from_config(
        models[component + "_cfg"], ids, attention_mask if mask else None, use_audio_in_video=use_audio_in_video,
        **m,
    )
    assert got_pos.dtype == want_pos.dtype and got_pos.shape == want_pos.shape
    assert torch.equal(got_pos, want_pos), (got_pos - want_pos).abs().max()
    assert got_delta.shape == want_delta.shape
    assert torch.equal(got_delta.float(), want_delta.float()), (got_delta, want_delta)
    if component == "thinker" and m["audio_feature_lengths"] is not None:
        counts = [ref_token_count(f) for f in prompt.frames]
        pos2, delta2 = rope_index(
            ids, attention_mask, image_grid_thw=m["image_grid_thw"], video_grid_thw=m["video_grid_thw"],
            video_second_per_grid=m["video_second_per_grid"], audio_seqlens=counts,
            use_audio_in_video=use_audio_in_video, spatial_merge_size=MERGE, image_token_id=IMAGE,
            video_token_id=VIDEO, audio_token_id=AUDIO, vision_start_token_id=VS, audio_start_token_id=AS,
            position_id_per_seconds=PPS,
        )
        assert torch.equal(pos2, want_pos) and torch.equal(delta2, got_delta)
    return got_pos, got_delta


# ---------------------------------------------------------------------------------------------------------------
# crafted prompts


def test_text_only():
    pos, delta = check(Prompt().row(("text", 9)))
    assert torch.equal(pos[0, 0], torch.arange(9.0)) and delta.item() == 0


def test_text_only_batch_left_padding_and_no_mask():
    check(Prompt().row(("text", 9)).row(("text", 4)))
    check(Prompt().row(("text", 6)), mask=False)


def test_text_and_image():
    check(Prompt().row(("text", 3), ("image", (1, 4, 6)), ("text", 2)))


def test_two_images_of_different_grids():
    check(Prompt().row(("text", 2), ("image", (1, 4, 4)), ("text", 1), ("image", (1, 8, 2)), ("text", 3)))


def test_image_first_and_last_token():
    check(Prompt().row(("image", (1, 2, 4))))


def test_video_fractional_seconds_per_grid():
    check(Prompt().row(("text", 2), ("video", (3, 4, 4), 2 / 3), ("text", 2)))
    check(Prompt().row(("video", (4, 2, 4), 0.37), ("text", 1), ("video", (2, 4, 2), 1.5)))


def test_long_video_rounds_time_like_reference():
    # frame * seconds * 13 in float32: the multiplication order changes the last bit for these frames
    check(Prompt().row(("text", 1), ("video", (12, 2, 2), 0.37), ("text", 1), ("video", (10, 2, 2), 1.1)))
    check(Prompt().row(("aiv", (12, 2, 2), 0.1, 230), ("text", 1)), use_audio_in_video=True)


def test_audio_only_takes_text_branch_like_reference():
    # no grids: the reference uses plain text positions (padding at 1); audio positions are consecutive anyway
    check(Prompt().row(("text", 2), ("audio", 130), ("text", 2)).row(("audio", 40)))


def test_audio_with_empty_grid_takes_multimodal_branch():
    # an empty (0, 3) grid is "given": both sides walk the prompt (padding positions become 0)
    p = Prompt().row(("text", 2), ("audio", 130), ("text", 2)).row(("audio", 40))
    ids, mask = p.batch()
    empty = torch.zeros(0, 3, dtype=torch.long)
    frames = torch.tensor(p.frames)
    want = reference_models()["thinker"].get_rope_index(ids, empty, None, mask, False, frames, None)
    got = rope_index_from_config(reference_models()["thinker_cfg"], ids, mask, image_grid_thw=empty,
                                 audio_feature_lengths=frames)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert (got[0][:, mask == 0] == 0).all()


def test_audio_with_image():
    check(Prompt().row(("text", 2), ("audio", 250), ("image", (1, 4, 4)), ("audio", 17), ("text", 1)))


def test_image_audio_video_mixed():
    check(Prompt().row(
        ("text", 3), ("image", (1, 4, 2)), ("text", 1), ("audio", 99), ("video", (2, 4, 4), 0.5),
        ("text", 2), ("audio", 301), ("text", 1),
    ))


@pytest.mark.parametrize("sec, frames", [(2.0, 400), (0.5, 100), (2 / 3, 37), (1.3, 260), (0.1, 800), (4.0, 20)])
def test_audio_in_video(sec, frames):
    check(Prompt().row(("text", 2), ("aiv", (3, 4, 4), sec, frames), ("text", 2)), use_audio_in_video=True)


def test_audio_in_video_wide_frame_short_audio():
    # one frame 4x8 merged patches and 2 audio tokens: the end markers follow the audio tail, as in the reference
    check(Prompt().row(("text", 1), ("aiv", (1, 8, 16), 2.0, 9), ("text", 2)), use_audio_in_video=True)


def test_audio_in_video_with_image_and_audio():
    check(Prompt().row(
        ("text", 2), ("image", (1, 4, 4)), ("aiv", (2, 4, 2), 0.7, 60), ("audio", 45), ("aiv", (3, 2, 2), 1.1, 150),
        ("text", 1),
    ), use_audio_in_video=True)


def test_batch_of_two_left_padded_mixed():
    p = Prompt().row(("text", 2), ("image", (1, 4, 4)), ("audio", 120), ("text", 3))
    p.row(("video", (2, 4, 2), 0.9), ("text", 1), ("image", (1, 2, 2)))
    pos, _ = check(p)
    ids, mask = p.batch()
    assert (pos[:, mask == 0] == 0).all()  # padding positions are 0 in the multimodal walk


def test_batch_of_two_audio_in_video():
    p = Prompt().row(("aiv", (2, 4, 4), 0.5, 90), ("text", 2))
    p.row(("text", 4), ("aiv", (1, 2, 2), 2.0, 30), ("image", (1, 2, 2)))
    check(p, use_audio_in_video=True)


def test_talker_config_uses_its_own_merge_size():
    # the talker's spatial_merge_size is 1 here while the vision one is 2
    check(Prompt(merge=1).row(("text", 2), ("image", (1, 2, 3)), ("video", (2, 3, 2), 0.5), ("text", 1)),
          component="talker")


def test_worked_example_in_docstring():
    ids = torch.tensor([[7, VS] + [VIDEO] * 8 + [VE, 8]])
    pos, delta = rope_index_from_config(reference_models()["thinker_cfg"], ids, None,
                                        video_grid_thw=[[2, 4, 4]], video_second_per_grid=[0.5])
    assert pos[:, 0].tolist() == [
        [0, 1, 2, 2, 2, 2, 8.5, 8.5, 8.5, 8.5, 9.5, 10.5],
        [0, 1, 2, 2, 3, 3, 2, 2, 3, 3, 9.5, 10.5],
        [0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 9.5, 10.5],
    ]
    assert delta.item() == -0.5


# ---------------------------------------------------------------------------------------------------------------
# helpers and errors


@pytest.mark.parametrize("frames", [0, 1, 2, 7, 8, 9, 99, 100, 101, 250, 1000, 3001])
def test_audio_token_count_matches_reference(frames):
    assert audio_token_count(frames) == ref_token_count(frames)
    assert audio_token_count(torch.tensor([frames])).item() == ref_token_count(frames)


def test_next_position_ids_continue_the_prompt():
    p = Prompt().row(("text", 2), ("video", (2, 4, 4), 0.5)).row(("text", 3))
    ids, mask = p.batch()
    pos, delta = rope_index_from_config(reference_models()["thinker_cfg"], ids, mask, **p.media())
    nxt = next_position_ids(delta, mask.sum(-1, keepdim=True), num_new=2)  # (3, B, 2)
    assert nxt.shape == (3, 2, 2)
    assert torch.equal(nxt[:, :, 0], pos.max(-1).values.max(0).values[None].expand(3, -1) + 1)
    assert torch.equal(nxt[:, :, 1] - nxt[:, :, 0], torch.ones(3, 2))
    _, tdelta = text_position_ids(mask)
    assert torch.equal(next_position_ids(tdelta, 4)[0, :, 0], 4 + tdelta[:, 0])


def _call(ids, **kw):
    return rope_index_from_config(reference_models()["thinker_cfg"], torch.tensor([ids]), None, **kw)


def test_errors_are_named_and_actionable():
    img = [[1, 4, 4]]
    with pytest.raises(InputError, match="placeholder counts"):
        _call([1, VS] + [IMAGE] * 3 + [VE], image_grid_thw=img)  # grid needs 4
    with pytest.raises(InputError, match="more image items"):
        _call([VS, IMAGE, VE, VS, IMAGE, VE], image_grid_thw=[[1, 2, 2]])
    with pytest.raises(InputError, match="size"):
        _call([1, 2], image_grid_thw=img)  # grid given for no image
    with pytest.raises(InputError, match="video_second_per_grid"):
        _call([VS] + [VIDEO] * 4 + [VE], video_grid_thw=img)
    with pytest.raises(InputError, match="use_audio_in_video=True"):
        _call([VS, AS, VIDEO, AUDIO, AE, VE], video_grid_thw=[[1, 2, 2]], video_second_per_grid=[1.0],
              audio_seqlens=[1])
    with pytest.raises(InputError, match="not an image"):
        _call([1, VS, 5, VE], image_grid_thw=img)
    with pytest.raises(InputError, match="truncated"):
        _call([1, VS] + [IMAGE] * 4, image_grid_thw=img)
    with pytest.raises(InputError, match="multiples"):
        _call([VS, IMAGE, VE], image_grid_thw=[[1, 3, 2]])
    with pytest.raises(InputError, match="no real tokens"):
        rope_index_from_config(reference_models()["thinker_cfg"], torch.tensor([[VS, IMAGE, VE]]),
                               torch.zeros(1, 3), image_grid_thw=[[1, 2, 2]])
    with pytest.raises(InputError, match="audio feature length"):
        audio_token_count(-3)
    with pytest.raises(InputError, match="not both"):
        _call([AS, AUDIO, AE], image_grid_thw=[], audio_seqlens=[1], audio_feature_lengths=[5])
    with pytest.raises(ConfigError, match="ThinkerConfig or TalkerConfig"):
        rope_index_from_config(object(), torch.tensor([[1]]))


def test_silent_video_with_use_audio_in_video_is_a_plain_video():
    # the processor leaves videos without sound as plain videos even when loading audio from videos
    p = Prompt().row(("text", 1), ("video", (2, 4, 4), 0.5), ("text", 1))
    ids, mask = p.batch()
    m = p.media()
    cfg = reference_models()["thinker_cfg"]
    a = rope_index_from_config(cfg, ids, mask, use_audio_in_video=False, **m)
    b = rope_index_from_config(cfg, ids, mask, use_audio_in_video=True, **m)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------------------------
# property test: random mixed prompts


grids = st.tuples(st.integers(1, 8), st.sampled_from([2, 4, 6]), st.sampled_from([2, 4]))
seconds = st.sampled_from([0.0, 0.25, 0.5, 2 / 3, 1.0, 1.37, 2.0])
frames = st.integers(1, 420)
item = st.one_of(
    st.tuples(st.just("text"), st.integers(1, 4)),
    st.tuples(st.just("image"), grids.map(lambda g: (1, g[1], g[2]))),
    st.tuples(st.just("video"), grids, seconds),
    st.tuples(st.just("audio"), frames),
    st.tuples(st.just("aiv"), grids, seconds, frames),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(item, min_size=1, max_size=5), min_size=1, max_size=2), force_grid=st.booleans())
def test_random_mixed_prompts_match_reference(rows, force_grid):
    aiv = any(k == "aiv" for r in rows for k, *_ in r)
    if aiv:  # the reference handles all-or-none: with audio in video, every video carries its audio
        rows = [[it for it in r if it[0] != "video"] or [("text", 1)] for r in rows]
    if force_grid and not any(k in ("image", "video", "aiv") for r in rows for k, *_ in r):
        rows[0] = rows[0] + [("image", (1, 2, 2))]  # otherwise both sides take the text branch
    p = Prompt()
    for r in rows:
        p.row(*r)
    check(p, use_audio_in_video=aiv)
