"""Reading and writing checkpoints in the official on-disk layout (safetensors shards + index json).

Loading builds the model on the meta device (no memory), then streams tensors from the shards (read, not mapped:
omni.checkpoints.shard) straight into their parameters: one copy of the weights, never two. Only safetensors are read;
nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..quant.convert import missing_parts, packed_state, route
from ..release import release_of, releases
from .commit import INDEX_NAME, SINGLE_NAME
from .shard import Shard

_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"}  # safetensors dtype names


# ----------------------------------------------------------------------------------------------------------------
# Locating the tensors


def weight_map(directory: str) -> dict[str, str]:
    """Official key -> shard file name, from the index json or the single-file checkpoint."""
    index = os.path.join(directory, INDEX_NAME)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                wm = json.load(f, object_pairs_hook=_unique_keys)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{index} is not a valid safetensors index ({e}); re-download it") from None
        if not isinstance(wm, dict):
            raise CheckpointError(f"{index}: `weight_map` must map tensor names to file names")
        for key, file in wm.items():
            _check_shard_name(directory, file, key)
        return wm
    single = os.path.join(directory, SINGLE_NAME)
    if os.path.isfile(single):
        with _open(single) as f:
            return {k: SINGLE_NAME for k in f.keys()}
    found = [n for n in os.listdir(directory) if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    hint = f" (found {found[:3]}: pickle formats are never loaded, convert them to safetensors)" if found else ""
    raise CheckpointError(f"no {INDEX_NAME} or {SINGLE_NAME} in {directory}{hint}")


def _unique_keys(pairs: list) -> dict:
    """json object hook: a key written twice (a tensor assigned to two shards) is an error, not "last one wins"."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise CheckpointError(f"the index names {key!r} twice ({out[key]!r} and {value!r}); it is ambiguous "
                                  "which shard holds it: re-download or re-save the checkpoint")
        out[key] = value
    return out


def _check_shard_name(directory: str, file, key: str) -> None:
    if not isinstance(file, str) or not file.endswith(".safetensors"):
        raise CheckpointError(f"index entry {key!r} names {file!r}: only .safetensors shards are loaded")
    # Judge the name as written, not where links lead: a hub snapshot's files are links into the cache's blob
    # store, and the index (the untrusted part) can only escape the directory through an absolute path or "..".
    name = os.path.normpath(file)
    if os.path.isabs(file) or name == os.pardir or name.startswith(os.pardir + os.sep):
        raise CheckpointError(
            f"index entry {key!r} names {file!r}, which lies outside the checkpoint directory {directory}; "
            "refusing to read it (a corrupt or malicious index)"
        )


def _open(path: str):
    if not os.path.isfile(path):
        raise CheckpointError(f"missing shard {path}: the index names it but it is not there; re-download it")
    try:
        return Shard(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e} (truncated or corrupt file? re-download it)") from None


def weights_of(model: nn.Module):
    """The checkpoint layout (omni.checkpoints.keymap.Weights) of the release `model` was built for."""
    try:
        return release_of(model).weights
    except ConfigError as e:
        raise CheckpointError(f"no key table for this model: {e}") from None


def component_of(key: str) -> str | None:
    """The component an official key belongs to; the releases' top-level prefixes never clash."""
    for release in releases().values():
        for comp, prefixes in release.weights.components.items():
            if key.startswith(prefixes):
                return comp
    return None


# ----------------------------------------------------------------------------------------------------------------
# Loading


def _get_param(model: nn.Module, name: str):
    mod_name, _, attr = name.rpartition(".")
    try:
        mod = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        return None, None, None
    p = mod._parameters.get(attr) if attr in mod._parameters else mod._buffers.get(attr)
    if p is None and attr not in mod._parameters and attr not in mod._buffers:
        return None, None, None
    return mod, attr, p


def _set(mod: nn.Module, attr: str, tensor: torch.Tensor):
    if attr in mod._parameters:
        mod._parameters[attr] = nn.Parameter(tensor, requires_grad=tensor.is_floating_point())
    else:
        mod._buffers[attr] = tensor


class _Findings:
    """What a load found wrong, collected over every shard and reported once (`check`), and what it filled."""

    def __init__(self):
        self.unexpected, self.wrong_shape, self.wrong_dtype = [], [], []
        self.filled: dict[str, set] = defaultdict(set)  # stacked param -> experts seen; others -> {None}
        self.stacked: dict[str, torch.Size] = {}  # stacked param -> its full shape
        self.packed_missing: list[str] = []  # parts of quantized layers no tensor filled (omni.quant)

    def check(self, model: nn.Module, directory: str) -> None:
        missing = []
        for name, _ in sorted(model.named_parameters()):
            if name not in self.filled:
                missing.append(name)
            elif name in self.stacked and len(self.filled[name]) != self.stacked[name][0]:
                absent = sorted(set(range(self.stacked[name][0])) - self.filled[name])
                missing.append(f"{name} experts {absent[:5]}")
        missing += self.packed_missing
        problems = [_summary(title, items) for title, items in (
            ("missing tensors (omni names)", missing), ("unexpected tensors", self.unexpected),
            ("tensors with the wrong shape", self.wrong_shape), ("tensors with a non-float dtype", self.wrong_dtype),
        ) if items]
        if problems:
            raise CheckpointError(
                f"checkpoint {directory} does not fit the model built from its config.json:\n  "
                + "\n  ".join(problems)
                + "\nCheck that config.json and the weights come from the same release."
            )


def _summary(title: str, items: list) -> str:
    shown = ", ".join(str(i) for i in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return f"{len(items)} {title}: {shown}{more}"


def load_state(model: nn.Module, directory: str, components, dtype=None, device="cpu", progress=None) -> None:
    """Fill the meta-device `model` with the tensors of the checkpoint in `directory`.

    Tensors of components not in `components` are skipped, and shards holding only such tensors are never
    opened. Missing, unexpected and wrongly-shaped tensors are collected and reported in one CheckpointError.
    """
    weights = weights_of(model)
    wm = weight_map(directory)
    by_file: dict[str, list[str]] = defaultdict(list)
    for key, file in wm.items():
        comp = component_of(key)
        if comp is None or comp in components:
            by_file[file].append(key)
    found = _Findings()
    for file in sorted(by_file):
        with _open(os.path.join(directory, file)) as f:
            present = set(f.keys())
            _check_single_home(present, file, wm)
            for key in by_file[file]:
                if key not in present:
                    raise CheckpointError(f"{file} does not contain {key!r} although the index says so")
                if key.endswith(weights.ignored_suffixes):
                    continue
                routed = route(model, weights.key_map, key)
                if routed is not None:  # a quantized layer's tensor: packed, or float to quantize on arrival
                    _fill_packed(f, key, routed, dtype, found, progress)
                    continue
                target = _target(model, f, key, weights.key_map, found)
                if target is None:
                    continue
                try:
                    t = f.get_mapped(key) if _stays_mapped(target) else f.get_tensor(key)
                except (SafetensorError, OSError, ValueError) as e:
                    raise CheckpointError(f"cannot read {key} from {file}: {e}") from None
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                _place(target, t, device, found)
                if progress is not None:
                    progress.update(t.numel() * t.element_size())
    found.packed_missing = missing_parts(model)
    found.check(model, directory)
    _init_buffers(model, device)


def _stays_mapped(target) -> bool:
    """Embedding tables stay views of the shard's file mapping: a lookup reads a few rows, so only their pages
    become resident (Qwen3-Omni's 152k x 2048 token table is 0.62 GB, of which a request reads a few hundred rows).
    A dtype or device change copies the table as before, and the mapping goes with the view."""
    mod, attr, _, m = target
    return isinstance(mod, nn.Embedding) and attr == "weight" and m.expert is None


def _read(f, key: str) -> torch.Tensor:
    try:
        return f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {key}: {e}") from None


def _fill_packed(f, key: str, routed, dtype, found: _Findings, progress) -> None:
    weight, expert, part = routed
    if part == "weight":
        shape = tuple(f.get_slice(key).get_shape())
        if shape != (weight.out_features, weight.in_features):
            found.wrong_shape.append(f"{key} {list(shape)} (model expects {[weight.out_features, weight.in_features]})")
            return
        t = _read(f, key)
        if not t.is_floating_point():
            found.wrong_dtype.append(f"{key} {t.dtype} (model expects floating point)")
            return
        weight.set_float(t, expert, dtype)  # quantized one tensor at a time: no float copy of the model
    else:
        t = _read(f, key)
        weight.set_part(part, t, expert, key, dtype)
    if progress is not None:
        progress.update(t.numel() * t.element_size())


def _check_single_home(present: set, file: str, wm: dict) -> None:
    """A tensor must live in exactly one shard: two copies that may differ are refused, not guessed between."""
    twice = sorted(k for k in present if wm.get(k, file) != file)
    if twice:
        raise CheckpointError(
            f"{file} also holds {twice[0]!r}, which the index assigns to {wm[twice[0]]}"
            + (f" (and {len(twice) - 1} more duplicated tensors)" if len(twice) > 1 else "")
            + "; a tensor must live in exactly one shard: re-download or re-save the checkpoint"
        )


def _target(model, f, key: str, key_map, found: _Findings):
    """Where the stored tensor `key` goes: (module, attribute, parameter, Mapped), after the checks that need no
    read (name, dtype, shape); None when it goes nowhere (recorded in `found`)."""
    m = key_map.to_omni(key)
    mod, attr, param = _get_param(model, m.name) if m else (None, None, None)
    if mod is None:
        found.unexpected.append(key)
        return None
    stored = f.get_slice(key)
    shape = tuple(stored.get_shape())
    if param.is_floating_point() and stored.get_dtype() not in _FLOAT_DTYPES:
        found.wrong_dtype.append(f"{key} {stored.get_dtype()} (model expects floating point)")
        return None
    want = tuple(param.shape[1:]) if m.expert is not None else tuple(param.shape)
    if shape != want or (m.expert is not None and m.expert >= param.shape[0]):
        found.wrong_shape.append(f"{key} {list(shape)} (model expects {list(want)})")
        return None
    return mod, attr, param, m


def _place(target, t: torch.Tensor, device, found: _Findings) -> None:
    """Put a read tensor into its parameter: a whole one as it is, one expert into its slot of the stack."""
    mod, attr, param, m = target
    if m.expert is None:
        _set(mod, attr, t.to(device))  # owned (Shard.get_tensor) or deliberately mapped (_stays_mapped): no copy
    else:
        if param.is_meta:  # first expert seen: allocate the whole stack once
            found.stacked[m.name] = param.shape
            _set(mod, attr, torch.empty(param.shape, dtype=t.dtype, device=device))
            param = getattr(mod, attr)
        with torch.no_grad():
            param[m.expert].copy_(t)
    found.filled[m.name].add(m.expert)


def _init_buffers(model: nn.Module, device) -> None:
    """Recompute non-persistent buffers (rotary tables...) that the meta-device build left empty."""
    for mod in model.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_meta:
                mod._buffers[name] = torch.empty(buf.shape, dtype=buf.dtype, device=device)
        if hasattr(mod, "init_buffers"):
            mod.init_buffers()


# ----------------------------------------------------------------------------------------------------------------
# Saving


def parse_size(size) -> int:
    """A shard size limit: bytes (int) or a string such as "5GB", "500MB", "2GiB"; CheckpointError otherwise."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    if isinstance(size, int) and not isinstance(size, bool):
        n = size
    elif isinstance(size, str):
        s = size.strip().upper()
        unit = next((u for u in sorted(units, key=len, reverse=True) if s.endswith(u)), "B")
        try:
            n = float(s[: len(s) - len(unit)] if s.endswith(unit) else s) * units[unit]
        except ValueError:
            n = None
    else:
        n = None
    if n is None or not n == n or n < 1 or n == float("inf"):
        raise CheckpointError(f"max_shard_size must be a positive byte count or a size such as '5GB' or '500MB', "
                              f"got {size!r}")
    return int(n)


def official_state_dict(model: nn.Module):
    """Yield (official key, tensor) for every parameter of `model`, per-expert tensors split out again."""
    key_map = weights_of(model).key_map
    for name, p in model.named_parameters():
        keys = key_map.to_official(name, p.shape[0] if key_map.is_stacked(name) else 0)
        if keys is None:
            raise CheckpointError(f"omni parameter {name!r} has no official name in the key map")
        if len(keys) == 1 and not key_map.is_stacked(name):
            yield keys[0], p.detach()
        else:
            for e, key in enumerate(keys):
                yield key, p.detach()[e]
    yield from packed_state(model, key_map)  # quantized layers: the format's packed tensors


def save_state(model: nn.Module, directory: str, max_shard_size="5GB") -> None:
    """Write the weights in the official layout into `directory` (a fresh folder: omni.save stages it, see
    omni.checkpoints.commit)."""
    limit = parse_size(max_shard_size)
    os.makedirs(directory, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size, total = 0, 0
    for key, t in official_state_dict(model):
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][key] = t.contiguous().cpu()
        size += n
        total += n
    if len(shards) == 1:
        save_file(shards[0], os.path.join(directory, SINGLE_NAME), metadata={"format": "pt"})
        return
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    wm = {}
    for name, shard in zip(names, shards):
        save_file(shard, os.path.join(directory, name), metadata={"format": "pt"})
        wm.update({k: name for k in shard})
    with open(os.path.join(directory, INDEX_NAME), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
