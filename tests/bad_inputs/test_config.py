"""Bad config.json files: a ConfigError that names the field (with its path in the file) and what it must be,
raised before any weight is read; the process can go on to build a good config."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import omni
from omni.config import PRESETS, OmniConfig
from omni.errors import ConfigError
from omni.model import OmniModel


def _tiny() -> dict:
    return copy.deepcopy(PRESETS["tiny"])


def _text(d: dict) -> dict:
    return d["thinker_config"]["text_config"]


def _build(d: dict) -> None:
    """Parse and build on the meta device (where any remaining config error would surface)."""
    with torch.device("meta"):
        OmniModel(OmniConfig.from_dict(d))


CASES = [  # (id, change to the tiny preset's dict, message fragments)
    ("unknown model_type", lambda d: d.update(model_type="llama"), ["'llama' is not supported", "qwen3_omni_moe"]),
    ("missing model_type", lambda d: d.pop("model_type"), ["no `model_type`", "official Qwen-Omni config.json"]),
    ("nested model_type", lambda d: _text(d).update(model_type="qwen2"),
     ["text_config", "'qwen2'", "different model"]),
    ("heads do not divide width", lambda d: _text(d).update(num_attention_heads=6, head_dim=None),
     ["hidden_size (64) is not divisible by num_attention_heads (6)", "set head_dim"]),
    ("kv heads do not divide heads", lambda d: _text(d).update(num_key_value_heads=3),
     ["num_attention_heads (4) must be a multiple of num_key_value_heads (3)"]),
    ("top-k above experts", lambda d: _text(d).update(num_experts_per_tok=9),
     ["num_experts_per_tok (9) must be in 1..num_experts (8)"]),
    ("top-k zero", lambda d: _text(d).update(num_experts_per_tok=0),
     ["num_experts_per_tok must be a positive integer, got 0"]),
    ("negative experts", lambda d: _text(d).update(num_experts=-2), ["num_experts must be 0 (dense)"]),
    ("odd head_dim", lambda d: _text(d).update(head_dim=15, rope_parameters={"rope_theta": 1e6}),
     ["head_dim must be even"]),
    ("mrope sections", lambda d: _text(d)["rope_parameters"].update(mrope_section=[4, 2, 1]),
     ["mrope_section [4, 2, 1] must sum to head_dim/2 = 8"]),
    ("width is a string", lambda d: _text(d).update(hidden_size="64"),
     ["text_config.hidden_size must be a positive integer, got '64'"]),
    ("zero layers", lambda d: _text(d).update(num_hidden_layers=0), ["num_hidden_layers must be a positive integer"]),
    ("negative eps", lambda d: _text(d).update(rms_norm_eps=-1e-6), ["rms_norm_eps must be a positive number"]),
    ("other activation", lambda d: _text(d).update(hidden_act="gelu"), ["hidden_act is 'gelu'", "'silu'"]),
    ("rope_parameters not an object", lambda d: _text(d).update(rope_parameters=1e6),
     ["rope_parameters must be a JSON object"]),
    ("mlp_only_layers not a list", lambda d: _text(d).update(mlp_only_layers=3), ["mlp_only_layers must be a list"]),
    ("text_config not an object", lambda d: d["thinker_config"].update(text_config=[1, 2]),
     ["text_config: expected a JSON object, got list"]),
    ("no thinker", lambda d: d.pop("thinker_config"), ["missing required field(s) ['thinker_config']"]),
    ("vision heads", lambda d: d["thinker_config"]["vision_config"].update(num_heads=5),
     ["vision_config: hidden_size 64 not divisible by num_heads 5"]),
    ("audio heads", lambda d: d["thinker_config"]["audio_config"].update(encoder_attention_heads=3),
     ["audio_config: d_model 64 not divisible by heads 3"]),
    ("deepstack index past depth", lambda d: d["thinker_config"]["vision_config"].update(deepstack_visual_indexes=[5]),
     ["deepstack_visual_indexes [5] are outside 0..depth-1 (depth 3)"]),
    ("talker width", lambda d: d["talker_config"].update(thinker_hidden_size=32),
     ["thinker_hidden_size (32) must equal", "hidden_size (64)"]),
    ("talker layer", lambda d: d["talker_config"].update(accept_hidden_layer=7),
     ["accept_hidden_layer (7) must be in 0..4"]),
    ("talker top-k", lambda d: d["talker_config"]["text_config"].update(num_experts_per_tok=20),
     ["talker_config.text_config", "num_experts_per_tok (20)"]),
    ("code2wav heads", lambda d: d["code2wav_config"].update(num_attention_heads=6),
     ["code2wav_config", "multiple of num_attention_heads (6)"]),
]


@pytest.mark.parametrize("change, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_impossible_config(change, fragments):
    d = _tiny()
    change(d)
    with pytest.raises(ConfigError) as info:
        _build(d)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    _build(_tiny())  # healthy: the good config still parses and builds


def test_config_file_is_not_json(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_omni_moe",')
    with pytest.raises(ConfigError, match="config.json is not valid JSON"):
        OmniConfig.from_pretrained(tmp_path)


def test_config_file_is_a_list(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        OmniConfig.from_pretrained(tmp_path)


def test_load_stops_at_the_config(tiny_dir, tmp_path):
    """omni.load reports the config problem (file and field), not a shape error from the weights."""
    import shutil

    d = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["thinker_config"]["text_config"]["num_experts_per_tok"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config.json.thinker_config.text_config: num_experts_per_tok \(99\)"):
        omni.load(d, quiet=True)
    assert omni.load(tiny_dir, components=("thinker",), quiet=True).thinker is not None
