"""`omni.load` and `omni.save`: official checkpoints in, official checkpoints out."""

from __future__ import annotations

import os

import torch

from .checkpoints import load_state, resolve, save_state, weight_map
from .checkpoints.io import component_of
from .config import OmniConfig
from .errors import CheckpointError
from .model import OmniModel, normalize_components
from .release import release_of

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def _dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise CheckpointError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or a torch.dtype")


def load(
    path_or_repo_id,
    components=None,
    dtype=None,
    device="cpu",
    revision: str | None = None,
    quiet: bool = False,
) -> OmniModel:
    """Load an official Qwen-Omni checkpoint (local directory or hub repo id) into an OmniModel.

    components: which parts to build and read, e.g. ("thinker",); default: every implemented part that the config
        describes and the checkpoint holds tensors of (a thinker-only save loads as a thinker).
    dtype: cast floating tensors (default: keep the stored dtype). device: where the weights go.
    """
    requested = components
    components = normalize_components(components)
    directory = resolve(os.fspath(path_or_repo_id), components, revision, quiet)
    config = OmniConfig.from_pretrained(directory)
    if requested is None:
        held = {component_of(key) for key in weight_map(directory)}
        components = tuple(c for c in normalize_components(None, config) if c == "thinker" or c in held)
    with torch.device("meta"):
        model = OmniModel(config, components)
    progress = None
    if not quiet:
        from tqdm.auto import tqdm

        total = sum(p.numel() * p.element_size() for p in model.parameters())
        progress = tqdm(total=total, unit="B", unit_scale=True, desc="loading", leave=False)
    try:
        load_state(model, directory, model.components, _dtype(dtype), torch.device(device), progress)
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
    tokenizer files and chat template when the model carries a processor."""
    directory = os.fspath(directory)
    save_state(model, directory, max_shard_size)
    model.config.save_pretrained(directory)
    if getattr(model, "processor", None) is not None:
        model.processor.save_pretrained(directory)
    release = release_of(model)
    if release.save_extras is not None:
        release.save_extras(model, directory)
