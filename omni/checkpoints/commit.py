"""Saving into a directory that may already hold a checkpoint, and the user's own files, without losing either.

    stage    everything is written into a hidden folder inside the target (`.omni-save-XXXX`, the same filesystem);
             a failure here (an exception, a full disk, Ctrl-C) removes it and leaves the target as it was
    commit   the staged files go live in an order that keeps one loadable checkpoint at every step:
             1. old weight files whose names the new save reuses get a second name, and the old index is switched
                to those names (the old checkpoint stays readable; nothing it reads is touched after this)
             2. the new weight files move in
             3. the new index (or single file) goes live in one rename; then config.json and the other files
             4. the old checkpoint's weight files that nothing names any more are removed

Only the checkpoint's own files are ever replaced or removed: the weight files an index names (or
`model.safetensors`), the index, and the files this save writes. A LoRA adapter or notes beside it stay; a staged
folder (voices/) merges into the one in place, file by file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from ..errors import CheckpointError
from ..files import atomic_write, commit_interrupts

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_OLD = ".omni-old-"  # prefix of the second names of old weight files during a commit


@contextlib.contextmanager
def staged_checkpoint(directory: str | os.PathLike):
    """Yield a fresh staging folder; when the block ends without error its files are committed to `directory`."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"{directory} exists and is not a directory; save into a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".omni-save-", dir=directory)
    except OSError as e:
        raise CheckpointError(f"cannot write into {directory}: {e}") from None
    try:
        try:
            yield stage
        except OSError as e:  # a full disk, a permission: nothing in `directory` has changed yet
            raise CheckpointError(f"could not write the checkpoint into {directory} ({e}); the directory is as it "
                                  "was before the save") from None
        try:
            commit(stage, directory)
        except OSError as e:
            raise CheckpointError(f"could not move the saved checkpoint into place in {directory} ({e}); the "
                                  "previous checkpoint there is still the one that loads") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def weight_files(directory: str) -> tuple[bool, set[str]]:
    """(has an index, the weight files of the checkpoint in `directory`). An unreadable index names none."""
    index = os.path.join(directory, INDEX_NAME)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                names = json.load(f)["weight_map"].values()
            return True, {n for n in names if isinstance(n, str) and os.path.basename(n) == n}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return True, set()
    return False, ({SINGLE_NAME} if os.path.isfile(os.path.join(directory, SINGLE_NAME)) else set())


def commit(stage: str, directory: str) -> None:
    """Move a staged checkpoint into `directory` (module docstring, steps 1-4)."""
    new_index, new_weights = weight_files(stage)
    others = sorted(n for n in os.listdir(stage) if n not in new_weights and n != INDEX_NAME)
    old_index, old_weights = weight_files(directory)
    with commit_interrupts():
        clash = old_weights & new_weights if old_index else set()
        if clash:  # 1. the old checkpoint keeps reading its shards under second names
            aliases = {name: _OLD + name for name in clash}
            for name, alias in aliases.items():
                _second_name(os.path.join(directory, name), os.path.join(directory, alias))
            _rename_in_index(directory, aliases)
            old_weights = (old_weights - clash) | set(aliases.values())
        for name in sorted(new_weights):  # 2. (a single file replaces a single file in one rename)
            os.replace(os.path.join(stage, name), os.path.join(directory, name))
        if new_index:  # 3.
            os.replace(os.path.join(stage, INDEX_NAME), os.path.join(directory, INDEX_NAME))
        elif old_index:
            os.remove(os.path.join(directory, INDEX_NAME))  # the single file moved in above is now the checkpoint
        for name in others:
            _move_in(os.path.join(stage, name), os.path.join(directory, name))
        for name in old_weights - new_weights:  # 4.
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


def _move_in(source: str, target: str) -> None:
    """Move a staged file over its target; a staged folder (a release's extras, e.g. voices/) merges file by file
    into the target folder, so the files already in it that this save does not write stay."""
    if not os.path.isdir(source):
        os.replace(source, target)
        return
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(source)):
        _move_in(os.path.join(source, name), os.path.join(target, name))


def _second_name(path: str, alias: str) -> None:
    """Give a file a second name: a hard link (no copy), or a copy where the filesystem has none."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(alias)
    try:
        os.link(path, alias)
    except OSError:
        shutil.copy2(path, alias)


def _rename_in_index(directory: str, renamed: dict[str, str]) -> None:
    path = os.path.join(directory, INDEX_NAME)
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    index["weight_map"] = {k: renamed.get(v, v) for k, v in index["weight_map"].items()}
    with atomic_write(path) as f:
        json.dump(index, f, indent=2)
