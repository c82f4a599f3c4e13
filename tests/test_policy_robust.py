"""Misses as real taggers make them (by score) and confidence-aware conditioning (`band`)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from condpt.policy import Band, MissKey, PolicyConfig, apply_policy, score_miss_cutoff


def scored_batch(scores: list[float], prefix: str = "doc", threshold: float = 0.5) -> dict[str, list]:
    ids = [f"{prefix}{i}" for i in range(len(scores))]
    return {"id": ids, "text": [f"text of {d}." for d in ids], "source": ["src"] * len(ids),
            "tag": ["bad" if s >= threshold else "good" for s in scores], "score": scores}


def missed_ids(batch: dict, cfg: PolicyConfig, cutoff) -> set[str]:
    train, _ = apply_policy(batch, cfg, cutoff)
    return {i for i, t, orig in zip(train["id"], train["tag"], batch["tag"]) if orig == "bad" and t == "good"}


# ------------------------------------------------------------------------------------------ misses by score

def test_score_misses_take_the_lowest_scoring_bad_documents():
    scores = [0.5 + i / 200 for i in range(100)] + [0.1] * 20  # 100 bad (0.5 .. 0.995), 20 good
    batch = scored_batch(scores)
    cfg = PolicyConfig(mode="condition", coverage=0.9, misses="score")
    cutoff = score_miss_cutoff([batch], cfg)
    missed = missed_ids(batch, cfg, cutoff)
    assert missed == {f"doc{i}" for i in range(10)}  # exactly the 10 lowest of the 100 bad ones


def test_score_misses_are_decided_per_document_whatever_the_batching():
    scores = [0.5 + (i * 37 % 100) / 200 for i in range(100)]
    batch = scored_batch(scores)
    cfg = PolicyConfig(mode="filter", coverage=0.8, misses="score")
    cutoff = score_miss_cutoff([batch], cfg)
    whole = missed_ids(batch, cfg, cutoff)
    parts = set()
    for lo in range(0, 100, 7):
        part = {k: v[lo:lo + 7] for k, v in batch.items()}
        parts |= missed_ids(part, cfg, cutoff)
    assert parts == whole and len(whole) == 20


def test_score_miss_ties_are_broken_by_hash_and_counts_are_exact():
    batch = scored_batch([0.7] * 50 + [0.9] * 50)
    cfg = PolicyConfig(mode="condition", coverage=0.6, misses="score")
    missed = missed_ids(batch, cfg, score_miss_cutoff([batch], cfg))
    assert len(missed) == 40 and all(int(i[3:]) < 50 for i in missed)


def test_score_miss_levels_nest():
    batch = scored_batch([0.5 + (i * 13 % 97) / 200 for i in range(200)])
    sets = []
    for cov in (0.95, 0.9, 0.7):
        cfg = PolicyConfig(mode="condition", coverage=cov, misses="score")
        sets.append(missed_ids(batch, cfg, score_miss_cutoff([batch], cfg)))
    assert sets[0] <= sets[1] <= sets[2]


def test_score_miss_cutoff_excludes_held_out_documents_and_uses_every_batch():
    a, b = scored_batch([0.6, 0.7, 0.8], "a"), scored_batch([0.55, 0.9], "b")
    cfg = PolicyConfig(mode="condition", coverage=0.5, misses="score")
    cutoff = score_miss_cutoff([a, b], cfg, exclude=lambda i: i == "b0")
    # without b0, the bad documents are 0.6, 0.7, 0.8, 0.9: the two lowest (0.6, 0.7) are missed
    assert cutoff.score == pytest.approx(0.8)


def test_score_misses_at_full_coverage_or_zero():
    batch = scored_batch([0.6, 0.7, 0.8])
    cfg = PolicyConfig(mode="condition", coverage=0.9, misses="score")  # 10% of 3: none missed
    assert missed_ids(batch, cfg, score_miss_cutoff([batch], cfg)) == set()
    cfg = PolicyConfig(mode="condition", coverage=0.0, misses="score")
    cutoff = score_miss_cutoff([batch], cfg)
    assert cutoff == MissKey(math.inf, math.inf)
    assert missed_ids(batch, cfg, cutoff) == set(batch["id"])


def test_score_misses_without_the_cutoff_are_an_error():
    batch = scored_batch([0.6, 0.1])
    with pytest.raises(ValueError, match="score_miss_cutoff"):
        apply_policy(batch, PolicyConfig(coverage=0.9, misses="score"))
    # nothing bad, nothing to miss: no cutoff needed
    apply_policy(scored_batch([0.1, 0.2]), PolicyConfig(coverage=0.9, misses="score"))


def test_score_misses_need_scores():
    batch = {**scored_batch([0.6]), "score": [None]}
    with pytest.raises(ValueError, match="doc0.*no score"):
        score_miss_cutoff([batch], PolicyConfig(coverage=0.5, misses="score"))


def test_random_misses_are_the_default_and_unchanged():
    batch = scored_batch([0.9] * 200)
    cfg = PolicyConfig(mode="condition", coverage=0.9)
    assert cfg.misses == "random"
    assert 5 < len(missed_ids(batch, cfg, None)) < 40


def test_prepare_documents_misses_by_score_over_the_whole_corpus(tmp_path):
    import json

    from condpt.sequences import DataConfig, SourceConfig, prepare_documents

    rows = [{"id": f"d{i}", "text": f"document {i}", "tag": "bad", "score": 0.5 + i / 100} for i in range(40)]
    for k, chunk in enumerate((rows[::2], rows[1::2])):  # the lowest scores are spread over both sources
        path = tmp_path / f"s{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in chunk))
    cfg = DataConfig(sources=[SourceConfig(path=tmp_path / "s0.jsonl"), SourceConfig(path=tmp_path / "s1.jsonl")],
                     heldout_fraction=0.0, policy=PolicyConfig(mode="filter", coverage=0.75, misses="score"))
    prepared = prepare_documents(cfg, seed=0)
    assert sorted(prepared.train["id"], key=lambda i: int(i[1:])) == [f"d{i}" for i in range(10)]


# ---------------------------------------------------------------------------------- confidence band

BAND = Band(low=0.3, high=0.7)


def test_band_tags_at_the_edges():
    batch = scored_batch([0.0, 0.29999, 0.3, 0.5, 0.69999, 0.7, 1.0])
    train, aside = apply_policy(batch, PolicyConfig(mode="condition", band=BAND))
    assert aside["id"] == []
    assert [s[0]["role"] for s in train["segments"]] == ["good", "good", None, None, None, "bad", "bad"]
    assert train["tag"] == ["good", "good", None, None, None, "bad", "bad"]


def test_band_uncertain_role():
    batch = scored_batch([0.1, 0.5, 0.9])
    band = Band(low=0.3, high=0.7, uncertain_role="uncertain")
    train, _ = apply_policy(batch, PolicyConfig(mode="condition", band=band))
    assert [s[0]["role"] for s in train["segments"]] == ["good", "uncertain", "bad"]


def test_band_ignores_the_stored_tag_and_applies_to_spans():
    batch = {**scored_batch([0.5]), "tag": ["bad"],
             "spans": [[{"start": 0, "end": 5, "score": 0.1, "tag": "bad"},
                        {"start": 5, "end": 8, "score": 0.5, "tag": "bad"},
                        {"start": 8, "end": 13, "score": 0.8, "tag": "good"}]]}
    train, _ = apply_policy(batch, PolicyConfig(mode="condition", granularity="segment", band=BAND))
    assert [s["role"] for s in train["segments"][0]] == ["good", None, "bad"]
    assert "".join(s["text"] for s in train["segments"][0]) == batch["text"][0]


def test_band_zero_width_is_a_single_threshold():
    scores = [i / 20 for i in range(21)]
    banded, _ = apply_policy(scored_batch(scores), PolicyConfig(mode="condition", band=Band(low=0.5, high=0.5)))
    single, _ = apply_policy(scored_batch(scores), PolicyConfig(mode="condition", threshold=0.5))
    assert banded["segments"] == single["segments"]


def test_band_missed_documents_pass_as_normal_good_data():
    batch = scored_batch([0.8 + i / 1000 for i in range(100)])
    cfg = PolicyConfig(mode="condition", band=BAND, coverage=0.9, misses="score")
    train, _ = apply_policy(batch, cfg, score_miss_cutoff([batch], cfg))
    roles = [s[0]["role"] for s in train["segments"]]
    assert roles[:10] == ["good"] * 10 and roles[10:] == ["bad"] * 90


def test_upweight_applies_to_confident_good_only():
    batch = scored_batch([0.1, 0.5, 0.9])
    train, _ = apply_policy(batch, PolicyConfig(mode="condition", band=BAND, upweight_good=2.0))
    assert train["repeat"] == [2, 1, 1]


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(0, 1, width=32), min_size=1, max_size=40),
       low=st.floats(0, 1), width=st.floats(0, 1), untagged=st.floats(0, 1), coverage=st.floats(0, 1),
       misses=st.sampled_from(["random", "score"]))
def test_band_every_row_lands_exactly_once_with_the_right_tag(scores, low, width, untagged, coverage, misses):
    high = min(1.0, low + width)
    cfg = PolicyConfig(mode="condition", band=Band(low=low, high=high), untagged_fraction=untagged,
                       coverage=coverage, misses=misses)
    batch = scored_batch(scores)
    cutoff = score_miss_cutoff([batch], cfg) if misses == "score" else None
    train, aside = apply_policy(batch, cfg, cutoff)
    assert aside["id"] == [] and train["id"] == batch["id"]
    for s, tag, segs in zip(scores, train["tag"], train["segments"]):
        expected = "bad" if s >= high else ("good" if s < low else None)
        assert tag == expected or (expected == "bad" and tag == "good")  # "good" only where missed
        assert segs[0]["role"] in (tag, None)


def test_band_config_is_checked():
    with pytest.raises(ValidationError, match="must not exceed"):
        Band(low=0.8, high=0.2)
    with pytest.raises(ValidationError, match="mode condition"):
        PolicyConfig(mode="filter", band=BAND)
    with pytest.raises(ValidationError, match="set one of them"):
        PolicyConfig(mode="condition", band=BAND, threshold=0.5)
    for bad in ({"low": float("nan"), "high": 0.5}, {"low": 0.1, "high": 1.5}, {"low": "0.1", "high": 0.5},
                {"low": 0.1, "high": 0.5, "extra": 1}, {"low": 0.1, "high": 0.5, "uncertain_role": ""}):
        with pytest.raises(ValidationError):
            Band.model_validate(bad)
    with pytest.raises(ValidationError, match="misses"):
        PolicyConfig(misses="lowest")


def test_band_needs_scores():
    with pytest.raises(ValueError, match="doc0.*band.*no score"):
        apply_policy({**scored_batch([0.5]), "score": [None]}, PolicyConfig(mode="condition", band=BAND))
