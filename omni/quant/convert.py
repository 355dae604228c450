"""Turning a model's layers into quantized ones, and the checkpoint names of their packed tensors.

Default scope (`DEFAULT_SCOPE`): the Thinker's and the Talker's decoder layers: attention projections, dense MLPs,
shared experts and every routed expert. Routers and the shared-expert gate (tiny, and routing decisions are
sensitive), embeddings, lm_head / codec_head, norms, the vision and audio towers, the code predictor (a 4-bit code
predictor degrades long audio) and the vocoder stay in their float dtype.
"""

from __future__ import annotations

from torch import nn

from ..errors import CheckpointError, ConfigError
from ..nn.moe import Experts
from .experts import PROJECTIONS, QuantExperts
from .modules import PARTS, PackedWeight, QuantLinear
from .scheme import Scheme

DEFAULT_SCOPE = ("thinker.decoder.layers.", "talker.decoder.layers.")
_FLOAT_ONLY = ("router", "shared_expert_gate")  # last name parts never quantized by default


def in_default_scope(name: str, module: nn.Module) -> bool:
    if not name.startswith(DEFAULT_SCOPE) or name.rsplit(".", 1)[-1] in _FLOAT_ONLY:
        return False
    return isinstance(module, (nn.Linear, Experts))


def quantizable(model: nn.Module, scope=None) -> list[str]:
    """The names of the modules a quantization with `scope` (None: the default; or a predicate on (name, module))
    would replace."""
    pick = in_default_scope if scope is None else scope
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Experts)) and pick(name, m)]


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (QuantLinear, QuantExperts)) for m in model.modules())


def schemes_of(model: nn.Module) -> dict[str, Scheme]:
    """omni module name -> scheme, for every quantized module."""
    return {name: (m.weight.scheme if isinstance(m, QuantLinear) else m.gate_proj.scheme)
            for name, m in model.named_modules() if isinstance(m, (QuantLinear, QuantExperts))}


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def check_widths(model: nn.Module, names, scheme_of) -> None:
    """Every group size divides its layer's input width (ConfigError naming the first that does not), checked
    before any weight is read or written."""
    for name in names:
        m = model.get_submodule(name)
        widths = [m.in_features] if isinstance(m, nn.Linear) else [m.gate_proj.shape[2], m.down_proj.shape[2]]
        for k in widths:
            scheme_of(name).check_width(k, name)


def quantize_in_memory(model: nn.Module, scheme: Scheme, names) -> None:
    """Replace the named float modules of a loaded model by quantized ones, one module at a time."""
    check_widths(model, names, lambda _: scheme)
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, Experts):
            new = QuantExperts.from_experts(m, scheme, name)
        else:
            new = QuantLinear.from_linear(m, scheme, name)
        _swap(model, name, new)


def prepare_empty(model: nn.Module, scheme_of, names, device, dtype=None) -> None:
    """Replace the named modules of a meta-device model by empty quantized ones on `device` (their packed tensors
    are filled while the checkpoint streams in: `route`)."""
    check_widths(model, names, scheme_of)
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, Experts):
            E, F_, D = m.gate_proj.shape
            new = QuantExperts(E, D, F_, scheme_of(name), device, name)
        else:
            new = QuantLinear(m.in_features, m.out_features, scheme_of(name), False, device, dtype, name)
            new.bias = m.bias  # still on the meta device: the loader fills it like any float parameter
        _swap(model, name, new)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint names: official `<module>.weight` (float) or `<module>.weight_packed` ... (the format's suffixes)


def split_key(key: str):
    """(official key of the float weight, part) for a key that may name a packed tensor; part "weight" when float."""
    for part in PARTS:
        if key.endswith("." + part):
            return key[: -len(part)] + "weight", part
    return key, "weight"


def route(model: nn.Module, key_map, key: str):
    """The PackedWeight and expert index a stored tensor fills, and which part it is; None when the key does not
    belong to a quantized module (then the ordinary loader places it)."""
    base, part = split_key(key)
    if part == "weight" and not key.endswith(".weight"):
        return None
    m = key_map.to_omni(base)
    if m is None:
        if part != "weight":
            raise CheckpointError(f"{key}: a packed tensor whose module has no omni name")
        return None
    mod_name, _, attr = m.name.rpartition(".")
    try:
        mod = model.get_submodule(mod_name)
    except AttributeError:
        mod = None
    if isinstance(mod, QuantLinear) and attr == "weight":
        return mod.weight, None, part
    if isinstance(mod, QuantExperts) and attr in PROJECTIONS and m.expert is not None:
        if m.expert >= mod.n_experts:
            raise CheckpointError(f"{key}: expert {m.expert} of a layer with {mod.n_experts} experts")
        return getattr(mod, attr), m.expert, part
    if part != "weight":
        raise CheckpointError(f"{key} is stored packed, but the model's {m.name} is not a quantized layer; the "
                              "quantization_config and the tensors disagree")
    return None


def missing_parts(model: nn.Module) -> list[str]:
    out = []
    for name, m in model.named_modules():
        if isinstance(m, PackedWeight):
            out += [f"{name}: {p}" for p in m.missing()]
    return out


def packed_state(model: nn.Module, key_map):
    """Yield (official key, tensor) for every packed tensor of `model` (`<module>.weight_packed`, ...), and
    (official module name, scheme) through `modules` for the config's targets."""
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            items = [(m.weight, None, key_map.to_official(name + ".weight"))]
        elif isinstance(m, QuantExperts):
            items = [(getattr(m, p), e, key_map.to_official(f"{name}.{p}", m.n_experts)) for p in PROJECTIONS
                     for e in range(m.n_experts)]
        else:
            continue
        for pw, e, keys in items:
            if keys is None:
                raise CheckpointError(f"quantized module {name!r} has no official name in the key map")
            key = keys[0] if e is None else keys[e]
            for part, t in pw.export(e).items():
                yield key[: -len("weight")] + part, t.contiguous()


def official_modules(model: nn.Module, key_map) -> tuple[dict, list]:
    """({scheme: [official module names]}, [official names of the float nn.Linear layers]) for the config."""
    schemes: dict = {}
    for name, scheme in schemes_of(model).items():
        m = model.get_submodule(name)
        if isinstance(m, QuantExperts):
            keys = [k for p in PROJECTIONS for k in key_map.to_official(f"{name}.{p}", m.n_experts)]
        else:
            keys = key_map.to_official(name + ".weight")
        schemes.setdefault(scheme, []).extend(k[: -len(".weight")] for k in keys)
    floats = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            keys = key_map.to_official(name + ".weight")
            if keys:
                floats.append(keys[0][: -len(".weight")])
    return schemes, floats


def scheme_error(name: str) -> ConfigError:
    return ConfigError(f"{name} is already quantized; quantize= applies to float models (load the float "
                       "checkpoint, or load this one without quantize=)")


def estimated_bytes(model: nn.Module, scheme: Scheme, float_bytes: int = 2) -> tuple[int, int]:
    """(bytes of the default scope's packed weights with `scheme`, bytes of the rest at `float_bytes` per
    parameter) of a model, e.g. one built on the meta device (no weights needed)."""
    names = quantizable(model)
    packed, inside = 0, 0
    for name in names:
        for p in model.get_submodule(name).parameters():
            if p.dim() < 2:  # a bias stays float
                continue
            *lead, n, k = p.shape
            count = p.numel() // (n * k)
            scales = n * scheme.scale_columns(k) * count
            packed += p.numel() * scheme.bits // 8 + scales * float_bytes + (0 if scheme.symmetric else scales)
            inside += p.numel()
    rest = sum(p.numel() for p in model.parameters()) - inside
    return packed, rest * float_bytes
