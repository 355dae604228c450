"""Loading and saving the official layout: round trips, component selection, and every way a checkpoint breaks."""

import json
import os

import pytest
import torch
from safetensors import safe_open

import omni
from omni.checkpoints import shard_patterns
from omni.models.qwen3_omni.weights import KEY_MAP
from omni.errors import CheckpointError

from reference import build_reference


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    build_reference(d)
    return d


def _tensors(directory):
    out = {}
    for name in os.listdir(directory):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(directory, name), "pt") as f:
                out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def _sharded_copy(src, dst, components=("thinker",)):
    model = omni.load(src, components=components, quiet=True)
    omni.save(model, dst, max_shard_size="40KB")
    return model


def test_key_map_covers_every_official_tensor(ckpt):
    for key in _tensors(ckpt):
        assert KEY_MAP.to_omni(key) is not None, key


def test_save_load_save_is_identical(ckpt, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _sharded_copy(ckpt, a)
    assert os.path.isfile(a / "model.safetensors.index.json")
    assert len([n for n in os.listdir(a) if n.endswith(".safetensors")]) > 2
    _sharded_copy(a, b)
    ta, tb, orig = _tensors(a), _tensors(b), _tensors(ckpt)
    assert ta.keys() == tb.keys()
    assert {k for k in orig if k.startswith("thinker.")} == set(ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]) and torch.equal(ta[k], orig[k]), k
    assert json.loads((a / "config.json").read_text()) == json.loads((ckpt / "config.json").read_text())


def test_thinker_only_never_reads_other_components(ckpt, tmp_path):
    d = tmp_path / "c"
    _sharded_copy(ckpt, d)
    # corrupt everything that is not the thinker's: a thinker-only load must not notice
    wm = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    wm["talker.model.norm.weight"] = "model-talker.safetensors"
    (d / "model-talker.safetensors").write_bytes(b"garbage")
    index = {"metadata": {}, "weight_map": wm}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    model = omni.load(d, components=("thinker",), quiet=True)
    assert model.talker is None and model.thinker is not None
    assert shard_patterns(wm, ("thinker",)) == sorted(set(wm.values()) - {"model-talker.safetensors"})
    assert "model-talker.safetensors" in shard_patterns(wm, ("thinker", "talker"))


def test_dtype_and_device(ckpt):
    model = omni.load(ckpt, components=("thinker",), dtype="bfloat16", quiet=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert all(not b.is_meta for b in model.buffers())


def _break(ckpt, tmp_path, how):
    d = tmp_path / "broken"
    _sharded_copy(ckpt, d)
    index_file = d / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shards = sorted(set(index["weight_map"].values()))
    if how == "missing shard":
        os.remove(d / shards[0])
    elif how == "truncated":
        data = (d / shards[-1]).read_bytes()
        (d / shards[-1]).write_bytes(data[: len(data) // 2])
    elif how == "zero bytes":
        (d / shards[0]).write_bytes(b"")
    elif how == "outside":
        key = next(iter(index["weight_map"]))
        index["weight_map"][key] = "../x.safetensors"
        index_file.write_text(json.dumps(index))
    elif how == "pickle":
        key = next(iter(index["weight_map"]))
        index["weight_map"][key] = "pytorch_model.bin"
        index_file.write_text(json.dumps(index))
    elif how == "bad index":
        index_file.write_text("{")
    elif how == "missing tensor":
        key = "thinker.model.norm.weight"
        del index["weight_map"][key]
        index_file.write_text(json.dumps(index))
    return d


@pytest.mark.parametrize(
    "how, match",
    [
        ("missing shard", "missing shard"),
        ("truncated", "truncated or corrupt"),
        ("zero bytes", "truncated or corrupt"),
        ("outside", "outside the checkpoint directory"),
        ("pickle", "only .safetensors"),
        ("bad index", "not a valid safetensors index"),
        ("missing tensor", "1 missing tensors.*decoder.norm.weight"),
    ],
)
def test_loader_errors(ckpt, tmp_path, how, match):
    d = _break(ckpt, tmp_path, how)
    with pytest.raises(CheckpointError, match=match):
        omni.load(d, components=("thinker",), quiet=True)


def test_loader_wrong_shape(ckpt, tmp_path):
    from safetensors.torch import save_file

    d = tmp_path / "shape"
    _sharded_copy(ckpt, d)
    wm = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    key = "thinker.model.layers.0.mlp.experts.1.up_proj.weight"
    shard = d / wm[key]
    tensors = _tensors_of(shard)
    tensors[key] = torch.zeros(3, 3)
    save_file(tensors, str(shard), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"wrong shape.*experts.1.up_proj.weight \[3, 3\]"):
        omni.load(d, components=("thinker",), quiet=True)


def _tensors_of(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_loader_unexpected_tensor(ckpt, tmp_path):
    from safetensors.torch import save_file

    d = tmp_path / "extra"
    _sharded_copy(ckpt, d)
    index_file = d / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    save_file({"thinker.model.layers.0.mystery.weight": torch.zeros(2)}, str(d / "extra.safetensors"))
    index["weight_map"]["thinker.model.layers.0.mystery.weight"] = "extra.safetensors"
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="1 unexpected tensors: thinker.model.layers.0.mystery.weight"):
        omni.load(d, components=("thinker",), quiet=True)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a hub repo id"):
        omni.load(str(tmp_path / "does" / "not" / "exist"), quiet=True)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_omni_moe", "thinker_config": {"text_config": {"vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}}}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle formats are never loaded"):
        omni.load(tmp_path, components=("thinker",), quiet=True)


def test_training_a_loaded_embedding_never_writes_the_checkpoint(tmp_path):
    """Embedding tables stay views of the shard's private mapping (only looked-up rows become resident): updating
    them in place (an optimizer step) copies the touched pages, leaves the file as it was, and the model can be
    saved over the checkpoint it was loaded from."""
    torch.manual_seed(0)
    model = omni.OmniModel(omni.OmniConfig.from_name("tiny"), components=("thinker",))
    omni.save(model, tmp_path)
    before = {f.name: f.read_bytes() for f in tmp_path.glob("*.safetensors")}
    loaded = omni.load(str(tmp_path), components=("thinker",), quiet=True)
    table = loaded.thinker.embed_tokens.weight
    table.grad = torch.ones_like(table)
    torch.optim.SGD([table], lr=0.5).step()
    assert torch.equal(table, model.thinker.embed_tokens.weight - 0.5)
    after = {name: (tmp_path / name).read_bytes() for name in before}
    assert after == before
    omni.save(loaded, tmp_path)
    again = omni.load(str(tmp_path), components=("thinker",), quiet=True)
    assert torch.equal(again.thinker.embed_tokens.weight, table)
