"""condpt's one cache directory: every built artefact lives under it."""

from __future__ import annotations

from pathlib import Path

from condpt.cache import cache_dir


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("CONDPT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CONDPT_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "condpt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "condpt"


def test_default_scorers_and_static_table_live_under_it(monkeypatch, tmp_path):
    from condpt.tagging.classifiers.default import default_dir
    from condpt.tagging.classifiers.embedding import DEFAULT_ENCODER
    from condpt.tagging.classifiers.static import table_path

    monkeypatch.delenv("CONDPT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir("fasttext").is_relative_to(tmp_path / "condpt")
    assert table_path(DEFAULT_ENCODER).is_relative_to(tmp_path / "condpt")
