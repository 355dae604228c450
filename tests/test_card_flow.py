"""omni.Processor against the model cards' real pipeline, on real media files: `qwen_omni_utils.process_mm_info`, then
the release's official processor with its default (torchvision) image and video processors.

Media are made here: espeak-ng speech at 16 / 22.05 / 44.1 kHz (stereo too) and 36 s long, scikit-image's
photographs, ffmpeg-made h264/aac mp4 at 25 and 29.97 fps, landscape and portrait. Both releases, with and without
`use_audio_in_video`, single and batched. Ids, masks and grids must be equal; pixels within 1e-4 (they agree to
~1e-7: the image path rounds exactly as torchvision, the video path is the same float arithmetic); audio features
within 1e-4, except audio decoded from a video container (5e-3: PyAV's bundled ffmpeg and the system ffmpeg that
audioread runs decode AAC one 16-bit level apart in a few samples).

Needs torch 2.14.1 + torchvision 0.29.1, torchcodec, qwen-omni-utils, librosa, scikit-image, ffmpeg and espeak-ng
(.ci/run installs them); skipped without them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

for module in ("torchvision", "torchcodec", "qwen_omni_utils", "librosa", "skimage"):
    pytest.importorskip(module)
if not (shutil.which("ffmpeg") and shutil.which("espeak-ng")):
    pytest.skip("needs ffmpeg and espeak-ng", allow_module_level=True)

import omni  # noqa: E402
from omni.media.chat import BUILTIN_TEMPLATE  # noqa: E402
from omni.media.text import TextTokenizer  # noqa: E402

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
VIDEO_AUDIO_TOLERANCE = 5e-3
RELEASES = {"qwen3_omni_moe": (16, 32, [0.5] * 3, [0.5] * 3), "qwen2_5_omni": (14, 28, CLIP_MEAN, CLIP_STD)}


def _run(*args):
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import skimage.data
    from PIL import Image

    d = tmp_path_factory.mktemp("media")
    say = "Hello. This is a question about the picture: what colour is the cat, and where does it sit?"
    _run("espeak-ng", "-w", str(d / "speech22.wav"), say)
    _run("ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "speech22.wav"), "-ar", "16000", str(d / "speech16.wav"))
    _run("ffmpeg", "-loglevel", "error", "-y", "-i", str(d / "speech22.wav"), "-ar", "44100", "-ac", "2",
         str(d / "speech44s.wav"))
    _run("ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "7", "-i", str(d / "speech22.wav"), "-t", "36",
         str(d / "speech36s.wav"))  # longer than 30 s
    for name, size, rate, seconds, tone in (("v25", "320x240", "25", "3.3", 440), ("v2997p", "240x426",
                                                                                      "30000/1001", "4", 300)):
        _run("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", "-f",
             "lavfi", "-i", f"sine=frequency={tone}:sample_rate=44100", "-t", seconds, "-c:v", "libx264", "-pix_fmt",
             "yuv420p", "-c:a", "aac", "-shortest", str(d / f"{name}.mp4"))
    Image.fromarray(skimage.data.chelsea()).save(d / "chelsea.png")  # 451 x 300
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skimage.data.coffee()[:, 150:450]).save(d / "portrait.png")  # 300 x 400
    return {p.stem: str(p) for p in d.iterdir()}


@pytest.fixture(scope="module")
def tokenizer_dir(qwen_tokenizer_dir):
    return qwen_tokenizer_dir


def official(tokenizer_dir, model_type):
    from transformers import AutoTokenizer, Qwen2_5OmniProcessor, Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    patch, factor, mean, std = RELEASES[model_type]
    common = dict(patch_size=patch, temporal_patch_size=2, merge_size=2, image_mean=mean, image_std=std)
    image = Qwen2VLImageProcessor(**common, size={"shortest_edge": 3136, "longest_edge": 12845056})
    video = Qwen2VLVideoProcessor(**common, size={"shortest_edge": 128 * factor**2, "longest_edge": 768 * factor**2})
    audio = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300, n_fft=400)
    cls = Qwen3OmniMoeProcessor if model_type == "qwen3_omni_moe" else Qwen2_5OmniProcessor
    return cls(image_processor=image, video_processor=video, feature_extractor=audio,
               tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir), chat_template=BUILTIN_TEMPLATE)


def card_flow(processor, conversations, use_audio_in_video=False):
    """What the model cards run: process_mm_info, then the processor (transformers 5.23 wants to be told which
    audio clips come from which video)."""
    from qwen_omni_utils import process_mm_info

    text = processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
    audios, images, videos = process_mm_info(conversations, use_audio_in_video=use_audio_in_video)
    kwargs = {}
    if use_audio_in_video:
        n_videos = sum(item["type"] == "video" for conv in conversations for m in conv for item in m["content"]
                       if isinstance(m["content"], list))
        kwargs = dict(load_audio_from_video=True, audio_from_video_indices=list(range(n_videos)))
    return processor(text=text, audio=audios, images=images, videos=videos, return_tensors="pt", padding=True,
                     **kwargs)


def ours(tokenizer_dir, model_type, **options):
    return omni.Processor(TextTokenizer.from_pretrained(tokenizer_dir), model_type=model_type,
                          chat_template=BUILTIN_TEMPLATE, **options)


def assert_same(got: dict, want, feature_tolerance: float = 1e-4):
    for key, value in got.items():
        ref = torch.as_tensor(want[key])
        assert value.shape == ref.shape, (key, tuple(value.shape), tuple(ref.shape))
        if key == "input_features":
            valid = torch.as_tensor(want["feature_attention_mask"]).bool()[:, None].expand_as(ref)
            assert (value - ref)[valid].abs().max().item() <= feature_tolerance, key
        elif value.is_floating_point():
            assert (value - ref.to(value.dtype)).abs().max().item() <= 1e-4, key
        else:
            assert torch.equal(value, ref.to(value.dtype)), key


def conversation(*items, text="What is in it?"):
    return [{"role": "user", "content": [*items, {"type": "text", "text": text}]}]


CASES = {  # one user turn each
    "photo": lambda m: conversation({"type": "image", "image": m["chelsea"]}),
    "portrait photo": lambda m: conversation({"type": "image", "image": m["portrait"]}),
    "speech 16k": lambda m: conversation({"type": "audio", "audio": m["speech16"]}),
    "speech 22.05k": lambda m: conversation({"type": "audio", "audio": m["speech22"]}),
    "speech 44.1k stereo": lambda m: conversation({"type": "audio", "audio": m["speech44s"]}),
    "speech 36 s": lambda m: conversation({"type": "audio", "audio": m["speech36s"]}),
    "video 25 fps": lambda m: conversation({"type": "video", "video": m["v25"]}),
    "portrait video 29.97 fps": lambda m: conversation({"type": "video", "video": m["v2997p"]}),
}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(RELEASES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_item_matches_the_card(media, tokenizer_dir, model_type, case):
    conv = CASES[case](media)
    assert_same(ours(tokenizer_dir, model_type)([conv]), card_flow(official(tokenizer_dir, model_type), [conv]))


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(RELEASES))
def test_videos_with_their_sound_match_the_card(media, tokenizer_dir, model_type):
    conv = conversation({"type": "video", "video": media["v25"]}, {"type": "video", "video": media["v2997p"]})
    want = card_flow(official(tokenizer_dir, model_type), [conv], use_audio_in_video=True)
    assert_same(ours(tokenizer_dir, model_type)([conv], use_audio_in_video=True), want, VIDEO_AUDIO_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(RELEASES))
def test_a_mixed_batch_matches_the_card(media, tokenizer_dir, model_type):
    convs = [conversation({"type": "image", "image": media["astronaut"]},
                          {"type": "audio", "audio": media["speech44s"]}),
             conversation({"type": "video", "video": media["v2997p"]}, text="And this?")]
    assert_same(ours(tokenizer_dir, model_type)(convs), card_flow(official(tokenizer_dir, model_type), convs))


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(RELEASES))
def test_process_mm_info_outputs_are_accepted_as_they_are(media, tokenizer_dir, model_type):
    """The outputs of process_mm_info (float 0..255 frame tensors, PIL images, 16 kHz numpy audio) give omni the
    batch the card's flow gives: the two pipelines can be mixed."""
    from qwen_omni_utils import process_mm_info

    conv = conversation({"type": "image", "image": media["chelsea"]}, {"type": "video", "video": media["v25"]},
                        {"type": "audio", "audio": media["speech44s"]})
    ref = official(tokenizer_dir, model_type)
    audios, images, videos = process_mm_info(conv, use_audio_in_video=False)
    assert videos[0].dtype == torch.float32 and float(videos[0].max()) > 1  # 0..255 floats
    text = [ref.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)]
    got = ours(tokenizer_dir, model_type)(text=text, images=images, videos=videos, audio=audios)
    assert_same(got, card_flow(ref, [conv]))


@pytest.mark.slow
def test_the_bare_processor_flow_is_an_option(media, tokenizer_dir):
    """preprocess="processor": what the official processor alone makes of a file (every frame, one resize)."""
    conv = conversation({"type": "video", "video": media["v25"]})
    card = ours(tokenizer_dir, "qwen3_omni_moe")([conv])
    bare = ours(tokenizer_dir, "qwen3_omni_moe", preprocess="processor")([conv])
    assert card["video_grid_thw"].tolist() == [[3, 20, 28]]  # 6 frames at 2 fps: 420 tokens, as the card
    assert bare["video_grid_thw"][0, 0] == 42  # 83 frames (padded to 84): 5,880 tokens


def test_generate_command_builds_the_card_prompt(media, tmp_path):
    """`omni generate --video clip.mp4` on the 3.3 s clip: the prompt holds the card's 420 video tokens."""
    from omni.demo import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(str(tmp_path / "tiny"))
    model = omni.load(ckpt, components=("thinker",), quiet=True)
    batch = model.processor([conversation({"type": "video", "video": media["v25"]})])
    assert int((batch["input_ids"] == model.config.thinker_config.video_token_id).sum()) == 420
    r = subprocess.run([sys.executable, "-m", "omni.cli", "generate", "--model", ckpt, "--prompt", "hi", "--video",
                        media["v25"], "--max-new-tokens", "1", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
