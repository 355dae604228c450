"""Qwen2.5-Omni Thinker vs the reference (Qwen2_5OmniThinkerForConditionalGeneration), loaded with omni.load:
position ids (get_rope_index), logits on mixed batches with left padding, and greedy generation."""

import pytest
import torch

import omni
from omni.models.qwen2_5_omni.config import Qwen25ThinkerConfig
from omni.models.qwen2_5_omni.audio import pooled_audio_token_count

from reference_qwen2_5 import IDS, build_reference

AUDIO, IMAGE, VIDEO = IDS["audio_token_index"], IDS["image_token_index"], IDS["video_token_index"]
AS, AE, VS, VE = (IDS[k] for k in ("audio_start_token_id", "audio_end_token_id", "vision_start_token_id",
                                   "vision_end_token_id"))
PATCH_DIM, MELS, MERGE = 3 * 2 * 4 * 4, 16, 2
PER_SECOND, CHUNK_UNITS = 25, 50


class Prompt:
    """Builds one row of tokens and collects the media it refers to (in prompt order)."""

    def __init__(self, gen):
        self.gen, self.tokens, self.images, self.videos, self.seconds, self.audios = gen, [], [], [], [], []

    def text(self, n):
        self.tokens += torch.randint(0, 190, (n,), generator=self.gen).tolist()
        return self

    def image(self, t, h, w):
        self.images.append((t, h, w))
        self.tokens += [VS] + [IMAGE] * (t * h * w // MERGE**2) + [VE]
        return self

    def audio(self, frames):
        self.audios.append(frames)
        self.tokens += [AS] + [AUDIO] * int(pooled_audio_token_count(frames)) + [AE]
        return self

    def video(self, t, h, w, seconds, frames=None):
        """A video; with `frames` its audio track rides inside, interleaved in 2 s chunks as the processor does."""
        self.videos.append((t, h, w))
        self.seconds.append(seconds)
        per_frame = h * w // MERGE**2
        if frames is None:
            self.tokens += [VS] + [VIDEO] * (t * per_frame) + [VE]
            return self
        self.audios.append(frames)
        timed = [(int(k * seconds * PER_SECOND) // CHUNK_UNITS, 0, VIDEO) for k in range(t) for _ in range(per_frame)]
        timed += [(i // CHUNK_UNITS, 1, AUDIO) for i in range(int(pooled_audio_token_count(frames)))]
        self.tokens += [VS, AS] + [tok for *_, tok in sorted(timed, key=lambda x: x[:2])] + [AE, VE]
        return self


def batch_of(rows, use_audio_in_video=False, seed=0):
    """The processor-layout batch of several rows, left padded."""
    gen = torch.Generator().manual_seed(seed)
    width = max(len(r.tokens) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for b, r in enumerate(rows):
        input_ids[b, width - len(r.tokens):] = torch.tensor(r.tokens)
        mask[b, width - len(r.tokens):] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask, "use_audio_in_video": use_audio_in_video}
    images = [g for r in rows for g in r.images]
    videos = [g for r in rows for g in r.videos]
    audios = [n for r in rows for n in r.audios]
    if images:
        batch["image_grid_thw"] = torch.tensor(images)
        batch["pixel_values"] = torch.randn(int(batch["image_grid_thw"].prod(-1).sum()), PATCH_DIM, generator=gen)
    if videos:
        batch["video_grid_thw"] = torch.tensor(videos)
        batch["pixel_values_videos"] = torch.randn(int(batch["video_grid_thw"].prod(-1).sum()), PATCH_DIM,
                                                   generator=gen)
        batch["video_second_per_grid"] = torch.tensor([s for r in rows for s in r.seconds])
    if audios:
        longest = max(audios) + 5
        batch["input_features"] = torch.randn(len(audios), MELS, longest, generator=gen)
        batch["feature_attention_mask"] = (torch.arange(longest)[None] < torch.tensor(audios)[:, None]).long()
    return batch


def mixed_batch(seed=0):
    """Text + image + audio + video over two left-padded rows."""
    gen = torch.Generator().manual_seed(seed)
    rows = [Prompt(gen).text(3).image(1, 4, 6).text(1).audio(67).text(2).video(3, 4, 4, 1.0).text(2),
            Prompt(gen).text(2).audio(45).image(1, 6, 4).text(3)]
    return batch_of(rows, seed=seed)


def audio_in_video_batch(seed=1):
    """Videos carrying their audio (2 s chunk interleaving, fractional seconds per grid) plus an image / audio."""
    gen = torch.Generator().manual_seed(seed)
    rows = [Prompt(gen).text(2).video(3, 4, 4, 1.0, frames=230).text(1).image(1, 4, 4).text(2),
            Prompt(gen).text(1).video(4, 4, 6, 0.7, frames=150).audio(30).text(1)]
    return batch_of(rows, use_audio_in_video=True, seed=seed)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    directory = tmp_path_factory.mktemp("q25thinker")
    ref = build_reference(directory)
    model = omni.load(directory, components=("thinker",), quiet=True)
    assert isinstance(model.thinker.cfg, Qwen25ThinkerConfig)
    return ref.thinker, model


def _reference_positions(ref, batch):
    fam = batch.get("feature_attention_mask")
    return ref.model.get_rope_index(
        batch["input_ids"], batch.get("image_grid_thw"), batch.get("video_grid_thw"), batch["attention_mask"],
        batch["use_audio_in_video"], fam.sum(-1) if fam is not None else None, batch.get("video_second_per_grid"))


@pytest.mark.parametrize("make", [mixed_batch, audio_in_video_batch])
def test_positions_match_get_rope_index(pair, make):
    ref, model = pair
    batch = make()
    want_pos, want_delta = _reference_positions(ref, batch)
    got_pos, got_delta = model.thinker.positions(
        batch["input_ids"], batch["attention_mask"], batch.get("image_grid_thw"), batch.get("video_grid_thw"),
        batch.get("video_second_per_grid"), batch.get("feature_attention_mask"), batch["use_audio_in_video"])
    assert torch.equal(got_pos, want_pos.float()) and torch.equal(got_delta, want_delta.float())


def test_positions_of_one_token_chunks(pair):
    # 2.5 s per grid: the time row jumps 62 units per frame, so chunk borders are crossed two at a time and the
    # reference leaves one-token chunks behind, which changes the interleaving order
    ref, _ = pair
    gen = torch.Generator().manual_seed(3)
    batch = batch_of([Prompt(gen).text(1).video(4, 4, 4, 2.5, frames=500).text(1)], use_audio_in_video=True)
    want_pos, want_delta = _reference_positions(ref, batch)
    cfg = pair[1].thinker.cfg
    got_pos, got_delta = omni.positions.rope_index_from_config(
        cfg, batch["input_ids"], batch["attention_mask"], image_grid_thw=None, video_grid_thw=batch["video_grid_thw"],
        video_second_per_grid=batch["video_second_per_grid"], use_audio_in_video=True,
        audio_feature_lengths=batch["feature_attention_mask"].sum(-1))
    assert torch.equal(got_pos, want_pos.float()) and torch.equal(got_delta, want_delta.float())


@pytest.mark.parametrize("make", [mixed_batch, audio_in_video_batch])
def test_logits_match_on_mixed_batches(pair, make):
    ref, model = pair
    batch = make()
    with torch.no_grad():
        want = ref(**batch).logits
        got = model.thinker(**batch).logits
    real = batch["attention_mask"].bool()
    diff = (got - want)[real].abs().max().item()
    assert diff <= 1e-4, diff


def test_text_only_logits(pair):
    ref, model = pair
    ids = torch.randint(0, 190, (2, 9), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
        got = model.thinker(input_ids=ids, attention_mask=mask).logits
    assert (got - want)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("make", [mixed_batch, audio_in_video_batch])
def test_greedy_generation_is_identical(pair, make):
    ref, model = pair
    batch = make(seed=7)
    n = 16
    with torch.no_grad():
        want = ref.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False)[:, -n:]
    got = model.generate(batch, max_new_tokens=n, do_sample=False, eos_token_ids=())
    assert got.shape == (2, n)
    assert torch.equal(got, want), (got, want)


def test_save_round_trip_is_lossless(pair, tmp_path):
    _, model = pair
    omni.save(model, tmp_path)
    again = omni.load(tmp_path, components=("thinker",), quiet=True)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
