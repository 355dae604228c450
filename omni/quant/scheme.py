"""What a quantized weight is (`Scheme`) and the `quantization_config` of compressed-tensors checkpoints.

Supported: weight-only integer quantization, 4 or 8 bits, symmetric or asymmetric (integer zero points), per group
of 32 / 64 / 128 input columns or per output channel, stored in the `pack-quantized` format. Everything else the
format can describe (fp8 / nvfp4 / mxfp4 floats, activation quantization, block or tensor strategies, other bit
widths, checkpoints saved before compression) is refused with a CheckpointError naming what was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CheckpointError, ConfigError

METHOD, FORMAT = "compressed-tensors", "pack-quantized"
GROUP_SIZES = (32, 64, 128)
NAMES = {"int4": 4, "int8": 8}
SUPPORTED = ("weight-only int4 / int8, symmetric or asymmetric, group 32 / 64 / 128 or per channel, "
             f"format {FORMAT!r}")


@dataclass(frozen=True)
class Scheme:
    bits: int  # 4 or 8
    group_size: int | None  # None: one scale per output channel
    symmetric: bool = True

    @property
    def name(self) -> str:
        g = "channel" if self.group_size is None else f"group {self.group_size}"
        return f"int{self.bits} {g}{'' if self.symmetric else ' asymmetric'}"

    def scale_columns(self, in_features: int) -> int:
        return 1 if self.group_size is None else in_features // self.group_size

    def check_width(self, in_features: int, where: str, error=ConfigError) -> None:
        if self.group_size is not None and in_features % self.group_size:
            raise error(f"{where}: group size {self.group_size} does not divide the input width {in_features}; "
                        f"use a group size that does (one of {GROUP_SIZES}) or per-channel scales "
                        "(group_size=None)")

    def weights_args(self) -> dict:
        """The `weights` entry of a config group."""
        return {"num_bits": self.bits, "type": "int", "symmetric": self.symmetric,
                "strategy": "channel" if self.group_size is None else "group", "group_size": self.group_size,
                "dynamic": False, "actorder": None, "observer": "minmax", "block_structure": None}


def scheme_from_options(quantize, group_size=128, symmetric=True) -> Scheme:
    """The scheme `omni.load(quantize=..., group_size=...)` and `omni.quantize` ask for, checked (ConfigError)."""
    if quantize not in NAMES:
        raise ConfigError(f"quantize={quantize!r} is not supported; use one of {sorted(NAMES)} (weight-only)")
    if group_size is not None and (isinstance(group_size, bool) or group_size not in GROUP_SIZES):
        raise ConfigError(f"group_size={group_size!r} is not supported; use one of {GROUP_SIZES} or None "
                          "(per-channel scales)")
    if not isinstance(symmetric, bool):
        raise ConfigError(f"symmetric must be True or False, got {symmetric!r}")
    return Scheme(NAMES[quantize], group_size, symmetric)


@dataclass(frozen=True)
class QuantConfig:
    """A checkpoint's quantization_config: (targets, scheme) per config group, in order, and the ignore list."""

    groups: tuple
    ignore: tuple

    def scheme_for(self, module: str) -> Scheme | None:
        """The scheme of the (official) module name: the first group one of whose targets matches it."""
        for targets, scheme in self.groups:
            if any(_target_matches(t, module) for t in targets):
                return scheme
        return None


def _target_matches(target: str, module: str) -> bool:
    if target == "Linear":  # a class name: every weight the format packs is a linear layer's
        return True
    if target.startswith("re:"):
        return re.match(target[3:], module) is not None
    return target == module


def parse_config(qc, where: str) -> QuantConfig:
    """Check a config.json `quantization_config` and read it; CheckpointError for anything unsupported."""
    def refuse(what: str):
        raise CheckpointError(f"{where}: quantization_config {what} is not supported; omni reads {SUPPORTED}")

    if not isinstance(qc, dict):
        refuse(f"of type {type(qc).__name__}")
    if qc.get("quant_method") != METHOD:
        refuse(f"with quant_method {qc.get('quant_method')!r} (only {METHOD!r})")
    status = qc.get("quantization_status", "compressed")
    if status != "compressed":
        refuse(f"with quantization_status {status!r} (the weights must be stored compressed)")
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        refuse("without config_groups")
    if qc.get("kv_cache_scheme") is not None:
        refuse("with a kv_cache_scheme (KV-cache quantization)")
    parsed = []
    for name, group in groups.items():
        if not isinstance(group, dict):
            refuse(f"group {name!r} of type {type(group).__name__}")
        fmt = group.get("format") or qc.get("format")
        if fmt != FORMAT:
            refuse(f"group {name!r} with format {fmt!r}")
        for act in ("input_activations", "output_activations"):
            if group.get(act) is not None:
                refuse(f"group {name!r} with {act} (activation quantization)")
        parsed.append((_targets(group, name, refuse), _weights(group.get("weights"), name, refuse)))
    ignore = qc.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        refuse("with an ignore list that is not a list of names")
    return QuantConfig(tuple(parsed), tuple(ignore))


def _targets(group: dict, name: str, refuse) -> tuple:
    targets = group.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        refuse(f"group {name!r} without a list of targets")
    for t in targets:
        if t.startswith("re:"):
            try:
                re.compile(t[3:])
            except re.error as e:
                refuse(f"group {name!r} target {t!r} ({e})")
    return tuple(targets)


def _weights(w, name: str, refuse) -> Scheme:
    if not isinstance(w, dict):
        refuse(f"group {name!r} without weight quantization")
    if w.get("type", "int") != "int":
        refuse(f"group {name!r} with {w.get('type')} weights (float schemes such as fp8 / nvfp4)")
    bits = w.get("num_bits")
    if bits not in (4, 8) or isinstance(bits, bool):
        refuse(f"group {name!r} with num_bits {bits!r}")
    if w.get("dynamic") not in (False, None):
        refuse(f"group {name!r} with dynamic weight scales")
    if w.get("actorder") not in (None, "static", "weight"):
        refuse(f"group {name!r} with actorder {w.get('actorder')!r} (a g_idx permutation)")
    strategy, group_size = w.get("strategy"), w.get("group_size")
    if strategy == "channel" or (strategy is None and group_size == -1):
        group_size = None
    elif strategy in ("group", None) and group_size in GROUP_SIZES:
        pass
    else:
        refuse(f"group {name!r} with strategy {strategy!r} and group_size {group_size!r}")
    symmetric = w.get("symmetric", True)
    if not isinstance(symmetric, bool):
        refuse(f"group {name!r} with symmetric={symmetric!r}")
    return Scheme(bits, group_size, symmetric)


def make_config(schemes: dict, ignore: list) -> dict:
    """A `quantization_config` for config.json: one group per scheme (targets: the official module names that use
    it, as exact names, or "Linear" when one scheme covers every quantized module), and the float Linear layers in
    `ignore`. schemes: Scheme -> list of official module names."""
    groups = {}
    for i, (scheme, modules) in enumerate(schemes.items()):
        targets = ["Linear"] if len(schemes) == 1 else sorted(modules)
        groups[f"group_{i}"] = {"targets": targets, "weights": scheme.weights_args(), "input_activations": None,
                                "output_activations": None, "format": FORMAT}
    return {"quant_method": METHOD, "format": FORMAT, "quantization_status": "compressed",
            "config_groups": groups, "ignore": sorted(ignore), "kv_cache_scheme": None,
            "sparsity_config": {}, "transform_config": {}, "global_compression_ratio": None}
