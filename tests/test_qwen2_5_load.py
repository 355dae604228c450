"""A Qwen2.5-Omni checkpoint directory with its tokenizer files: omni.load builds the release's Thinker and
Processor (Qwen2.5 token strings, rules from config.json), and a processed multimodal batch runs and generates."""

import json
import os

import numpy as np
import pytest
import torch

import omni
from omni.config import OmniConfig
from omni.demo import synthetic_media, tiny_tokenizer_files
from omni.model import OmniModel

from reference_qwen2_5 import build_reference

# the Qwen2.5-Omni strings of the placeholders and markers, and the tokenizer_config.json keys naming them
QWEN2_5_TOKENS = {
    "<|audio_start|>": ("<|audio_bos|>", "audio_bos_token"), "<|audio_end|>": ("<|audio_eos|>", "audio_eos_token"),
    "<|audio_pad|>": ("<|AUDIO|>", "audio_token"), "<|image_pad|>": ("<|IMAGE|>", "image_token"),
    "<|video_pad|>": ("<|VIDEO|>", "video_token"), "<|vision_start|>": ("<|vision_bos|>", "vision_bos_token"),
    "<|vision_end|>": ("<|vision_eos|>", "vision_eos_token"),
}


def qwen2_5_tokenizer_files(directory):
    """The tiny byte-level tokenizer of omni.demo with the Qwen2.5-Omni special-token strings (same ids)."""
    tiny_tokenizer_files(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = os.path.join(directory, name)
        text = open(path, encoding="utf-8").read()
        for old, (new, _) in QWEN2_5_TOKENS.items():
            text = text.replace(json.dumps(old), json.dumps(new))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    path = os.path.join(directory, "tokenizer_config.json")
    config = json.load(open(path, encoding="utf-8"))
    config.update({key: new for new, key in QWEN2_5_TOKENS.values()})
    json.dump(config, open(path, "w", encoding="utf-8"))


def test_load_with_processor_and_generate(tmp_path):
    torch.manual_seed(0)
    omni.save(OmniModel(OmniConfig.from_name("tiny-qwen2.5")), tmp_path)
    qwen2_5_tokenizer_files(str(tmp_path))
    model = omni.load(tmp_path, quiet=True)  # default components: what the release's config describes
    assert model.components == ("thinker",)
    proc = model.processor
    assert proc.model_type == "qwen2_5_omni" and proc.position_id_per_seconds == 25
    assert (proc.audio_token, proc.image_token, proc.audio_start) == ("<|AUDIO|>", "<|IMAGE|>", "<|audio_bos|>")

    image, audio, video = synthetic_media()
    prompt = ("<|im_start|>user\n<|vision_bos|><|IMAGE|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>"
              "<|vision_bos|><|VIDEO|><|vision_eos|>hi<|im_end|>\n<|im_start|>assistant\n")
    batch = proc(text=[prompt, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"], images=[image],
                 audio=[audio], videos=[np.concatenate([video, video])], video_audio=[np.tile(audio, 3)],
                 use_audio_in_video=True)
    batch["use_audio_in_video"] = True  # the positions follow the layout the processor chose
    # 14-pixel patches; audio padded to the 300 s of the release's feature extractor (chunk_length 300)
    assert batch["pixel_values"].shape[1] == 3 * 2 * 14 * 14 and batch["input_features"].shape[-1] == 30000
    with torch.no_grad():
        out = model.thinker(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.logits).all()
    tokens = model.generate(batch, max_new_tokens=4, eos_token_ids=())
    assert tokens.shape == (2, 4)


def test_default_components_are_what_the_checkpoint_holds(tmp_path):
    # a thinker-only checkpoint whose config.json still describes the speech side (as omni.save and the reference
    # write it) loads as a thinker; asking for the missing parts is still an error
    build_reference(tmp_path / "q25")
    assert omni.load(tmp_path / "q25", quiet=True).components == ("thinker",)
    with pytest.raises(omni.CheckpointError, match="missing tensors"):
        omni.load(tmp_path / "q25", components=("thinker", "talker"), quiet=True)
    omni.save(OmniModel(OmniConfig.from_name("tiny"), components=("thinker",)), tmp_path / "q3")
    assert omni.load(tmp_path / "q3", quiet=True).components == ("thinker",)
