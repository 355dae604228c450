"""Qwen2.5-Omni config parsing (presets, the reference's config.json) and its key-map table."""

import json

import pytest

from omni.checkpoints.io import component_of
from omni.config import OmniConfig
from omni.models.qwen2_5_omni.config import PRESETS as QWEN2_5_PRESETS
from omni.models.qwen2_5_omni.config import (
    Qwen25OmniConfig,
    Qwen25TextConfig,
    Qwen25ThinkerConfig,
    Qwen25VisionConfig,
)
from omni.errors import ConfigError
from omni.models.qwen2_5_omni.weights import KEY_MAP
from omni.release import release_of

from reference_qwen2_5 import build_reference


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("q25cfg")
    model = build_reference(directory)
    return directory, model


@pytest.mark.parametrize("name", sorted(QWEN2_5_PRESETS))
def test_presets_parse_and_round_trip(name):
    cfg = OmniConfig.from_name(name)
    assert isinstance(cfg, Qwen25OmniConfig) and isinstance(cfg.thinker, Qwen25ThinkerConfig)
    assert cfg.to_dict() == QWEN2_5_PRESETS[name]
    assert OmniConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_release_numbers():
    big, small = OmniConfig.from_name("qwen2.5-omni-7b"), OmniConfig.from_name("qwen2.5-omni-3b")
    t = big.thinker.text_config
    assert (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
            t.intermediate_size, t.dim_head) == (152064, 3584, 28, 28, 4, 18944, 128)
    assert t.mrope_section == [16, 24, 24] and t.theta == 1e6
    assert t.qkv_bias and not t.o_proj_bias and not t.qk_norm and not t.mrope_interleaved
    s = small.thinker.text_config
    assert (s.vocab_size, s.hidden_size, s.num_hidden_layers, s.num_attention_heads, s.num_key_value_heads,
            s.intermediate_size) == (151936, 2048, 36, 16, 2, 11008)
    v = big.thinker.vision_config
    assert (v.hidden_size, v.depth, v.patch_size, v.window_size, v.fullatt_block_indexes, v.out_hidden_size) == (
        1280, 32, 14, 112, [7, 15, 23, 31], 3584)
    assert small.thinker.vision_config.out_hidden_size == small.thinker.audio_config.output_dim == 2048
    th = big.thinker
    assert (th.audio_token_id, th.image_token_id, th.video_token_id, th.audio_start_token_id,
            th.vision_start_token_id, th.position_id_per_seconds) == (151646, 151655, 151656, 151647, 151652, 25)
    assert th.audio_config.n_window == 100
    tk = big.talker_config  # typed by omni.models.qwen2_5_omni.talker's section
    assert (tk.hidden_size, tk.num_attention_heads, tk.head_dim, tk.embedding_size, tk.vocab_size) == (
        896, 12, 128, 3584, 8448)
    assert small.talker_config.embedding_size == 2048 and small.talker_config.head_dim == 64
    dit = big.token2wav_config.dit_config  # typed by omni.models.qwen2_5_omni.token2wav; the reference defaults are the release's
    assert (dit.hidden_size, dit.num_hidden_layers, dit.num_attention_heads) == (1024, 22, 16)
    # the Qwen3 release still parses as before
    q3 = OmniConfig.from_name("qwen3-omni-30b-a3b").thinker.text_config
    assert q3.qk_norm and q3.mrope_interleaved and not q3.qkv_bias


def test_reference_config_json_round_trips(reference_dir):
    directory, model = reference_dir
    raw = json.loads((directory / "config.json").read_text())
    cfg = OmniConfig.from_pretrained(directory)
    assert isinstance(cfg, Qwen25OmniConfig) and isinstance(cfg.thinker.text_config, Qwen25TextConfig)
    assert isinstance(cfg.thinker.vision_config, Qwen25VisionConfig)
    assert cfg.to_dict() == raw  # lossless, talker and token2wav blocks included
    ref = model.config.thinker_config
    assert cfg.thinker.audio_token_id == ref.audio_token_id and cfg.thinker.video_token_id == ref.video_token_id
    assert cfg.thinker.text_config.mrope_section == ref.text_config.rope_parameters["mrope_section"]
    assert cfg.thinker.vision_config.fullatt_block_indexes == list(ref.vision_config.fullatt_block_indexes)


def test_key_map_covers_every_reference_tensor(reference_dir):
    directory, model = reference_dir
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(component_of(k) == "thinker" for k in keys)
    for key in keys:
        mapped = KEY_MAP.to_omni(key)
        assert mapped is not None, key
        assert KEY_MAP.to_official(mapped.name) == [key]  # the table inverts exactly


def test_release_is_picked_by_model_type():
    class Holder:
        pass

    h = Holder()
    h.config = OmniConfig.from_name("tiny-qwen2.5")
    assert release_of(h).weights.key_map is KEY_MAP
    h.config = OmniConfig.from_name("tiny")
    assert release_of(h).weights.key_map is not KEY_MAP


@pytest.mark.parametrize("name", ["qwen2.5-omni-7b", "qwen2.5-omni-3b"])
def test_full_size_thinker_matches_the_reference_on_meta(name):
    # the preset's numbers build the same Thinker (parameter for parameter) as the reference classes do
    import copy

    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from omni.model import OmniModel

    from omni.models.qwen2_5_omni.talker import Qwen25Talker

    d = copy.deepcopy(QWEN2_5_PRESETS[name])
    d.pop("model_type")
    cfg = OmniConfig.from_name(name)
    with torch.device("meta"):
        ref = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(**d))
        model = OmniModel(cfg, components=("thinker",))
        talker = Qwen25Talker(cfg.talker_config)
    assert sorted(p.numel() for p in model.thinker.parameters()) == sorted(p.numel() for p in ref.thinker.parameters())
    assert sorted(p.numel() for p in talker.parameters()) == sorted(p.numel() for p in ref.talker.parameters())


@pytest.mark.parametrize("name,thinker", [("qwen2.5-omni-7b", 8_931_813_888), ("qwen2.5-omni-3b", 4_703_464_448)])
def test_info_parameter_table(name, thinker):
    from omni.cli import parameter_table

    rows = {row[0]: row[1] for row in parameter_table(OmniConfig.from_name(name))}
    assert rows["thinker.vision"] + rows["thinker.audio"] + rows["thinker LM"] == thinker
    if "talker" in rows and name.endswith("3b"):  # third-party count of the released 3B talker
        assert rows["talker"] == 375_199_616 + 1_835_904 + 7_569_408


def test_bad_configs_are_named_errors():
    d = json.loads(json.dumps(QWEN2_5_PRESETS["tiny-qwen2.5"]))
    d["thinker_config"]["vision_config"]["window_size"] = 30  # not a multiple of patch * merge = 28
    with pytest.raises(ConfigError, match="window_size"):
        OmniConfig.from_dict(d)
    d = json.loads(json.dumps(QWEN2_5_PRESETS["tiny-qwen2.5"]))
    d["thinker_config"]["text_config"]["model_type"] = "qwen3_omni_moe_text"
    with pytest.raises(ConfigError, match="model_type"):
        OmniConfig.from_dict(d)
    d = json.loads(json.dumps(QWEN2_5_PRESETS["tiny-qwen2.5"]))
    del d["thinker_config"]["text_config"]
    with pytest.raises(ConfigError, match="text_config"):
        OmniConfig.from_dict(d)
    with pytest.raises(ConfigError, match="qwen2_5_omni"):
        OmniConfig.from_dict({"model_type": "qwen2_omni"})
