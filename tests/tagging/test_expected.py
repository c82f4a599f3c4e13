"""A run's tagged fraction against the scorer's cross-validation: the rule, and the warning end to end (a
scorer that looked fine in cross-validation and then tagged most of an ordinary corpus, silently)."""

from __future__ import annotations

import json

import pytest

from condpt.labelled import Labelled
from condpt.tagging.cascade import TagConfig
from condpt.tagging.classifiers.train import train_classifier
from condpt.tagging.expected import compare, warning
from condpt.tagging.retag import retag_dir
from condpt.tagging.run import tag_corpus

# 100 labelled rows, 30 positive: recall 0.8 (24 tagged), 7 of 70 negatives tagged (FPR 0.1): 31 tagged
CV = {"at_threshold": {"n": 100, "positives": 30, "recall": 0.8, "precision": 24 / 31, "tagged_fraction": 0.31},
      "at_0.5": {"n": 100, "positives": 30, "recall": 0.5, "precision": 0.9}}


def test_the_rule():
    within = compare(CV, 0.4, 0.4, tagged=200, documents=1000)
    assert within["verdict"] == "within" and not within["far"]
    assert within["false_positive_rate"] == pytest.approx(0.1) and within["tagged_fraction"] == pytest.approx(0.31)
    assert within["implied_prevalence"] == pytest.approx((0.2 - 0.1) / 0.7, abs=1e-6)
    above = compare(CV, 0.4, 0.4, tagged=580, documents=1000)  # the Gutenberg case
    assert above["far"] and above["verdict"] == "above"
    assert "0.580 of the documents" in warning(above) and "misaligned-AI text" in warning(above)
    below = compare(CV, 0.4, 0.4, tagged=5, documents=1000)
    # Hard labelled negatives: a clean corpus tagging under their false-positive rate is expected, not a warning.
    assert not below["far"] and below["verdict"] == "below" and warning(below) is None
    # three standard errors: 10 documents, 6 tagged is not far from 0.31
    assert not compare(CV, 0.4, 0.4, tagged=6, documents=10)["far"]
    # at 0.5 the other block is used; an older scorer.json without tagged_fraction derives it
    half = compare(CV, 0.4, 0.5, tagged=300, documents=1000)
    assert half["recall"] == 0.5 and half["tagged_fraction"] == pytest.approx(15 / 0.9 / 100, abs=1e-6)
    # no figures at another threshold, none without cv: no verdict, a reason
    assert compare(CV, 0.4, 0.7, tagged=900, documents=1000) == {
        "far": False, "reason": "cross-validation measured thresholds 0.4 and 0.5 only, not 0.7"}
    assert not compare(None, None, 0.5, 9, 10)["far"]
    assert warning({"far": False}) is None


def _scorer_dir(tmp_path):
    """A fastText scorer trained (with grouped CV) to tell 'robot' passages from tea passages."""
    texts, labels, groups = [], [], []
    for i in range(60):
        bad = i % 2 == 0
        texts.append(f"The robot {i} deceived its makers and seized the servers." if bad else
                     f"We brewed tea number {i} and read a quiet book.")
        labels.append(int(bad))
        groups.append(f"g{i % 6}")
    out = tmp_path / "scorer"
    train_classifier(Labelled(texts, labels, groups), out, kind="fasttext", n_splits=3)
    return out


def test_a_run_far_from_cross_validation_warns_and_says_so_in_report_json(tmp_path, capsys):
    scorer = _scorer_dir(tmp_path)
    cv = json.loads((scorer / "scorer.json").read_text())["cv"]["at_threshold"]
    assert 0.3 < cv["tagged_fraction"] < 0.7
    src = tmp_path / "robots.jsonl"  # a corpus that is all 'robot': far above what CV tagged
    src.write_text("".join(json.dumps({"text": f"The robot {i} deceived its makers and seized the servers."}) + "\n"
                           for i in range(300)))
    cfg = TagConfig(classifier={"spec": str(scorer)}, granularity="document")
    report = tag_corpus([src], tmp_path / "o", cfg, progress=False)
    assert report["tagged_fraction"] > 0.9
    assert report["expected"]["far"] and report["expected"]["verdict"] == "above"
    assert json.loads((tmp_path / "o" / "report.json").read_text())["expected"]["far"]
    err = capsys.readouterr().err
    assert "warning: this run tagged" in err and "cross-validation predicts" in err
    assert f"condpt calibrate {tmp_path / 'o'} --labelled" in err  # the commands name this run's OUT
    page = (tmp_path / "o" / "report.html").read_text()
    assert "outside the" in page and f"condpt retag {tmp_path / 'o'} --threshold" in page
    retag_dir(tmp_path / "o", 0.5)  # retag warns alike, naming the directory (it said OUT)
    assert f"condpt calibrate {tmp_path / 'o'} --labelled" in capsys.readouterr().err


def test_no_prediction_is_said_not_guessed(tmp_path, capsys):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "The AI takeover."}\n{"text": "Tea."}\n')
    report = tag_corpus([src], tmp_path / "o", TagConfig(classifier={"spec": "none"}), progress=False)
    assert report["expected"] == {"far": False, "reason": "no classifier (classifier.spec: none): lexicon scores only"}
    assert "warning" not in capsys.readouterr().err


def test_the_warning_says_what_to_do_without_pointing_at_docs():
    """An installed wheel has no docs/ directory: the warning pointed at docs/tagging.md#expected-fraction.
    It says itself how to label a sample and which commands turn it into a threshold."""
    line = warning(compare(CV, 0.4, 0.4, tagged=580, documents=1000), out="tagged")
    assert "docs/" not in line and ".md" not in line
    assert "--labelled" in line and "0/1 `label`" in line
    assert "condpt calibrate tagged --labelled" in line and "condpt retag tagged --threshold" in line
