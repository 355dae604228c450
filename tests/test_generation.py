"""Text generation: token-for-token parity with the reference's greedy `generate`, sampling rules, stop rules."""

import pytest
import torch

import omni
from omni.errors import InputError
from omni.sampling import filter_top_k_top_p

from reference import build_reference


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    ref = build_reference(d)
    return ref, omni.load(d, components=("thinker",), quiet=True)


def _reference_greedy(ref, batch, n):
    with torch.no_grad():
        out = ref.thinker.generate(
            **batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    return out[:, batch["input_ids"].shape[1] :]


def test_generate_greedy_matches_reference_batch_with_padding(pair):
    ref, model = pair
    ids = torch.randint(0, 200, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    ids[1, :4], mask[1, :4] = 0, 0
    batch = {"input_ids": ids, "attention_mask": mask}
    want = _reference_greedy(ref, batch, 40)
    got = model.generate(batch, max_new_tokens=40, eos_token_ids=())
    assert torch.equal(want, got)


def test_generate_greedy_matches_reference_single(pair):
    ref, model = pair
    ids = torch.randint(0, 200, (1, 5), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    assert torch.equal(_reference_greedy(ref, batch, 33), model.generate(batch, max_new_tokens=33, eos_token_ids=()))


def test_generate_stops_at_eos_and_pads(pair):
    _, model = pair
    ids = torch.randint(0, 200, (2, 6), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    free = model.generate(batch, max_new_tokens=20, eos_token_ids=())
    eos = int(free[0, 3])  # pretend the 4th token of row 0 is the end token
    out = model.generate(batch, max_new_tokens=20, eos_token_ids=(eos,), pad_token_id=-1)
    row0 = out[0].tolist()
    first = row0.index(eos)
    assert all(t == -1 for t in row0[first + 1 :])
    assert out[0, : first + 1].tolist() == free[0, : first + 1].tolist()


def test_generate_seeded_sampling_is_deterministic(pair):
    _, model = pair
    ids = torch.randint(0, 200, (2, 6), generator=torch.Generator().manual_seed(3))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    opts = dict(max_new_tokens=16, do_sample=True, temperature=1.3, top_k=50, top_p=0.9, seed=7, eos_token_ids=())
    a, b = model.generate(batch, **opts), model.generate(batch, **opts)
    assert torch.equal(a, b)
    c = model.generate(batch, **{**opts, "seed": 8})
    assert not torch.equal(a, c)


def test_generate_min_and_zero_new_tokens(pair):
    _, model = pair
    ids = torch.randint(0, 200, (1, 6), generator=torch.Generator().manual_seed(4))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    first = int(model.generate(batch, max_new_tokens=1, eos_token_ids=())[0, 0])
    out = model.generate(batch, max_new_tokens=5, min_new_tokens=3, eos_token_ids=(first,))
    assert out.shape[1] >= 3 and first not in out[0, :3].tolist()
    assert model.generate(batch, max_new_tokens=0).shape == (1, 0)


def test_generate_rejects_bad_requests(pair):
    _, model = pair
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(InputError, match="exceeds the model's context"):
        model.generate({"input_ids": ids}, max_new_tokens=10**6)
    with pytest.raises(InputError, match="max_new_tokens"):
        model.generate({"input_ids": ids}, max_new_tokens=-1)
    with pytest.raises(InputError, match="non-empty prompt"):
        model.generate({"input_ids": torch.zeros(1, 0, dtype=torch.long)})
    with pytest.raises(InputError, match="unknown generation option"):
        model.generate({"input_ids": ids}, beams=4)
    with pytest.raises(InputError, match="temperature"):
        model.generate({"input_ids": ids}, do_sample=True, temperature=0)


def test_top_k_top_p_filtering():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_top_k_top_p(logits, top_k=2)).tolist() == [[True, False, False, True]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = ~torch.isinf(filter_top_k_top_p(probs, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert (~torch.isinf(filter_top_k_top_p(probs, top_p=0.01))).sum() == 1


# -- multimodal prompts: greedy ids identical to the reference's generate --------------------------------------------


def _multimodal_batch(prompt, seed=0):
    """The processor-layout batch for a test_positions.Prompt: random patches and log-mel frames of the right sizes."""
    from reference import AUDIO, VISION

    g = torch.Generator().manual_seed(seed)
    ids, mask = prompt.batch()
    m = prompt.media()
    patch = 3 * VISION["temporal_patch_size"] * VISION["patch_size"] ** 2
    batch = {"input_ids": ids, "attention_mask": mask}
    if m["image_grid_thw"] is not None:
        batch["image_grid_thw"] = m["image_grid_thw"]
        batch["pixel_values"] = torch.randn(int(m["image_grid_thw"].prod(-1).sum()), patch, generator=g)
    if m["video_grid_thw"] is not None:
        batch["video_grid_thw"] = m["video_grid_thw"]
        batch["video_second_per_grid"] = m["video_second_per_grid"]
        batch["pixel_values_videos"] = torch.randn(int(m["video_grid_thw"].prod(-1).sum()), patch, generator=g)
    if m["audio_feature_lengths"] is not None:
        frames = m["audio_feature_lengths"]
        batch["input_features"] = torch.randn(len(frames), AUDIO["num_mel_bins"], int(frames.max()), generator=g)
        batch["feature_attention_mask"] = (torch.arange(int(frames.max()))[None] < frames[:, None]).long()
    return batch


LAYOUTS = {
    "image": lambda P: P().row(("text", 3), ("image", (1, 4, 6)), ("text", 2)),
    "audio": lambda P: P().row(("text", 2), ("audio", 130), ("text", 3)),
    "video": lambda P: P().row(("text", 1), ("video", (3, 4, 4), 0.75), ("text", 2)),
    "audio_in_video": lambda P: P().row(("text", 2), ("aiv", (2, 4, 4), 1.0, 90), ("text", 2)),
    "mixed_batch_padded": lambda P: P().row(("text", 2), ("image", (1, 4, 4)), ("audio", 60), ("text", 1))
    .row(("text", 9), ("video", (2, 4, 8), 0.5), ("text", 3)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_generate_greedy_matches_reference_multimodal(pair, layout):
    from test_positions import Prompt

    ref, model = pair
    batch = _multimodal_batch(LAYOUTS[layout](Prompt))
    aiv = layout == "audio_in_video"
    want = _reference_greedy(ref, {**batch, "use_audio_in_video": aiv}, 32)
    got = model.generate({**batch, "use_audio_in_video": aiv}, max_new_tokens=32, eos_token_ids=())
    assert torch.equal(got, want)
    if aiv:  # the keyword works on a batch dict too
        assert torch.equal(model.generate(batch, max_new_tokens=32, eos_token_ids=(), use_audio_in_video=True), want)


def test_stream_speak_yields_text_then_the_same_speech_as_generate(tmp_path):
    """On the tiny demo checkpoint (it ships a tokenizer): stream(speak=True) = generate(speak=True), piece by piece.
    generate(speak=True) itself is checked against the reference in tests/test_talker.py."""
    from omni.demo import build_tiny_checkpoint

    model = omni.load(build_tiny_checkpoint(str(tmp_path / "tiny")), quiet=True)
    conv = [{"role": "user", "content": "say something"}]
    opts = dict(max_new_tokens=5, seed=3, voice="aiden", speech={"max_frames": 14})
    full = model.generate(conv, speak=True, **opts)
    pieces = list(model.stream(conv, speak=True, audio_chunk_frames=4, **opts))
    n_text = next(i for i, p in enumerate(pieces) if torch.is_tensor(p))
    assert all(isinstance(p, str) for p in pieces[:n_text]) and all(torch.is_tensor(p) for p in pieces[n_text:])
    assert "".join(pieces[:n_text]) == full.text[0]
    audio = torch.cat(pieces[n_text:])
    assert len(pieces) - n_text >= 3  # 14 frames in chunks of 4: speech arrives before the Talker is done
    assert audio.shape[0] == int(full.audio_lengths[0]) and (audio - full.audio[0, 0]).abs().max() < 1e-4
    assert full.codes.shape == (1, model.config.code2wav_config.num_quantizers, 14)


@pytest.mark.parametrize("backend", ["eager", pytest.param(True, marks=pytest.mark.slow)])
def test_compiled_decode_equals_eager_decode(pair, backend):
    """generate(compile=...) runs every decode step through one fullgraph graph over the static cache."""
    ref, model = pair
    ids = torch.randint(0, 200, (2, 7), generator=torch.Generator().manual_seed(9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    batch = {"input_ids": ids, "attention_mask": mask}
    torch._dynamo.reset()
    eager = model.generate(batch, max_new_tokens=12, eos_token_ids=())
    compiled = model.generate(batch, max_new_tokens=12, eos_token_ids=(), compile=backend)
    assert torch.equal(compiled, eager)
    assert torch.equal(compiled, _reference_greedy(ref, batch, 12))
