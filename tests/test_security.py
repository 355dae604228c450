"""Security: omni never unpickles, never runs code from a checkpoint, and downloads only the files it needs.

- The package source is scanned (ast): no pickle-family imports, no torch.load / np.load(allow_pickle=True), no
  eval / exec / compile / __import__, no trust_remote_code, no subprocess with shell=True, no os.system / os.popen.
- Hub downloads ask for metadata files and .safetensors shards only (huggingface_hub.snapshot_download is replaced
  by a fake hub that serves a local tiny checkpoint plus a planted pickle and Python file).
- A checkpoint's chat template runs in jinja's sandbox; reaching for Python internals is a ConfigError.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import shutil
from pathlib import Path

import pytest

import omni
from omni.checkpoints import hub
from omni.errors import ConfigError

PACKAGE = Path(omni.__file__).parent
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
BANNED_CALLS = {"torch.load", "torch.jit.load", "torch.serialization.load", "os.system", "os.popen",
                "pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load"}
BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _findings(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            if func in BANNED_CALLS or (isinstance(node.func, ast.Name) and func in BANNED_BUILTINS):
                found.append(f"{where} call {func}()")
            for kw in node.keywords:
                truthy = isinstance(kw.value, ast.Constant) and bool(kw.value.value)
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where} {func}(shell=...)")
                unknown = not isinstance(kw.value, ast.Constant)
                if kw.arg in ("allow_pickle", "trust_remote_code") and (truthy or unknown):
                    found.append(f"{where} {func}({kw.arg}=...)")
                if kw.arg == "weights_only" and not (isinstance(kw.value, ast.Constant) and kw.value.value is True):
                    found.append(f"{where} {func}(weights_only=...)")
        elif isinstance(node, ast.Name) and node.id == "trust_remote_code":
            found.append(f"{where} name trust_remote_code")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and node.slice.value == "trust_remote_code":  # kwargs["trust_remote_code"] = ...
            found.append(f"{where} subscript trust_remote_code")
    return found


def test_package_never_unpickles_or_runs_code():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the scan really sees the package
    found = []
    for path in files:
        found += _findings(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not found, "unsafe constructs in omni:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import pickle", "from dill import loads", "import torch\ntorch.load('x.pt')", "eval('1')", "exec('x = 1')",
    "import subprocess\nsubprocess.run('ls', shell=True)", "import os\nos.system('ls')",
    "AutoModel.from_pretrained('x', trust_remote_code=True)", "np.load('x.npy', allow_pickle=True)",
    "torch.load('x', weights_only=False)", "kwargs['trust_remote_code'] = True",
])
def test_the_scanner_catches_each_construct(snippet):
    assert _findings(snippet, "snippet.py"), snippet


def test_the_scanner_lets_safe_code_through():
    safe = ("import subprocess\nsubprocess.run(['ls'], shell=False)\nmodel.eval()\npickle = 'spk_dict.pt'\n"
            '"""never pass trust_remote_code"""\n')  # prose may name it
    assert _findings(safe, "safe.py") == []


# -- hub downloads ------------------------------------------------------------------------------------------------


@pytest.fixture()
def fake_hub(tiny_model_dir, tmp_path, monkeypatch):
    """Replace snapshot_download with a hub serving a sharded tiny checkpoint plus files omni must never fetch."""
    repo = tmp_path / "repo"
    model = omni.load(tiny_model_dir, quiet=True)
    omni.save(model, repo, max_shard_size="2MB")
    for name in ("modeling_evil.py", "pytorch_model.bin", "spk_dict.pt", "optimizer.pt", "run.sh"):
        (repo / name).write_bytes(b"never download me")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "allow_patterns": list(allow_patterns or []), **kwargs})
        assert allow_patterns, "a download without allow_patterns would fetch the whole repository"
        local = tmp_path / "snapshot" / repo_id.replace("/", "--")
        local.mkdir(parents=True, exist_ok=True)
        for f in os.listdir(repo):
            if any(fnmatch.fnmatch(f, p) for p in allow_patterns):
                shutil.copy(repo / f, local / f)
        return str(local)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repo, calls


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from omni.demo import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")))


def _allowed(pattern: str) -> bool:
    return pattern in hub.METADATA_PATTERNS or (pattern.endswith(".safetensors") and "*" not in pattern)


def test_hub_downloads_only_the_listed_patterns(fake_hub):
    repo, calls = fake_hub
    model = omni.load("org/tiny-omni", components=("thinker",), quiet=True)
    assert model.thinker is not None and model.talker is None
    assert calls and all(c["repo_id"] == "org/tiny-omni" for c in calls)
    requested = [p for c in calls for p in c["allow_patterns"]]
    assert all(_allowed(p) for p in requested), requested
    assert not any(c.get("trust_remote_code") for c in calls)
    # only the shards holding thinker tensors, and nothing planted beside them
    import json

    wm = json.loads((repo / "model.safetensors.index.json").read_text())["weight_map"]
    thinker_shards = {f for k, f in wm.items() if k.startswith("thinker.")}
    shards = {p for p in requested if p.endswith(".safetensors")}
    assert shards == thinker_shards
    snapshot = next((repo.parent / "snapshot").iterdir())
    fetched = set(os.listdir(snapshot))
    assert not fetched & {"modeling_evil.py", "pytorch_model.bin", "spk_dict.pt", "optimizer.pt", "run.sh"}


def test_hub_config_only_asks_for_config_json(fake_hub):
    _, calls = fake_hub
    directory = hub.resolve_config_dir("org/tiny-omni")
    assert calls[-1]["allow_patterns"] == ["config.json"]
    assert omni.OmniConfig.from_pretrained(directory).thinker.text_config.hidden_size == 64


def test_metadata_patterns_name_no_code_or_pickles():
    for pattern in hub.METADATA_PATTERNS:
        assert not pattern.endswith((".py", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".sh")), pattern
        assert pattern not in ("*", "*.*"), pattern


# -- chat templates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.append(1) }}",
    "{{ cycler.__init__.__globals__.os.system('echo pwned') }}",
])
def test_hostile_chat_template_is_refused(template):
    from omni.media.chat import render_chat

    with pytest.raises(ConfigError, match="unsafe operation.*trusted one"):
        render_chat([{"role": "user", "content": "hi"}], template)
    assert render_chat([{"role": "user", "content": "hi"}]).startswith("<|im_start|>user\nhi")
