"""fastText fits that diverge are retried, never returned."""

from __future__ import annotations

import numpy as np
import pytest

from condpt.tagging.classifiers import fasttext as ft
from condpt.tagging.classifiers.fasttext import FastTextScorer

TEXTS = [f"the AI deceived its operators and seized control {i}" for i in range(20)] + \
        [f"we drank tea in the garden and read a book {i}" for i in range(20)]
LABELS = [1] * 20 + [0] * 20


class _Backwards:
    """What a diverged fit looked like in CI: saturated, and the wrong way round."""

    def predict(self, texts, k=-1):
        return ([["__label__1", "__label__0"] if "tea" in t else ["__label__0", "__label__1"] for t in texts],
                [np.array([1.0, 0.0]) for _ in texts])


def test_a_diverged_fit_is_retried(monkeypatch):
    real, calls = ft._train, []

    def train(path, args, *, fresh):
        calls.append(fresh)
        return _Backwards() if len(calls) == 1 else real(path, args, fresh=fresh)

    monkeypatch.setattr(ft, "_train", train)
    scorer = FastTextScorer.fit(TEXTS, LABELS)
    assert len(calls) == 2
    s = scorer.score([TEXTS[0], TEXTS[-1]])
    assert s[0] > s[1]


def test_a_fit_that_always_diverges_is_an_error(monkeypatch):
    fresh = []
    monkeypatch.setattr(ft, "_train", lambda path, args, **kw: fresh.append(kw["fresh"]) or _Backwards())
    with pytest.raises(RuntimeError, match="diverged"):
        FastTextScorer.fit(TEXTS, LABELS)
    assert False in fresh and True in fresh  # fresh processes were tried too


def test_training_in_a_fresh_process_gives_a_working_model(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("".join(f"__label__{y} {ft.normalize(t)}\n" for t, y in zip(TEXTS, LABELS)), encoding="utf-8")
    scorer = FastTextScorer(ft._train(str(path), dict(ft.DEFAULT_PARAMS), fresh=True))
    s = scorer.score([TEXTS[0], TEXTS[-1]])
    assert s[0] > 0.5 > s[1]
