"""Quantized checkpoints and options: unsupported schemes, packed tensors that disagree with their shapes or
config, missing scales, group sizes that do not divide a width, quantize= on a quantized model, and saves that
fail half-way. Each is a named error raised before anything is written."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import omni
from omni.errors import CheckpointError, ConfigError
from omni.quant import convert

QKEY = "thinker.model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def quant_dir(tiny_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_int4")
    omni.save(omni.load(tiny_dir, quiet=True, quantize="int4", group_size=32), directory)
    return directory


def _copy(src, dst, config=None, tensors=None):
    shutil.copytree(src, dst)
    if config is not None:
        path = os.path.join(dst, "config.json")
        with open(path) as f:
            d = json.load(f)
        config(d["quantization_config"])
        with open(path, "w") as f:
            json.dump(d, f)
    if tensors is not None:
        path = os.path.join(dst, "model.safetensors")
        t = load_file(path)
        tensors(t)
        save_file(t, path, metadata={"format": "pt"})
    return dst


def _weights(qc):
    return qc["config_groups"]["group_0"]["weights"]


CONFIG_CASES = {
    "fp8": (lambda qc: _weights(qc).update(type="float", num_bits=8, group_size=None, strategy="channel"),
            ["float", "fp8", "int4 / int8"]),
    "nvfp4 format": (lambda qc: qc["config_groups"]["group_0"].update(format="nvfp4-pack-quantized"),
                     ["nvfp4-pack-quantized", "pack-quantized"]),
    "activations": (lambda qc: qc["config_groups"]["group_0"].update(
        input_activations={"num_bits": 8, "type": "int", "dynamic": True, "strategy": "token"}),
        ["activation quantization"]),
    "int2": (lambda qc: _weights(qc).update(num_bits=2), ["num_bits 2"]),
    "block strategy": (lambda qc: _weights(qc).update(strategy="block", group_size=None), ["strategy 'block'"]),
    "other method": (lambda qc: qc.update(quant_method="gptq"), ["'gptq'", "compressed-tensors"]),
    "frozen": (lambda qc: qc.update(quantization_status="frozen"), ["'frozen'"]),
    "no group targets it": (lambda qc: qc["config_groups"]["group_0"].update(targets=["re:^talker\\..*"]),
                            ["no config group", "targets"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_unsupported_quantization_configs(quant_dir, tmp_path, case):
    edit, fragments = CONFIG_CASES[case]
    directory = _copy(quant_dir, tmp_path / "bad", config=edit)
    with pytest.raises(CheckpointError) as e:
        omni.load(directory, quiet=True)
    for fragment in fragments:
        assert fragment in str(e.value)


TENSOR_CASES = {
    "packed shape": (lambda t: t.update({f"{QKEY}.weight_packed": t[f"{QKEY}.weight_packed"][:, :-1].clone()}),
                     ["weight_packed has shape", "stores"]),
    "weight_shape": (lambda t: t.update({f"{QKEY}.weight_shape": torch.tensor([64, 32])}),
                     ["weight_shape says [64, 32]", "[64, 64]"]),
    "missing scale": (lambda t: t.pop(f"{QKEY}.weight_scale"), ["missing", "weight_scale"]),
    "scale shape": (lambda t: t.update({f"{QKEY}.weight_scale": t[f"{QKEY}.weight_scale"][:, :1].clone()}),
                    ["weight_scale has shape"]),
    "integer scale": (lambda t: t.update({f"{QKEY}.weight_scale": torch.ones(64, 2, dtype=torch.int32)}),
                      ["scales are floating point"]),
    "zero point on symmetric": (lambda t: t.update({f"{QKEY}.weight_zero_point": torch.zeros(8, 2, dtype=torch.int32)}),
                                ["zero point", "symmetric"]),
}


@pytest.mark.parametrize("case", list(TENSOR_CASES))
def test_packed_tensors_that_disagree(quant_dir, tmp_path, case):
    edit, fragments = TENSOR_CASES[case]
    directory = _copy(quant_dir, tmp_path / "bad", tensors=edit)
    with pytest.raises(CheckpointError) as e:
        omni.load(directory, quiet=True)
    for fragment in fragments:
        assert fragment in str(e.value)


def test_packed_tensors_without_a_quantization_config(quant_dir, tmp_path):
    directory = _copy(quant_dir, tmp_path / "bad")
    path = directory / "config.json"
    d = json.loads(path.read_text())
    del d["quantization_config"]
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="no quantization_config"):
        omni.load(directory, quiet=True)


def test_options_checked_before_any_read(tiny_dir, monkeypatch):
    read = []
    monkeypatch.setattr("omni.api.load_state", lambda *a, **k: read.append(a))  # no weight is read
    for options, fragment in [(dict(quantize="int3"), "'int3' is not supported"),
                              (dict(quantize="int4", group_size=48), "group_size=48"),
                              (dict(quantize="int4", group_size=True), "group_size=True")]:
        with pytest.raises(ConfigError, match=fragment):
            omni.load(tiny_dir, quiet=True, **options)
    # a group size that does not divide a width: the Thinker's 64-wide layers with groups of 128
    with pytest.raises(ConfigError, match="does not divide the input width 64"):
        omni.load(tiny_dir, quiet=True, quantize="int4", group_size=128)
    assert read == []


def test_quantize_an_already_quantized_model(quant_dir, tiny_model):
    with pytest.raises(ConfigError, match="already quantized"):
        omni.load(quant_dir, quiet=True, quantize="int8")
    model = omni.load(quant_dir, quiet=True)
    with pytest.raises(ConfigError, match="already quantized"):
        omni.quantize(model, "int8")
    with pytest.raises(ConfigError, match="does not divide"):
        omni.quantize(_float_copy(tiny_model), "int4", group_size=128)


def _float_copy(model):
    import copy

    return copy.deepcopy(model)


def test_a_failed_quantized_save_leaves_no_checkpoint(quant_dir, tmp_path, monkeypatch):
    model = omni.load(quant_dir, quiet=True)
    real = convert.packed_state

    def broken(*args):
        for i, item in enumerate(real(*args)):
            if i == 10:
                raise OSError(28, "No space left on device")
            yield item

    monkeypatch.setattr("omni.checkpoints.io.packed_state", broken)
    target = tmp_path / "out"
    with pytest.raises(CheckpointError, match="as it was before"):
        omni.save(model, target)
    assert not target.exists() or os.listdir(target) == []
    with pytest.raises(omni.OmniError):  # nothing there loads
        omni.load(target, quiet=True)
