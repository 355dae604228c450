"""Shared fixtures of the bad-input catalogue: one tiny random checkpoint, a model loaded from it, and probes that
a failure left the process healthy (no leaked file descriptors, bounded memory)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

import omni
from omni.demo import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
    """The `tiny` preset with random weights, its tokenizer and config, in the official single-file layout."""
    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_ckpt")), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    return omni.load(tiny_dir, quiet=True)


def open_fds() -> int:
    """File descriptors this process holds now: a failed load must not leave shards open."""
    return len(os.listdir("/proc/self/fd"))


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


@contextmanager
def peak_rss_growth():
    """Measure how far the resident set rose above its level at entry (bytes), read from /proc.

    Writing 5 to /proc/self/clear_refs resets the high-water mark VmHWM to the current RSS, so the peak seen
    inside the block is the block's own."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    base = _status("VmRSS")
    result = {}
    try:
        yield result
    finally:
        result["bytes"] = _status("VmHWM") - base


def assert_healthy_generation(model) -> None:
    """A normal request after a failure still produces tokens."""
    out = model.generate([{"role": "user", "content": "hello"}], max_new_tokens=2)
    assert out.tokens.shape == (1, 2)
