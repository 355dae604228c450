"""Resolving a hub repo id to a local snapshot, downloading only the files the requested components need."""

from __future__ import annotations

import json
import os
import re

from ..errors import CheckpointError
from .io import INDEX_NAME, SINGLE_NAME, component_of

# Small files every load needs: config, index, tokenizer, processor and chat template. Never code or pickles.
METADATA_PATTERNS = ["*.json", "merges.txt", "vocab.json", "*.jinja"]
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_repo_id(s: str) -> bool:
    return bool(_REPO_ID.match(s)) and not os.path.exists(s)


def shard_patterns(weight_map: dict[str, str], components) -> list[str]:
    """The shard files holding at least one tensor of the requested components (sorted)."""
    return sorted({f for k, f in weight_map.items() if component_of(k) in components or component_of(k) is None})


def resolve(path_or_repo_id: str, components, revision: str | None = None, quiet: bool = False) -> str:
    """A local checkpoint directory for `path_or_repo_id`, downloading from the hub if it is a repo id."""
    path = os.fspath(path_or_repo_id)
    if os.path.isdir(path):
        return path
    if not is_repo_id(path):
        raise CheckpointError(f"{path!r} is neither a checkpoint directory nor a hub repo id like 'Qwen/Qwen3-Omni-30B-A3B-Instruct'")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"huggingface_hub is needed to download {path}: {e}") from None
    (disable_progress_bars if quiet else enable_progress_bars)()
    try:
        local = snapshot_download(path, revision=revision, allow_patterns=METADATA_PATTERNS)
        index = os.path.join(local, INDEX_NAME)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                shards = shard_patterns(json.load(f)["weight_map"], components)
        else:
            shards = [SINGLE_NAME]
        return snapshot_download(path, revision=revision, allow_patterns=METADATA_PATTERNS + shards)
    except CheckpointError:
        raise
    except Exception as e:  # network, auth, missing repo: all surface as one clear error
        raise CheckpointError(f"could not download {path} from the hub: {e}") from None


def resolve_config_dir(path_or_repo_id: str, revision: str | None = None) -> str:
    """A directory holding config.json: the path itself, or a hub snapshot of just the small metadata files."""
    path = os.fspath(path_or_repo_id)
    if os.path.isdir(path) or os.path.isfile(path):
        return path
    if not is_repo_id(path):
        raise CheckpointError(f"{path!r} is neither a checkpoint directory, a config.json, a preset nor a repo id")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, revision=revision, allow_patterns=["config.json"])
    except Exception as e:
        raise CheckpointError(f"could not download the config of {path} from the hub: {e}") from None
