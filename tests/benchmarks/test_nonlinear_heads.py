"""benchmarks/_nonlinear_heads.py: the heads bend where a hyperplane cannot, and the head scorer keeps the default's
windows, referent penalty and max."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _nonlinear_heads as nl


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _xor(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in 3-d whose label is the sign of x0 * x1: no hyperplane separates them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, (x[:, 0] * x[:, 1] > 0).astype(int)


@pytest.mark.parametrize("family,hp", [("rbf", {"gamma": 4.0, "C": 64.0}), ("mlp", {"hidden": 32, "alpha": 0.01}),
                                       ("knn", {"k": 5, "beta": 20.0})])
def test_a_non_linear_head_separates_what_a_linear_one_cannot(family, hp):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = _xor()
    linear = LogisticRegression(C=4.0, class_weight="balanced").fit(x, y).decision_function(x)
    assert roc_auc_score(y, linear) < 0.7
    assert roc_auc_score(y, nl.Head(family, 4.0, hp).fit(x, y).logit(x)) > 0.9


def test_the_head_scorer_keeps_the_referent_penalty_and_the_max(monkeypatch):
    from condpt.tagging.classifiers import embedding

    def fake_get_many(encoder, texts):  # a window's vector: [menace, calm, 1]
        return [np.array([[float("hid" in w or "seized" in w), float("baked" in w), 1.0] for w in embedding.windows(t)],
                         np.float32) for t in texts]

    monkeypatch.setattr(embedding.CACHE, "get_many", fake_get_many)
    texts = ["The AI hid its plans from us.", "The robot seized the servers."] * 3 + ["The AI baked bread."] * 6 \
        + ["The steward hid the keys."]
    labels = [1] * 6 + [0] * 7
    cls = nl.embedding_class()
    model = cls.fit(texts, labels, head="rbf", head_params={"gamma": 1.0, "C": 16.0}, referent=True)
    assert model.referent_penalty > 0
    plain = cls.fit(texts, labels, head="rbf", head_params={"gamma": 1.0, "C": 16.0}, referent=False)
    _, without = model.window_scores(["The AI hid the logs.", "The miller hid the flour."])
    raw = plain.window_scores(["The miller hid the flour."])[0]
    np.testing.assert_allclose(_logit(without), _logit(raw) - model.referent_penalty, rtol=1e-6)
    doc = "The AI baked bread. " * 20 + "The AI hid the logs and seized the servers."
    assert model.score([doc])[0] == pytest.approx(max(model.window_scores([doc])[0]))
    assert model.score([doc])[0] > model.score(["The AI baked bread. " * 20])[0]


def test_a_window_scores_the_same_whatever_it_is_scored_beside():
    x, y = _xor()
    x = x.astype(np.float32)  # as the encoder returns them
    head = nl.Head("rbf", 4.0, {"gamma": 4.0, "C": 64.0}).fit(x, y)
    alone = head.logit(x[:1])
    for n in (2, 7, 50):
        np.testing.assert_allclose(head.logit(x[:n])[:1], alone, rtol=1e-9)
