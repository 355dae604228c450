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
    # values that parse but make no sense: refused by the field rules of omni.sections, naming the field
    ("zero rope_theta", lambda d: _text(d)["rope_parameters"].update(rope_theta=0),
     ["text_config.rope_parameters.rope_theta must be a positive number, got 0"]),
    ("negative rope_theta (old key)", lambda d: _text(d).update(rope_theta=-5.0),
     ["text_config.rope_theta must be a positive number, got -5.0"]),
    ("boolean as a string", lambda d: _text(d).update(norm_topk_prob="false"),
     ["norm_topk_prob must be true or false, got 'false'", "without quotes"]),
    ("count as a float", lambda d: _text(d).update(decoder_sparse_step=2.5),
     ["decoder_sparse_step must be a positive integer, got 2.5"]),
    ("number as a string", lambda d: _text(d).update(rms_norm_eps="1e-6"), ["rms_norm_eps must be a positive number"]),
    ("zero upsample rate (a decode that never ends)", lambda d: d["code2wav_config"].update(upsample_rates=[8, 0, 4, 3]),
     ["code2wav_config.upsample_rates must be a list of positive integers, got [8, 0, 4, 3]"]),
    ("zero upsampling ratio", lambda d: d["code2wav_config"].update(upsampling_ratios=[2, 0]),
     ["upsampling_ratios must be a list of positive integers"]),
    ("zero merge size", lambda d: d["thinker_config"]["vision_config"].update(spatial_merge_size=0),
     ["vision_config.spatial_merge_size must be a positive integer, got 0"]),
    ("negative window", lambda d: d["thinker_config"]["audio_config"].update(n_window=-50),
     ["audio_config.n_window must be a positive integer, got -50"]),
    ("zero positions per second", lambda d: d["thinker_config"].update(position_id_per_seconds=0),
     ["thinker_config.position_id_per_seconds must be a positive number, got 0"]),
    ("infinite seconds per chunk", lambda d: d["thinker_config"].update(seconds_per_chunk=float("inf")),
     ["seconds_per_chunk must be a positive number"]),
    ("mrope_section of strings", lambda d: _text(d)["rope_parameters"].update(mrope_section=["4", 2, 2]),
     ["mrope_section must be a list of positive integers"]),
    ("token id negative", lambda d: d.update(im_end_token_id=-1),
     ["im_end_token_id must be a non-negative integer, got -1"]),
    ("voices not a table", lambda d: d["talker_config"].update(speaker_id=["ethan"]),
     ["talker_config.speaker_id must be a JSON object, got ['ethan']"]),
    ("voice id past the codec vocabulary", lambda d: d["talker_config"].update(speaker_id={"ethan": 99999}),
     ["speaker_id['ethan'] (99999) must be a codec id below text_config.vocab_size"]),
    ("codec id past the vocabulary", lambda d: d["talker_config"].update(codec_pad_id=5000),
     ["codec_pad_id (5000) must be a codec id below"]),
    ("section given as a number", lambda d: d.update(talker_config=7), ["talker_config: expected a JSON object, got int"]),
    ("absurd nesting", lambda d: d.update(notes=_nested(100)), ["config.notes: nested more than 32 levels deep"]),
    ("null for a number", lambda d: _text(d).update(vocab_size=None), ["vocab_size must be given a value, got null"]),
]


def _nested(depth: int):
    x = 0
    for _ in range(depth):
        x = {"x": x}
    return x


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


def test_absent_or_null_encoder_sections_take_their_defaults():
    d = _tiny()
    d["thinker_config"]["audio_config"] = None
    del d["thinker_config"]["vision_config"]
    cfg = OmniConfig.from_dict(d)
    assert cfg.thinker.audio_config.n_window == 50 and cfg.thinker.vision_config.depth == 27


@pytest.mark.parametrize("overrides, fragments", [
    (dict(enable_audio_output="yes"), ["enable_audio_output must be true or false, got 'yes'"]),
    (dict(thinker_config=5), ["thinker_config: expected a JSON object, got int"]),
    (dict(no_such_field=1), ["unknown field(s) ['no_such_field']"]),
    (dict(im_start_token_id=1.5), ["im_start_token_id must be a non-negative integer, got 1.5"]),
])
def test_preset_overrides_are_checked(overrides, fragments):
    with pytest.raises(ConfigError) as info:
        OmniConfig.from_name("tiny", **overrides)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    nested = OmniConfig.from_name("tiny", talker_config=None)  # a nested section as None (or a dict) is parsed
    assert nested.talker_config is None


def test_deeply_nested_file(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_omni_moe", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ConfigError, match="nested too deeply"):
        OmniConfig.from_pretrained(tmp_path)
