"""Weight-only int4 / int8 quantization in compressed-tensors' `pack-quantized` format (docs/quantization.md).

    omni.quantize(model, "int4", group_size=128)        a loaded float model, in place
    omni.load(dir, quantize="int4", group_size=128)     an official float checkpoint, quantized while it streams in
    omni.load(dir)                                      a pack-quantized checkpoint stays quantized
    omni.save(model, dir)                               a quantized model writes a pack-quantized checkpoint
"""

from __future__ import annotations

from ..errors import CheckpointError, ConfigError
from .convert import (DEFAULT_SCOPE, in_default_scope, is_quantized, official_modules, prepare_empty,
                      quantizable, quantize_in_memory, schemes_of, split_key)
from .experts import QuantExperts
from .modules import PackedWeight, QuantLinear, cpu_kernel, set_cpu_kernel
from .scheme import Scheme, make_config, parse_config, scheme_from_options

__all__ = ["quantize", "Scheme", "QuantLinear", "QuantExperts", "PackedWeight", "is_quantized", "DEFAULT_SCOPE",
           "set_cpu_kernel", "cpu_kernel",
           "in_default_scope", "quantized_bytes"]


def quantize(model, quantize: str = "int4", group_size=128, symmetric: bool = True, scope=None):
    """Quantize a loaded model's weights in place (default scope: omni.quant.convert) and return it."""
    scheme = scheme_from_options(quantize, group_size, symmetric)
    if is_quantized(model):
        raise ConfigError("this model is already quantized; omni.quantize takes a float model")
    if scope is not None and not callable(scope):
        raise ConfigError(f"scope must be a predicate on (module name, module), got {scope!r}")
    if any(p.is_meta for p in model.parameters()):
        raise ConfigError("this model lives on the meta device: load its weights before quantizing it")
    quantize_in_memory(model, scheme, quantizable(model, scope))
    return model


def prepare_load(model, directory: str, config, weight_keys, quantize, group_size, device, dtype,
                 scope=None) -> None:
    """Before the weights stream in: make the meta-device model's layers quantized ones where the checkpoint is
    stored packed (its quantization_config) or where `quantize=` asks for it. Every check runs here, before any
    tensor is read."""
    qc = config.extra.get("quantization_config")
    if qc is not None:
        if quantize is not None:
            raise ConfigError(f"{directory} is already quantized (quantization_config in config.json); load it "
                              "without quantize=, or load the float checkpoint with quantize=")
        _prepare_packed(model, parse_config(qc, f"{directory}/config.json"), weight_keys, device, dtype)
    elif quantize is not None:
        scheme = scheme_from_options(quantize, group_size)
        if scope is not None and not callable(scope):
            raise ConfigError(f"quantize_scope must be a predicate on (module name, module), got {scope!r}")
        prepare_empty(model, lambda _: scheme, quantizable(model, scope), device, dtype)
    elif any(k.endswith(".weight_packed") for k in weight_keys):
        raise CheckpointError(f"{directory} stores packed weights (`.weight_packed`) but its config.json has no "
                              "quantization_config; restore the config that came with the weights")


def _prepare_packed(model, qconfig, weight_keys, device, dtype) -> None:
    """The modules whose `weight_packed` the checkpoint holds become quantized with their config group's scheme."""
    from ..release import release_of

    key_map = release_of(model).weights.key_map
    schemes = {}
    for key in weight_keys:
        if not key.endswith(".weight_packed"):
            continue
        base, _ = split_key(key)
        module = base[: -len(".weight")]
        scheme = qconfig.scheme_for(module)
        if scheme is None:
            raise CheckpointError(f"{key} is packed, but no config group of quantization_config targets "
                                  f"{module!r}")
        m = key_map.to_omni(base)
        if m is None:
            continue  # reported as unexpected by the loader
        # `<module>.weight` -> the module; an expert's `<experts>.gate_proj` -> the experts module
        target = m.name.rpartition(".")[0]
        if schemes.setdefault(target, scheme) != scheme:
            raise CheckpointError(f"{target}: its experts use different schemes ({schemes[target].name} and "
                                  f"{scheme.name}); omni keeps one scheme per expert stack")
    names = []
    for name in schemes:
        try:
            model.get_submodule(name)
            names.append(name)
        except AttributeError:
            pass  # a component not built (components=): its tensors are skipped
    prepare_empty(model, schemes.__getitem__, names, device, dtype)


def save_config(model, config_dict: dict) -> dict:
    """config.json's dict with the `quantization_config` of a quantized model (unchanged for a float one)."""
    from ..release import release_of

    config_dict = dict(config_dict)
    config_dict.pop("quantization_config", None)
    if is_quantized(model):
        schemes, floats = official_modules(model, release_of(model).weights.key_map)
        config_dict["quantization_config"] = make_config(schemes, floats)
    return config_dict


def quantized_bytes(model) -> tuple[int, int]:
    """(bytes of packed weights, bytes of every other parameter and buffer) of a model in memory."""
    packed = sum(m.nbytes() for m in model.modules() if isinstance(m, PackedWeight))
    packed_ids = {id(t) for m in model.modules() if isinstance(m, PackedWeight) for t in m.buffers()}
    other = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
                if id(t) not in packed_ids)
    return packed, other

