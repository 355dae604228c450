"""The layout rules of docs/developing.md, checked on the source (ast): shared code never imports a release, a
release never imports another, no release switch outside the release packages and the registry, every file under
400 lines, and no block of 10+ lines repeated between the two release packages or between a release and omni/nn."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "omni"
MAX_LINES = 400  # a file must stay below this
REPEAT_LINES = 10
# omni/__init__.py imports omni.models on purpose: importing omni registers the releases
MAY_IMPORT_RELEASES = {"omni/__init__.py", "omni/models/__init__.py"}


def _sources() -> dict[str, Path]:
    return {p.relative_to(ROOT.parent).as_posix(): p for p in sorted(ROOT.rglob("*.py"))}


def _module_name(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _release_of(path_or_module: str) -> str | None:
    """The release package a file path or module name belongs to (None: shared code)."""
    parts = path_or_module.replace("/", ".").split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["omni", "models"] else None


def _imports(path: str, tree: ast.AST) -> set[str]:
    """Every module `path` imports (relative imports resolved, imports inside functions included)."""
    package = _module_name(path) if path.endswith("__init__.py") else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from . import qwen3_omni` names a module
    return found


def _trees() -> dict[str, ast.AST]:
    return {path: ast.parse(p.read_text(encoding="utf-8"), path) for path, p in _sources().items()}


def test_shared_code_never_imports_a_release_and_releases_never_import_each_other():
    problems = []
    for path, tree in _trees().items():
        own = _release_of(path)
        for module in _imports(path, tree):
            other = _release_of(module)
            if other is None or other == own or path in MAY_IMPORT_RELEASES:
                continue
            who = f"release {own}" if own else "shared code"
            problems.append(f"{path}: {who} imports {module}")
    assert not problems, "\n".join(sorted(problems))


def test_every_file_is_under_the_size_limit():
    long = {path: n for path, p in _sources().items() if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert not long, f"files of {MAX_LINES}+ lines (split them by what they are): {long}"


def _release_classes(trees) -> set[str]:
    return {node.name for path, tree in trees.items() if _release_of(path)
            for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def test_no_release_switch_outside_the_release_packages():
    """Shared code reads the release's record (omni.release); it never asks which release it is running."""
    trees = _trees()
    classes = _release_classes(trees)
    problems = []
    for path, tree in trees.items():
        if _release_of(path) or path == "omni/release.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                named = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", None) for n in ast.walk(node.args[1])}
                if named & classes:
                    problems.append(f"{path}:{node.lineno}: isinstance on a release's class {sorted(named & classes)}")
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(getattr(s, "attr", getattr(s, "id", None)) == "model_type" for s in sides):
                    problems.append(f"{path}:{node.lineno}: compares a model_type")
    assert not problems, "\n".join(problems)


def _windows(path: Path) -> dict[tuple, int]:
    """Every run of REPEAT_LINES code lines (stripped; blank lines, comments and imports left out) -> its first line
    number."""
    lines = [(i + 1, s.strip()) for i, s in enumerate(path.read_text().splitlines())]
    code = [(n, s) for n, s in lines if s and not s.startswith(("#", "import ", "from "))]
    return {tuple(s for _, s in code[i:i + REPEAT_LINES]): code[i][0] for i in range(len(code) - REPEAT_LINES + 1)}


def test_no_block_repeated_between_releases_or_between_a_release_and_nn():
    sources = _sources()
    groups = {"qwen3_omni": [], "qwen2_5_omni": [], "nn": []}
    for path, p in sources.items():
        key = _release_of(path) or ("nn" if path.startswith("omni/nn/") else None)
        if key in groups:
            groups[key].append((path, _windows(p)))
    problems = []
    for a, b in (("qwen3_omni", "qwen2_5_omni"), ("qwen3_omni", "nn"), ("qwen2_5_omni", "nn")):
        for path_a, win_a in groups[a]:
            for path_b, win_b in groups[b]:
                for run in win_a.keys() & win_b.keys():
                    problems.append(f"{path_a}:{win_a[run]} == {path_b}:{win_b[run]}")
    assert not problems, "blocks of 10+ identical lines (move them into omni/nn or the shared core):\n" + "\n".join(
        sorted(problems)[:20])


@pytest.mark.parametrize("release", ["qwen3_omni", "qwen2_5_omni"])
def test_release_packages_have_the_same_file_names(release):
    """So that `diff omni/models/qwen3_omni/X.py omni/models/qwen2_5_omni/X.py` answers "how do they differ"."""
    names = {p.name for p in (ROOT / "models" / release).glob("*.py")}
    assert {"__init__.py", "config.py", "weights.py", "vision.py", "audio.py", "talker.py", "speech.py"} <= names


def test_each_release_registers_one_record():
    import omni
    from omni.release import Release, releases

    registered = releases()
    assert sorted(registered) == ["qwen2_5_omni", "qwen3_omni_moe"]
    for model_type, release in registered.items():
        assert isinstance(release, Release) and release.model_type == model_type
        assert release.config.from_dict(omni.PRESETS[next(iter(release.presets))]).model_type == model_type
