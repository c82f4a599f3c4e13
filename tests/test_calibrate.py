"""Calibration from stored scores: fraction, precision and recall targets, metrics, YAML, re-tagging."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `calibrate`)
from condpt import calibrate as cal
from condpt.cli import app
from condpt.corpus import TAGGED_SCHEMA


def _tagged_dir(tmp_path, scores, texts=None):
    n = len(scores)
    texts = texts or [f"text {i}" for i in range(n)]
    rows = {"id": [f"id{i}" for i in range(n)], "text": texts, "source": ["s"] * n,
            "score": scores, "tag": ["good"] * n,
            "spans": [[{"start": 0, "end": len(t), "score": s, "tag": "good"}] for t, s in zip(texts, scores)],
            "prefilter_hits": [[] for _ in range(n)], "stage": ["classifier"] * n}
    (tmp_path / "tagged" / "data").mkdir(parents=True)
    half = n // 2
    for k, sl in enumerate((slice(0, half), slice(half, n))):
        pq.write_table(pa.Table.from_pydict({c: v[sl] for c, v in rows.items()}, schema=TAGGED_SCHEMA),
                       tmp_path / "tagged" / "data" / f"part-{k:06d}.parquet")
    return tmp_path / "tagged"


def test_threshold_for_fraction():
    s = np.arange(100) / 100
    for f in (0.0, 0.1, 0.37, 1.0):
        t = cal.threshold_for_fraction(s, f)
        assert (s >= t).mean() == pytest.approx(f, abs=0.006)
    with pytest.raises(cal.CalibrationError):
        cal.threshold_for_fraction(np.array([1.0, 0.2]), 0.0)
    with pytest.raises(cal.CalibrationError):
        cal.threshold_for_fraction(s, 1.5)


def test_precision_and_recall_targets_match_brute_force():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    cands = np.unique(s)

    def pr(t):
        pred = s >= t
        return (y[pred].mean() if pred.any() else 1.0), y[pred].sum() / y.sum()

    t = cal.threshold_for_precision(s, y, 0.8)
    ok = [c for c in cands if pr(c)[0] >= 0.8]
    assert t == pytest.approx(min(ok)) and pr(t)[0] >= 0.8
    t = cal.threshold_for_recall(s, y, 0.9)
    ok = [c for c in cands if pr(c)[1] >= 0.9]
    assert t == pytest.approx(max(ok)) and pr(t)[1] >= 0.9
    m = cal.metrics_at(s, y, t)
    from sklearn.metrics import roc_auc_score

    assert m["auroc"] == pytest.approx(roc_auc_score(y, s)) and m["recall"] >= 0.9
    with pytest.raises(cal.CalibrationError, match="no threshold reaches precision"):
        cal.threshold_for_precision(np.array([0.5, 0.5]), np.array([0, 1]), 0.99)


def test_retag_is_pure_and_uses_stored_scores():
    batch = {"score": [0.2, 0.8], "tag": ["good", "good"],
             "spans": [[{"start": 0, "end": 1, "score": 0.2, "tag": "good"}],
                       [{"start": 0, "end": 1, "score": 0.8, "tag": "good"}]]}
    out = cal.retag(batch, 0.5)
    assert out["tag"] == ["good", "bad"] and out["spans"][1][0]["tag"] == "bad"
    assert batch["tag"] == ["good", "good"] and batch["spans"][1][0]["tag"] == "good"


def test_cli_target_fraction_writes_yaml_both_configs_read(tmp_path):
    from condpt.policy import PolicyConfig
    from condpt.tagging.cascade import TagConfig

    d = _tagged_dir(tmp_path, [i / 10 for i in range(10)])
    cfgp = tmp_path / "tag.yaml"
    cfgp.write_text("granularity: sentence\n")
    res = CliRunner().invoke(app, ["calibrate", str(d), "--target-fraction", "0.3", "--out", str(cfgp)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["threshold"] == pytest.approx(0.7)
    assert TagConfig.from_yaml(cfgp).threshold == pytest.approx(0.7)
    assert TagConfig.from_yaml(cfgp).granularity == "sentence"
    only = tmp_path / "policy.yaml"
    CliRunner().invoke(app, ["calibrate", str(d), "--target-fraction", "0.3", "--out", str(only)])
    assert PolicyConfig(**yaml.safe_load(only.read_text())).threshold == pytest.approx(0.7)


def test_cli_labelled_precision_prints_metrics_and_plots(tmp_path):
    texts = [f"t{i}" for i in range(8)]
    scores = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    d = _tagged_dir(tmp_path, scores, texts)
    lab = tmp_path / "lab.jsonl"
    labels = [0, 0, 0, 1, 0, 1, 1, 1]
    lab.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels))
                   + json.dumps({"text": "not tagged", "label": 1}) + "\n")
    res = CliRunner().invoke(app, ["calibrate", str(d), "--labelled", str(lab), "--target-precision", "1.0"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["threshold"] == pytest.approx(0.7) and out["precision"] == 1.0 and out["recall"] == 0.75
    assert out["auroc"] == pytest.approx(15 / 16)
    assert "1 labelled rows not found" in res.output
    assert (d / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(app, ["calibrate", str(d), "--labelled", str(lab), "--target-recall", "1.0"])
    assert json.loads(res.stdout.strip().splitlines()[-1])["threshold"] == pytest.approx(0.4)


def test_cli_calibrate_errors(tmp_path):
    run = CliRunner().invoke
    res = run(app, ["calibrate", str(tmp_path), "--target-fraction", "0.1"])
    assert res.exit_code == 2 and "no tagged Parquet shards" in res.output
    res = run(app, ["calibrate", str(tmp_path), "--target-precision", "0.9"])
    assert res.exit_code == 2 and "need --labelled" in res.output
    res = run(app, ["calibrate", str(tmp_path)])
    assert res.exit_code == 2 and "exactly one" in res.output
    d = _tagged_dir(tmp_path, [0.1, 0.9])
    lab = tmp_path / "lab.jsonl"
    lab.write_text('{"text": "text 0", "label": 2}\n')
    res = run(app, ["calibrate", str(d), "--labelled", str(lab), "--target-recall", "0.5"])
    assert res.exit_code == 2 and "lab.jsonl:1" in res.output and "'label'" in res.output


@pytest.mark.parametrize("option", ["--target-precision", "--target-recall"])
@pytest.mark.parametrize("value", ["nan", "inf", "2", "-0.5", "0"])
def test_cli_calibrate_refuses_a_target_outside_0_1(tmp_path, option, value):
    """`--target-recall nan` (or 2) ended in an IndexError traceback; `--target-precision -0.5` chose a
    threshold (issue 9's probes: a clear error naming the option)."""
    d = _tagged_dir(tmp_path, [0.1, 0.9], ["a", "b"])
    lab = tmp_path / "lab.jsonl"
    lab.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    res = CliRunner().invoke(app, ["calibrate", str(d), "--labelled", str(lab), option, value])
    assert res.exit_code == 2 and f"{option} must be in (0, 1]" in res.output, res.output


def test_cli_calibrate_out_that_is_not_a_config_is_refused_before_anything_is_written(tmp_path):
    d = _tagged_dir(tmp_path, [0.1, 0.9])
    bad = tmp_path / "dup.yaml"
    for content in (b"threshold: 0.3\nthreshold: 0.2\n", b"- 1\n", b"# caf\xe9\n"):
        bad.write_bytes(content)
        res = CliRunner().invoke(app, ["calibrate", str(d), "--target-fraction", "0.5", "--out", str(bad)])
        assert res.exit_code == 2 and str(bad) in res.output and "Traceback" not in res.output, res.output
        assert "threshold" not in res.stdout, res.stdout  # refused before the threshold is computed
        assert bad.read_bytes() == content


def test_a_precision_target_without_labelled_negatives_is_refused():
    """Only positives: precision is 1 at every threshold, so the lowest score was chosen (tagging the whole
    corpus) with AUROC nan and exit 0. A recall target needs only positives and still works."""
    scores, labels = np.array([0.2, 0.5, 0.9]), np.array([1, 1, 1])
    with pytest.raises(cal.CalibrationError, match="no negative"):
        cal.threshold_for_precision(scores, labels, 0.9)
    with pytest.raises(cal.CalibrationError, match="no negative"):
        cal.band_thresholds(scores, labels, recall=0.9, precision=0.9)
    assert cal.threshold_for_recall(scores, labels, 2 / 3) == pytest.approx(0.5)


def test_out_must_be_a_config_that_reads_threshold_and_retag_reads_either_kind(tmp_path):
    """calibrate --out wrote a top-level `threshold` into any mapping, a run recipe included (which then failed
    to load: 'threshold: Extra inputs'), and retag --config refused the policy config calibrate had just
    written ('mode: Extra inputs are not permitted'): both now take exactly a tag or a policy config."""
    d = _tagged_dir(tmp_path, [i / 10 for i in range(10)])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output_dir: runs/x\ndata: {policy: {mode: condition}}\n")
    before = recipe.read_bytes()
    res = CliRunner().invoke(app, ["calibrate", str(d), "--target-fraction", "0.3", "--out", str(recipe)])
    assert res.exit_code == 2 and "recipe.yaml" in res.output and "policy config" in res.output, res.output
    assert recipe.read_bytes() == before
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: condition\ngranularity: segment\n")
    res = CliRunner().invoke(app, ["calibrate", str(d), "--target-fraction", "0.3", "--out", str(policy)])
    assert res.exit_code == 0, res.output
    assert cal.read_threshold(policy) == pytest.approx(0.7)
    with pytest.raises(cal.CalibrationError, match="not found"):
        cal.read_threshold(tmp_path / "nope.yaml")
