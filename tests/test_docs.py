"""The docs stay true: generated blocks match the code, every Python snippet runs, every relative link resolves.

- `docs/generate.py --check` regenerates the shape, parameter and position blocks from real runs and diffs them
  against the committed pages (fix: run `python docs/generate.py` and commit).
- Each ```python block of the pages in RUNNABLE runs, in order, in one namespace, in a fresh directory; a block
  right after `<!-- not run: why -->` is skipped (it needs real weights or the network).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
_CODE = re.compile(r"(<!-- not run:[^>]*-->\s*)?```python\n(.*?)```", re.S)
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


# pages whose snippets are written to run as they stand (performance.md and training.md show fragments)
RUNNABLE = ("positions.md", "loading.md", "generation.md", "custom-model.md", "parity.md")


def _pages():
    return sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))


def _snippets(page: str) -> list[str]:
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        text = f.read()
    return [m.group(2) for m in _CODE.finditer(text) if not m.group(1)]


@pytest.mark.slow
def test_generated_blocks_are_up_to_date():
    r = subprocess.run([sys.executable, os.path.join(DOCS, "generate.py"), "--check"], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, f"docs are stale; run `python docs/generate.py`\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"


def test_generator_finds_every_marker():
    sys.path.insert(0, DOCS)
    try:
        import generate
    finally:
        sys.path.remove(DOCS)
    for page, names in generate.PAGES.items():
        with open(os.path.join(DOCS, page), encoding="utf-8") as f:
            found = [m.group(2) for m in generate._BLOCK.finditer(f.read())]
        assert sorted(found) == sorted(names), page


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    if not os.path.exists(os.path.join(DOCS, page)):
        pytest.fail(f"docs/{page} is missing")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(os.path.join(ROOT, "tests"))  # parity.md imports tests/reference.py
    namespace = {"__name__": f"docs_{page}"}
    for i, code in enumerate(_snippets(page)):
        try:
            exec(compile(code, f"{page}[python block {i + 1}]", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            raise AssertionError(f"{page}: python block {i + 1} failed: {type(e).__name__}: {e}") from e


@pytest.mark.parametrize("page", ["../README.md"] + _pages())
def test_relative_links_resolve(page):
    path = os.path.normpath(os.path.join(DOCS, page))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for target in _LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert os.path.exists(os.path.join(os.path.dirname(path), target)), f"{page}: broken link {target}"
