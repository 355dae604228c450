import json

import pytest

import omni
from omni.config import OmniConfig
from omni.errors import ConfigError

from reference import tiny_config_dict


def _official_dict(tmp_path):
    from transformers import Qwen3OmniMoeConfig

    Qwen3OmniMoeConfig(**tiny_config_dict()).save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


def test_config_round_trip_is_lossless(tmp_path):
    d = _official_dict(tmp_path)
    cfg = OmniConfig.from_pretrained(tmp_path)
    assert cfg.to_dict() == d
    assert cfg.thinker.text_config.dim_head == 12
    assert cfg.talker.text_config.num_experts == 4  # written as `num_local_experts` by transformers
    assert cfg.thinker.text_config.mrope_section == [2, 2, 2]


def test_config_keeps_unknown_keys(tmp_path):
    d = _official_dict(tmp_path)
    d["thinker_config"]["text_config"]["some_future_flag"] = {"x": 1}
    d["brand_new_top_level"] = 3
    cfg = OmniConfig.from_dict(d)
    out = cfg.to_dict()
    assert out["thinker_config"]["text_config"]["some_future_flag"] == {"x": 1}
    assert out["brand_new_top_level"] == 3


def test_config_missing_required_field(tmp_path):
    d = _official_dict(tmp_path)
    del d["thinker_config"]["text_config"]["hidden_size"]
    with pytest.raises(ConfigError, match="hidden_size"):
        OmniConfig.from_dict(d)


@pytest.mark.parametrize("model_type", ["llama", None])
def test_config_wrong_model_type(tmp_path, model_type):
    d = _official_dict(tmp_path)
    if model_type is None:
        del d["model_type"]
    else:
        d["model_type"] = model_type
    with pytest.raises(ConfigError, match="model_type"):
        OmniConfig.from_dict(d)


def test_config_wrong_nested_model_type(tmp_path):
    d = _official_dict(tmp_path)
    d["thinker_config"]["audio_config"]["model_type"] = "whisper"
    with pytest.raises(ConfigError, match="audio_config"):
        OmniConfig.from_dict(d)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"num_attention_heads": 3}, "multiple of num_key_value_heads"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"head_dim": 16}, "mrope_section"),
    ],
)
def test_config_impossible_values(tmp_path, change, match):
    d = _official_dict(tmp_path)
    d["thinker_config"]["text_config"].update(change)
    with pytest.raises(ConfigError, match=match):
        OmniConfig.from_dict(d)


def test_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        OmniConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="no config.json"):
        OmniConfig.from_pretrained(tmp_path / "nowhere")


def test_presets():
    full = OmniConfig.from_name("qwen3-omni-30b-a3b")
    t = full.thinker.text_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_experts, t.num_experts_per_tok) == (2048, 48, 128, 8)
    assert full.talker.text_config.num_experts_per_tok == 6
    tiny = OmniConfig.from_name("tiny")
    assert tiny.thinker.audio_config.n_window == 50
    assert set(omni.PRESETS) >= {"tiny", "qwen3-omni-30b-a3b"}
    with pytest.raises(ConfigError, match="unknown preset"):
        OmniConfig.from_name("gpt-5")


def test_presets_are_accepted_by_the_reference():
    """The preset dicts are valid official config.json contents (the reference parses them to the same numbers)."""
    from transformers import Qwen3OmniMoeConfig

    for name in ("tiny", "qwen3-omni-30b-a3b"):
        ref = Qwen3OmniMoeConfig(**OmniConfig.from_name(name).to_dict())
        ours = OmniConfig.from_name(name)
        assert ref.thinker_config.text_config.num_experts == ours.thinker.text_config.num_experts
        assert ref.talker_config.text_config.num_experts_per_tok == ours.talker.text_config.num_experts_per_tok
        assert ref.thinker_config.audio_token_id == ours.thinker.audio_token_id
