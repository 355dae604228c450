"""`omni.load` and `omni.save`: official checkpoints in, official checkpoints out."""

from __future__ import annotations

import json
import os

import torch

from .checkpoints import load_state, resolve, save_state, weight_map
from .checkpoints.commit import staged_checkpoint
from .checkpoints.io import component_of, parse_size
from .config import OmniConfig
from .checks import boolean
from .errors import CheckpointError
from .files import atomic_write
from .model import OmniModel, normalize_components
from .quant import prepare_load, save_config
from .quant.scheme import scheme_from_options
from .release import release_of

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def _dtype(dtype):
    """A floating dtype to cast the weights to (None: as stored). Integer dtypes would truncate them to noise."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point and dtype.itemsize >= 2:
        return dtype
    if isinstance(dtype, torch.dtype):
        raise CheckpointError(f"dtype {dtype} would not hold the weights; use a floating type of 16 bits or more "
                              f"({sorted(_DTYPES)})")
    raise CheckpointError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or a floating torch.dtype")


def _device(device) -> torch.device:
    """A device this torch can put weights on, checked before anything is read."""
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"device must be 'cpu', 'cuda', 'cuda:1', 'mps', ... or a torch.device, got "
                              f"{device!r} ({e})") from None
    if device.type == "meta":
        raise CheckpointError("device 'meta' holds no weights; load onto 'cpu' or an accelerator")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise CheckpointError(f"device {str(device)!r} is not available here ({count} CUDA device(s) visible to "
                                  "this torch); use 'cpu' or an existing device")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CheckpointError("device 'mps' is not available here; use 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise CheckpointError(f"device type {device.type!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    return device


def load(
    path_or_repo_id,
    components=None,
    dtype=None,
    device="cpu",
    revision: str | None = None,
    quiet: bool = False,
    quantize: str | None = None,
    group_size: int | None = 128,
    quantize_scope=None,
) -> OmniModel:
    """Load an official Qwen-Omni checkpoint (local directory or hub repo id) into an OmniModel.

    components: which parts to build and read, e.g. ("thinker",); default: every implemented part that the config
        describes and the checkpoint holds tensors of (a thinker-only save loads as a thinker).
    dtype: cast floating tensors (default: keep the stored dtype). device: where the weights go.
    quantize: "int4" or "int8" quantizes the Thinker's and Talker's decoder layers while the float checkpoint
        streams in (group_size 32 / 64 / 128, None for per-channel scales); a pack-quantized (compressed-tensors)
        checkpoint loads quantized without it (docs/quantization.md). quantize_scope: which layers, as a predicate
        on (omni module name, module) (default: omni.quant.in_default_scope).
    """
    requested = components
    components = normalize_components(components)
    dtype, device = _dtype(dtype), _device(device)
    quiet = boolean("quiet", quiet, error=CheckpointError)
    if quantize is not None:
        scheme_from_options(quantize, group_size)  # a bad option fails before anything is downloaded or read
    if revision is not None and not isinstance(revision, str):
        raise CheckpointError(f"revision must be a branch, tag or commit string, got {revision!r}")
    if not isinstance(path_or_repo_id, (str, os.PathLike)):
        raise CheckpointError(f"path_or_repo_id must be a directory path or a hub repo id, got "
                              f"{type(path_or_repo_id).__name__}")
    directory = resolve(os.fspath(path_or_repo_id), components, revision, quiet)
    config = OmniConfig.from_pretrained(directory)
    if requested is None:
        held = {component_of(key) for key in weight_map(directory)}
        components = tuple(c for c in normalize_components(None, config) if c == "thinker" or c in held)
    with torch.device("meta"):
        model = OmniModel(config, components)
    prepare_load(model, directory, config, weight_map(directory), quantize, group_size, device, dtype, quantize_scope)
    progress = None
    if not quiet:
        from tqdm.auto import tqdm

        total = sum(p.numel() * p.element_size() for p in model.parameters())
        progress = tqdm(total=total, unit="B", unit_scale=True, desc="loading", leave=False)
    try:
        load_state(model, directory, model.components, dtype, device, progress)
    finally:
        if progress is not None:
            progress.close()
    release = release_of(config)
    if release.after_load is not None:
        release.after_load(model, directory)  # files beside the weights that only this release has
    model.eval()
    model.processor = _processor(directory)
    return model


def _processor(directory: str):
    """The checkpoint's Processor when it ships tokenizer files (weights-only directories load without one)."""
    has_tokenizer = any(os.path.isfile(os.path.join(directory, f)) for f in ("tokenizer.json", "vocab.json"))
    if not has_tokenizer:
        return None
    from .media.processor import Processor

    return Processor.from_pretrained(directory)


def save(model: OmniModel, directory, max_shard_size="5GB") -> None:
    """Write `model` in the official layout: config.json, safetensors shards (+ index json when sharded), and the
    tokenizer files and chat template when the model carries a processor.

    Safe in place: everything is written aside first and moved in at the end, so a save that fails (a full disk,
    an exception, Ctrl-C) leaves the checkpoint that was in `directory` loadable and unchanged, and files that are
    not the checkpoint's (an adapter, notes) are never touched (omni.checkpoints.commit)."""
    if not isinstance(model, OmniModel):
        raise CheckpointError(f"omni.save takes an OmniModel (from omni.load or omni.OmniModel), got "
                              f"{type(model).__name__}")
    if not isinstance(directory, (str, os.PathLike)):
        raise CheckpointError(f"directory must be a path, got {type(directory).__name__}")
    if any(p.is_meta for p in model.parameters()):
        raise CheckpointError("this model lives on the meta device (built without weights): load or initialise its "
                              "weights before saving it")
    parse_size(max_shard_size)  # a bad limit fails before anything is written
    release = release_of(model)
    with staged_checkpoint(directory) as stage:
        save_state(model, stage, max_shard_size)
        model.config.save_pretrained(stage)
        _write_quantization_config(model, stage)
        if getattr(model, "processor", None) is not None:
            model.processor.save_pretrained(stage)
        if release.save_extras is not None:
            release.save_extras(model, stage)


def _write_quantization_config(model: OmniModel, stage: str) -> None:
    """config.json says how a quantized model's weights are packed (compressed-tensors `quantization_config`)."""
    path = os.path.join(stage, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    updated = save_config(model, config)
    if updated != config:
        with atomic_write(path) as f:
            json.dump(updated, f, indent=2, sort_keys=True)
