"""Bad checkpoints: every way a checkpoint directory breaks gives a CheckpointError (or ConfigError) naming the file
or tensor and saying what to do, leaves no file open, and a good checkpoint still loads afterwards."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import omni
from omni.errors import CheckpointError, ConfigError

from .conftest import open_fds

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def sharded_dir(tiny_model, tmp_path_factory) -> str:
    """The tiny checkpoint saved in a few shards with an index, as the official release is laid out."""
    d = str(tmp_path_factory.mktemp("sharded"))
    omni.save(tiny_model, d, max_shard_size="2MB")
    assert os.path.isfile(os.path.join(d, INDEX))
    return d


def _copy(src: str, tmp_path) -> str:
    dst = str(tmp_path / "ckpt")
    shutil.copytree(src, dst)
    return dst


def _index(d: str) -> dict:
    with open(os.path.join(d, INDEX), encoding="utf-8") as f:
        return json.load(f)


def _write_index(d: str, index: dict) -> None:
    with open(os.path.join(d, INDEX), "w", encoding="utf-8") as f:
        json.dump(index, f)


def _shards(d: str) -> list[str]:
    return sorted(set(_index(d)["weight_map"].values()))


def _thinker_shards(d: str) -> list[str]:
    """Shards a thinker-only load opens."""
    return sorted({f for k, f in _index(d)["weight_map"].items() if k.startswith("thinker.")})


def _fails(d, error, *fragments, components=("thinker",)):
    """Loading `d` raises `error` whose message holds every fragment; no descriptor is left open."""
    before = open_fds()
    with pytest.raises(error) as info:
        omni.load(d, components=components, quiet=True)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert open_fds() == before, "a failed load left files open"
    return message


# -- corrupt files --------------------------------------------------------------------------------------------------


def test_zero_byte_single_file(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    open(os.path.join(d, "model.safetensors"), "wb").close()
    _fails(d, CheckpointError, "model.safetensors", "truncated or corrupt", "re-download")


def test_truncated_single_file(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    path = os.path.join(d, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    _fails(d, CheckpointError, "model.safetensors", "truncated or corrupt", "re-download")


def test_garbage_header(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    path = os.path.join(d, "model.safetensors")
    data = bytearray(open(path, "rb").read())
    data[8:64] = b"{not json at all" * 3 + b"!!!!!!!!"  # the JSON header right after its 8-byte length
    open(path, "wb").write(bytes(data))
    _fails(d, CheckpointError, "model.safetensors", "re-download")


def test_truncated_shard(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    last = os.path.join(d, _thinker_shards(d)[-1])
    data = open(last, "rb").read()
    open(last, "wb").write(data[: len(data) // 2])
    _fails(d, CheckpointError, _thinker_shards(d)[-1], "truncated or corrupt")


def test_zero_byte_shard(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    open(os.path.join(d, _shards(d)[0]), "wb").close()
    _fails(d, CheckpointError, _shards(d)[0], "truncated or corrupt")


def test_missing_shard(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    os.remove(os.path.join(d, _thinker_shards(d)[1]))
    _fails(d, CheckpointError, "missing shard", _thinker_shards(d)[1], "re-download")


# -- a malicious or broken index ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/outside.safetensors", "sub/../../x.safetensors"])
def test_index_names_a_path_outside_the_directory(sharded_dir, tmp_path, name):
    d = _copy(sharded_dir, tmp_path)
    (tmp_path / "outside.safetensors").write_bytes(open(os.path.join(d, _shards(d)[0]), "rb").read())
    index = _index(d)
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = name
    _write_index(d, index)
    _fails(d, CheckpointError, key, name, "outside the checkpoint directory", "refusing")


def test_index_names_a_pickle(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    index = _index(d)
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = "pytorch_model-00001-of-00002.bin"
    _write_index(d, index)
    _fails(d, CheckpointError, key, "only .safetensors shards are loaded")


def test_index_is_not_json(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    with open(os.path.join(d, INDEX), "w", encoding="utf-8") as f:
        f.write('{"weight_map": {')
    _fails(d, CheckpointError, INDEX, "not a valid safetensors index", "re-download")


def test_index_lists_a_tensor_twice(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    text = open(os.path.join(d, INDEX), encoding="utf-8").read()
    a, b = _thinker_shards(d)[:2]
    key = "thinker.model.norm.weight"
    text = text.replace('"weight_map": {', f'"weight_map": {{"{key}": "{a}", "{key}": "{b}", ', 1)
    open(os.path.join(d, INDEX), "w", encoding="utf-8").write(text)
    _fails(d, CheckpointError, key, "twice", "re-save")


def test_duplicate_tensor_across_shards(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    first, second = _thinker_shards(d)[:2]
    key = sorted(k for k, f in _index(d)["weight_map"].items() if f == first)[0]
    tensors = load_file(os.path.join(d, second))
    tensors[key] = load_file(os.path.join(d, first))[key] + 1  # a second, different copy
    save_file(tensors, os.path.join(d, second), metadata={"format": "pt"})
    _fails(d, CheckpointError, second, key, first, "exactly one shard")


def test_index_without_weight_map(sharded_dir, tmp_path):
    d = _copy(sharded_dir, tmp_path)
    _write_index(d, {"metadata": {}})
    _fails(d, CheckpointError, "not a valid safetensors index")


# -- tensors that do not fit the model ------------------------------------------------------------------------------


def _rewrite_single(d: str, change) -> None:
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_wrong_dtype(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    key = "thinker.model.layers.0.self_attn.q_proj.weight"
    _rewrite_single(d, lambda t: t.__setitem__(key, t[key].to(torch.int32)))
    _fails(d, CheckpointError, key, "I32", "non-float dtype", "same release")


def test_wrong_shape(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    key = "thinker.model.layers.1.mlp.experts.3.down_proj.weight"
    _rewrite_single(d, lambda t: t.__setitem__(key, torch.zeros(5, 7)))
    _fails(d, CheckpointError, key, "[5, 7]", "model expects", "same release")


def test_missing_tensor(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    _rewrite_single(d, lambda t: t.pop("thinker.model.layers.2.mlp.experts.5.up_proj.weight"))
    _fails(d, CheckpointError, "missing tensors", "experts [5]", "same release")


def test_unexpected_tensor(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    _rewrite_single(d, lambda t: t.__setitem__("thinker.model.layers.0.mystery.weight", torch.zeros(3)))
    _fails(d, CheckpointError, "unexpected tensors", "thinker.model.layers.0.mystery.weight")


def test_checkpoint_for_a_bigger_model(tiny_dir, tmp_path):
    """config.json says 5 layers, the weights hold 4: the missing layer is named."""
    d = _copy(tiny_dir, tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["thinker_config"]["text_config"]["num_hidden_layers"] = 5
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    _fails(d, CheckpointError, "missing tensors", "thinker.decoder.layers.4")


# -- not a checkpoint at all ----------------------------------------------------------------------------------------


def test_only_pickle_weights(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    os.remove(os.path.join(d, "model.safetensors"))
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    _fails(d, CheckpointError, "pytorch_model.bin", "pickle formats are never loaded", "convert them to safetensors")


def test_no_weights_at_all(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    os.remove(os.path.join(d, "model.safetensors"))
    _fails(d, CheckpointError, "no model.safetensors.index.json or model.safetensors")


def test_no_config(tiny_dir, tmp_path):
    d = _copy(tiny_dir, tmp_path)
    os.remove(os.path.join(d, "config.json"))
    _fails(d, ConfigError, "no config.json", "checkpoint directory")


def test_path_that_does_not_exist(tmp_path):
    _fails(str(tmp_path / "nowhere" / "model"), CheckpointError, "neither a checkpoint directory nor a hub repo id")


def test_unknown_dtype_and_component(tiny_dir):
    with pytest.raises(CheckpointError, match="unknown dtype 'float8'.*bfloat16"):
        omni.load(tiny_dir, components=("thinker",), dtype="float8", quiet=True)
    with pytest.raises(ConfigError, match=r"unknown component\(s\) \['speaker'\].*thinker"):
        omni.load(tiny_dir, components=("speaker",), quiet=True)


# -- valid layouts that must keep working ---------------------------------------------------------------------------


def test_hub_snapshot_of_links_into_a_blob_store(sharded_dir, tmp_path):
    """A hub snapshot is a folder of symlinks into the cache's blob store: links leave the folder, names do not."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(sharded_dir))):
        shutil.copy(os.path.join(sharded_dir, name), blobs / f"blob{i}")
        os.symlink(os.path.relpath(blobs / f"blob{i}", snap), snap / name)
    model = omni.load(str(snap), components=("thinker",), quiet=True)
    assert model.thinker is not None


def test_healthy_after_failures(tiny_dir, sharded_dir, tmp_path):
    """After a failing load the next load of a good checkpoint works and gives the same weights."""
    d = _copy(sharded_dir, tmp_path)
    os.remove(os.path.join(d, _shards(d)[0]))
    with pytest.raises(CheckpointError):
        omni.load(d, components=("thinker",), quiet=True)
    a = omni.load(tiny_dir, components=("thinker",), quiet=True)
    b = omni.load(sharded_dir, components=("thinker",), quiet=True)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), name


# -- the small files beside the weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, error, fragments", [
    ("tokenizer.json", "{not json", ConfigError, ["cannot load", "tokenizer.json"]),
    ("tokenizer_config.json", "{oops", ConfigError, ["cannot read tokenizer config", "tokenizer_config.json"]),
    ("chat_template.jinja", "{% for %}", ConfigError, ["chat template does not parse"]),
    ("chat_template.jinja", "\udcff", ConfigError, ["cannot read the chat template", "chat_template.jinja"]),
    ("chat_template.json", "{]", ConfigError, ["cannot read the chat template", "chat_template.json"]),
    ("preprocessor_config.json", "{]", ConfigError, ["cannot read", "preprocessor_config.json"]),
    ("preprocessor_config.json", '{"patch_size": "16"}', ConfigError,
     ["preprocessor_config.json: patch_size must be a positive integer, got '16'"]),
    ("preprocessor_config.json", '{"min_pixels": 5000, "max_pixels": 100}', ConfigError,
     ["min_pixels (5000) is above max_pixels (100)"]),
    ("preprocessor_config.json", '{"image_std": [0.5, 0, 0.5]}', ConfigError, ["image_std must not contain zeros"]),
    ("video_preprocessor_config.json", '{"image_mean": [0.5, 0.5]}', ConfigError,
     ["video_preprocessor_config.json: image_mean must be one number or three"]),
    ("config.json", "\udcff", ConfigError, ["config.json is not valid JSON"]),
], ids=["tokenizer", "tokenizer-config", "template-syntax", "template-bytes", "template-json", "preprocessor-json",
        "patch-size",
        "pixel-bounds", "zero-std", "video-mean", "config-bytes"])
def test_broken_metadata_file(tiny_dir, tmp_path, name, content, error, fragments):
    d = _copy(tiny_dir, tmp_path)
    with open(os.path.join(d, name), "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(content)
    _fails(d, error, *fragments)
