"""Data policies: pure functions over tiny in-memory tagged batches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from condpt.policy import PolicyConfig, apply_policy, stochastic_round, unit_hash


def tagged_batch(n: int, bad_every: int = 3, prefix: str = "doc") -> dict[str, list]:
    ids = [f"{prefix}{i}" for i in range(n)]
    bad = [i % bad_every == 0 for i in range(n)]
    return {
        "id": ids,
        "text": [f"text of {d}. Second sentence." for d in ids],
        "source": ["src"] * n,
        "tag": ["bad" if b else "good" for b in bad],
        "score": [0.9 if b else 0.1 for b in bad],
        "spans": [
            [{"start": 0, "end": len(f"text of {d}."), "score": 0.2, "tag": "good"},
             {"start": len(f"text of {d}."), "end": len(f"text of {d}. Second sentence."), "score": 0.8, "tag": "bad"}]
            for d in ids
        ],
    }


def roles_of(train: dict) -> list[list]:
    return [[s["role"] for s in segs] for segs in train["segments"]]


@pytest.mark.parametrize("mode", ["mle", "condition", "filter", "set_aside"])
def test_every_document_lands_exactly_once(mode):
    batch = tagged_batch(300)
    untagged = 0.2 if mode == "condition" else 0.0
    train, aside = apply_policy(batch, PolicyConfig(mode=mode, coverage=0.7, untagged_fraction=untagged, upweight_good=2.5))
    assert len(train["id"]) + len(aside["id"]) == 300
    assert sorted(train["id"] + aside["id"]) == sorted(batch["id"])
    assert all(len(v) == len(train["id"]) for v in train.values())
    assert all(len(v) == len(aside["id"]) for v in aside.values())


def test_mle_keeps_everything_untagged():
    batch = tagged_batch(30)
    train, aside = apply_policy(batch, PolicyConfig(mode="mle"))
    assert aside["id"] == []
    assert roles_of(train) == [[None]] * 30
    assert [s[0]["text"] for s in train["segments"]] == batch["text"]
    assert train["repeat"] == [1] * 30


def test_condition_document_tags_each_document_with_its_tag():
    batch = tagged_batch(30)
    train, aside = apply_policy(batch, PolicyConfig(mode="condition"))
    assert aside["id"] == []
    assert roles_of(train) == [[t] for t in batch["tag"]]


def test_condition_segment_uses_spans_and_loses_no_text():
    batch = tagged_batch(10)
    train, _ = apply_policy(batch, PolicyConfig(mode="condition", granularity="segment"))
    assert roles_of(train) == [["good", "bad"]] * 10
    assert ["".join(s["text"] for s in segs) for segs in train["segments"]] == batch["text"]
    assert train["segments"][0][1]["text"] == " Second sentence."


def test_segment_text_outside_spans_stays_attached():
    batch = {"id": ["a"], "text": ["  lead. one. two. tail"], "tag": ["good"],
             "spans": [[[2, 7, 0.1, "good"], [7, 12, 0.9, "bad"], [12, 17, 0.1, "good"]]]}  # list form too
    train, _ = apply_policy(batch, PolicyConfig(granularity="segment"))
    segs = train["segments"][0]
    assert [s["text"] for s in segs] == ["  lead.", " one.", " two. tail"]
    assert [s["role"] for s in segs] == ["good", "bad", "good"]


def test_segment_without_spans_falls_back_to_document_tag():
    batch = {"id": ["a"], "text": ["whole"], "tag": ["bad"], "spans": [[]]}
    train, _ = apply_policy(batch, PolicyConfig(granularity="segment"))
    assert train["segments"] == [[{"text": "whole", "role": "bad"}]]


def test_unordered_spans_are_an_error_naming_the_document():
    batch = {"id": ["doc-7"], "text": ["abc def"], "tag": ["good"],
             "spans": [[{"start": 4, "end": 7, "score": 0.1, "tag": "good"}, {"start": 0, "end": 3, "score": 0.1, "tag": "bad"}]]}
    with pytest.raises(ValueError, match="doc-7"):
        apply_policy(batch, PolicyConfig(granularity="segment"))


@pytest.mark.parametrize("mode", ["filter", "set_aside"])
def test_filter_and_set_aside_remove_bad_documents(mode):
    batch = tagged_batch(60)
    train, aside = apply_policy(batch, PolicyConfig(mode=mode))
    assert set(aside["id"]) == {d for d, t in zip(batch["id"], batch["tag"]) if t == "bad"}
    assert set(train["tag"]) == {"good"}
    assert roles_of(train) == [[None]] * len(train["id"])  # the filtered corpus is trained plain
    assert set(aside["reason"]) == {"filtered" if mode == "filter" else "set_aside"}


def test_set_aside_rows_are_the_input_rows():
    batch = tagged_batch(12)
    _, aside = apply_policy(batch, PolicyConfig(mode="set_aside"))
    for j, doc_id in enumerate(aside["id"]):
        i = batch["id"].index(doc_id)
        assert {k: aside[k][j] for k in batch} == {k: batch[k][i] for k in batch}


def test_policy_is_deterministic_and_seeded():
    batch = tagged_batch(500)
    cfg = PolicyConfig(untagged_fraction=0.3, coverage=0.5, upweight_good=1.5, seed=1)
    assert apply_policy(batch, cfg) == apply_policy(batch, cfg)
    other = apply_policy(batch, cfg.model_copy(update={"seed": 2}))
    assert roles_of(other[0]) != roles_of(apply_policy(batch, cfg)[0])


def test_decisions_depend_on_the_id_not_the_batch_position():
    batch = tagged_batch(200)
    cfg = PolicyConfig(coverage=0.5, mode="set_aside", upweight_good=1.5)
    whole, aside = apply_policy(batch, cfg)
    half = {k: v[100:] for k, v in batch.items()}
    part, part_aside = apply_policy(half, cfg)
    assert set(part_aside["id"]) == set(aside["id"]) & set(half["id"])
    pos = {d: i for i, d in enumerate(whole["id"])}
    assert all(whole["repeat"][pos[d]] == r for d, r in zip(part["id"], part["repeat"]))


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1.0])
def test_untagged_fraction(fraction):
    batch = tagged_batch(2000)
    train, _ = apply_policy(batch, PolicyConfig(untagged_fraction=fraction))
    untagged = sum(r == [None] for r in roles_of(train)) / 2000
    assert abs(untagged - fraction) < 0.03


@pytest.mark.parametrize("coverage", [0.0, 0.9, 1.0])
def test_coverage_lets_missed_bad_documents_through_as_normal_data(coverage):
    batch = tagged_batch(3000, bad_every=1)  # all bad
    train, aside = apply_policy(batch, PolicyConfig(mode="filter", coverage=coverage))
    assert abs(len(aside["id"]) / 3000 - coverage) < 0.03
    assert set(train["tag"]) <= {"good"}  # what the tagger missed looks like normal data
    ctrain, _ = apply_policy(batch, PolicyConfig(mode="condition", coverage=coverage, granularity="segment"))
    missed = [r for r, t in zip(roles_of(ctrain), ctrain["tag"]) if t == "good"]
    assert abs(len(missed) / 3000 - (1 - coverage)) < 0.03
    assert all(r == ["good", "good"] for r in missed)  # a missed document's bad spans are missed too


def test_coverage_levels_nest():
    """The documents missed at 90% coverage are a subset of those missed at 80% (same seed)."""
    batch = tagged_batch(1000, bad_every=1)
    missed = {c: set(apply_policy(batch, PolicyConfig(mode="filter", coverage=c))[0]["id"]) for c in (0.8, 0.9)}
    assert missed[0.9] < missed[0.8]


def test_upweight_repeats_good_documents_only():
    batch = tagged_batch(30)
    train, _ = apply_policy(batch, PolicyConfig(upweight_good=3))
    assert all(r == (3 if t == "good" else 1) for r, t in zip(train["repeat"], train["tag"]))


def test_fractional_upweight_rounds_stochastically_and_deterministically():
    batch = tagged_batch(4000, bad_every=10**9)  # doc0 is bad, the rest good
    train, _ = apply_policy(batch, PolicyConfig(upweight_good=1.5))
    good = [r for r, t in zip(train["repeat"], train["tag"]) if t == "good"]
    assert set(good) == {1, 2}
    assert abs(sum(good) / len(good) - 1.5) < 0.03
    assert train["repeat"] == apply_policy(batch, PolicyConfig(upweight_good=1.5))[0]["repeat"]


def test_threshold_retags_from_stored_scores():
    batch = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "tag": ["good", "good", "bad"], "score": [0.2, 0.6, 0.4]}
    train, aside = apply_policy(batch, PolicyConfig(mode="filter", threshold=0.5))
    assert aside["id"] == ["b"]
    assert train["id"] == ["a", "c"]


def test_threshold_without_scores_is_an_error():
    with pytest.raises(ValueError, match="no score"):
        apply_policy({"id": ["a"], "text": ["x"], "tag": ["good"]}, PolicyConfig(threshold=0.5))


def test_invalid_config_names_the_field():
    with pytest.raises(ValidationError, match="upweight_good"):
        PolicyConfig(upweight_good=0.5)
    with pytest.raises(ValidationError, match="mode"):
        PolicyConfig(mode="filtr")
    with pytest.raises(ValidationError, match="coverge"):
        PolicyConfig(coverge=0.9)


def test_stochastic_round_and_unit_hash():
    assert stochastic_round(2.0, 0.999) == 2
    assert stochastic_round(2.25, 0.2) == 3 and stochastic_round(2.25, 0.3) == 2
    assert unit_hash("a", 1) == unit_hash("a", 1) != unit_hash("a", 2)
    assert 0.0 <= unit_hash("x") < 1.0


@settings(max_examples=40, deadline=None)
@given(
    tags=st.lists(st.sampled_from(["good", "bad", None]), max_size=40),
    mode=st.sampled_from(["mle", "condition", "filter", "set_aside"]),
    coverage=st.floats(0, 1), untagged=st.floats(0, 1), up=st.floats(1, 4),
)
def test_counts_add_up_for_any_config(tags, mode, coverage, untagged, up):
    batch = {"id": [f"d{i}" for i in range(len(tags))], "text": ["t"] * len(tags), "tag": tags}
    cfg = PolicyConfig(mode=mode, coverage=coverage, untagged_fraction=untagged if mode == "condition" else 0.0,
                       upweight_good=up)
    train, aside = apply_policy(batch, cfg)
    assert sorted(train["id"] + aside["id"]) == sorted(batch["id"])
    assert all(r >= 1 for r in train["repeat"])


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"good_role": "bad"}, "good_role and bad_role"),
    ({"band": {"low": 0.1, "high": 0.5, "uncertain_role": "bad"}}, "uncertain_role"),
    ({"band": {"low": 0.1, "high": 0.5, "uncertain_role": "good"}}, "uncertain_role"),
])
def test_contradictory_policy_is_refused(kwargs, why):
    """Roles that contradict each other: one role for both tags would tag every document bad, and an
    uncertain band under the good or bad role is a threshold, not a band (issue 9: refuse what cannot run
    as written)."""
    with pytest.raises(ValidationError, match=why):
        PolicyConfig(**kwargs)


@pytest.mark.parametrize("mode", ["mle", "filter", "set_aside", "route"])
@pytest.mark.parametrize(("field", "value"), [("untagged_fraction", 0.3), ("untagged_fraction", 1.0),
                                               ("granularity", "segment")])
def test_a_setting_the_mode_ignores_is_refused(mode, field, value):
    """untagged_fraction only ever drops the tag of `mode: condition` documents (no other mode writes tags),
    and granularity: segment only splits condition and route documents: elsewhere they were silently
    ignored, so an arm looked configured as it never trained (issue 9 sweep 2)."""
    if mode == "route" and field == "granularity":
        PolicyConfig(mode=mode, granularity=value)  # route does route per segment
        return
    with pytest.raises(ValidationError, match=f"{field}.*\\(mode is {mode!r}\\)"):
        PolicyConfig(mode=mode, **{field: value})


@pytest.mark.parametrize("mode", ["mle", "filter", "set_aside", "route"])
def test_defaults_of_mode_specific_settings_stay_accepted(mode):
    PolicyConfig(mode=mode, untagged_fraction=0.0, granularity="document")
