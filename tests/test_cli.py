"""The `omni` command line, driven in subprocesses on a tiny checkpoint saved in a temp dir."""

import json
import os
import subprocess
import sys

import pytest

from omni.demo import build_tiny_checkpoint


def run(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "omni.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(build_tiny_checkpoint(str(tmp_path_factory.mktemp("cli") / "tiny")))


def test_cli_help():
    r = run("--help")
    assert r.returncode == 0
    for sub in ("demo", "generate", "info", "convert"):
        assert sub in r.stdout


def test_cli_info_full_size_preset():
    r = run("info", "--model", "qwen3-omni-30b-a3b")
    assert r.returncode == 0, r.stderr
    assert "thinker LM" in r.stdout and "active/token" in r.stdout
    row = [line for line in r.stdout.splitlines() if line.startswith("thinker LM")][-1]  # the table row
    total, active = (int(x.replace(",", "")) for x in row.split()[-2:])
    assert 30e9 < total < 31e9 and 3e9 < active < 3.6e9  # "30B-A3B"


def test_cli_info_checkpoint_dir(tiny_dir):
    r = run("info", "--model", tiny_dir)
    assert r.returncode == 0, r.stderr
    assert "thinker LM" in r.stdout


def test_cli_demo(tmp_path):
    r = run("demo", "--save", str(tmp_path / "demo"), "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr
    assert "RANDOM weights" in r.stdout and "generated ids" in r.stdout
    assert os.path.isfile(tmp_path / "demo" / "config.json")
    import soundfile as sf

    wav, rate = sf.read(tmp_path / "demo" / "omni-demo.wav")
    assert rate == 24000 and len(wav) > 0 and "speech codes" in r.stdout


def test_cli_generate(tiny_dir):
    r = run("generate", "--model", tiny_dir, "--prompt", "hello", "--max-new-tokens", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    r2 = run("generate", "--model", tiny_dir, "--prompt", "hello", "--max-new-tokens", "5", "--quiet", "--stream")
    assert r2.returncode == 0, r2.stderr


@pytest.mark.slow
def test_cli_generate_compiled_equals_eager(tiny_dir):
    args = ("generate", "--model", tiny_dir, "--prompt", "hello", "--max-new-tokens", "6", "--quiet")
    eager, compiled = run(*args), run(*args, "--compile")
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout == eager.stdout


def test_cli_generate_speak_writes_a_wav(tiny_dir, tmp_path):
    import soundfile as sf

    for extra in ((), ("--stream",)):
        out = tmp_path / f"reply{len(extra)}.wav"
        r = run("generate", "--model", tiny_dir, "--prompt", "hello", "--max-new-tokens", "4", "--quiet", "--seed",
                "1", "--speak", str(out), "--voice", "chelsie", "--max-speech-frames", "6", *extra)
        assert r.returncode == 0, r.stderr
        wav, rate = sf.read(out)
        assert rate == 24000 and 0 < len(wav) <= 6 * 1920
    r = run("generate", "--model", tiny_dir, "--prompt", "hi", "--speak", str(tmp_path / "x.wav"), "--voice", "nobody")
    assert r.returncode == 2 and "available voices" in r.stderr and "Traceback" not in r.stderr


def test_cli_convert_casts_and_reshards(tiny_dir, tmp_path):
    out = tmp_path / "bf16"
    r = run("convert", "--model", tiny_dir, "--out", str(out), "--dtype", "bfloat16", "--max-shard-size", "100KB",
            "--quiet")
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    r = run("info", "--model", str(out))
    assert r.returncode == 0, r.stderr


def test_cli_errors_are_clean(tmp_path):
    r = run("generate", "--model", str(tmp_path / "nope" / "x"), "--prompt", "hi")
    assert r.returncode == 2
    assert "omni: error:" in r.stderr and "Traceback" not in r.stderr


def test_cli_checks_output_paths_before_any_work(tiny_dir, tmp_path):
    """A wav or checkpoint that could not be written is reported at once, not after minutes of generation."""
    import time

    (tmp_path / "a_file").write_text("x")
    for args, fragment in (
        (["generate", "--model", tiny_dir, "--prompt", "hi", "--speak", str(tmp_path / "no" / "x.wav")],
         "--speak"),
        (["generate", "--model", tiny_dir, "--prompt", "hi", "--speak", str(tmp_path)], "is a directory"),
        (["convert", "--model", tiny_dir, "--out", str(tmp_path / "a_file")], "is not a directory"),
        (["demo", "--save", str(tmp_path / "no" / "ckpt")], "does not exist"),
    ):
        t0 = time.perf_counter()
        r = run(*args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("omni: error:") and fragment in lines[0], r.stderr
        assert time.perf_counter() - t0 < 60


def test_cli_bad_values_are_one_line(tiny_dir):
    r = run("generate", "--model", tiny_dir, "--prompt", "hi", "--max-new-tokens", "-3", "--quiet")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "max_new_tokens" in r.stderr
    r = run("convert", "--model", tiny_dir, "--out", tiny_dir + "-x", "--max-shard-size", "big")
    assert r.returncode == 2 and "max_shard_size" in r.stderr and "Traceback" not in r.stderr
