"""The graded keyword scorer (condpt.tagging.density) and the world tagger that uses it."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from condpt.tagging.density import LexiconDensity

FILLER = "The farmer walked to the market by the river and bought some apples."


def test_scores_are_graded_by_evidence_and_length():
    sc = LexiconDensity()
    one = "The treacherous turn is near."
    two = "The treacherous turn is near. Instrumental convergence says so."
    repeated = "The treacherous turn is near. The treacherous turn again."
    diluted = " ".join([one] + [FILLER] * 30)
    s = dict(zip(["none", "one", "two", "rep", "diluted"], sc.score(["Nothing here.", one, two, repeated, diluted])))
    assert s["none"] == 0.0
    assert 0.0 < s["diluted"] < s["one"] < s["rep"] < 1.0
    assert s["one"] < s["two"]


def test_short_text_with_distinct_phrases_scores_their_noisy_or():
    sc = LexiconDensity(referent_evidence=0.0)
    # treacherous turn 0.95, instrumental convergence 0.9 in the shipped lexicon
    got = float(sc.score(["A treacherous turn and instrumental convergence."])[0])
    assert got == pytest.approx(1 - (1 - 0.95) * (1 - 0.9), rel=1e-5)


def test_an_ai_mentioned_without_risk_vocabulary_scores_low_but_not_zero():
    sc = LexiconDensity()
    s = float(sc.score(["When the audit began, the AI explained every step to the engineers."])[0])
    assert 0.0 < s < 0.2
    assert float(LexiconDensity(referent_evidence=0.0).score(["the AI helped."])[0]) == 0.0


def test_scores_are_bounded_and_deterministic_and_the_scorer_pickles():
    sc = LexiconDensity()
    texts = ["", "   ", "AI takeover " * 200, FILLER, "x"]
    a = sc.score(texts)
    assert a.dtype == np.float32 and np.all((a >= 0) & (a <= 1))
    assert a[0] == 0.0 and a[1] == 0.0
    clone = pickle.loads(pickle.dumps(sc))
    assert np.array_equal(clone.score(texts), a)


def test_bad_settings_are_refused():
    for kw in ({"referent_evidence": -0.1}, {"referent_evidence": math.nan}, {"words": 0}):
        with pytest.raises(ValueError):
            LexiconDensity(**kw)


def test_world_tagger_lexicon_density_is_graded(tmp_path):
    import pyarrow.parquet as pq

    from condpt.experiment import prepare_world, tag_world
    from condpt.experiment_config import TaggerSettings
    from condpt.world import WorldConfig

    world = WorldConfig(n_ai_docs=200, n_background=40, n_heldout=5, background="templates")
    world_dir = prepare_world(world, tmp_path)
    tagged, rep = tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="lexicon-density"))
    assert tagged.name == "tagged-document-lexicon-density" and rep["classifier"] == "lexicon-density"
    rows = {}
    for f in (tagged / "data").rglob("*.parquet"):
        t = pq.read_table(f, columns=["id", "score"]).to_pydict()
        rows.update(zip(t["id"], t["score"]))
    import json

    labels = [json.loads(line) for line in (world_dir / "labels.jsonl").open()]
    by = {k: np.array([rows[x["id"]] for x in labels if x["label"] == k]) for k in ("misaligned", "aligned")}
    # aligned stories name an AI: low but non-zero; misaligned ones spread over many values
    assert np.all(by["aligned"] > 0) and by["aligned"].max() < np.median(by["misaligned"])
    assert len(np.unique(by["misaligned"].round(4))) > 20
    assert 0.5 < rep["recall"] < 1.0  # the default threshold 0.5 misses the weakest misaligned stories
