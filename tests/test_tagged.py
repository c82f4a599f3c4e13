"""The tagged-data contract (`condpt.tagged`): one schema for writer and readers, one score→tag rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from condpt.tagged import TAGGED_SCHEMA, stored_score, tag_for


def _write_tagged(root, scores):
    (root / "data").mkdir(parents=True)
    n = len(scores)
    rows = {"id": [f"d{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)], "source": ["s"] * n,
            "score": scores, "tag": ["good"] * n,
            "spans": [[{"start": 0, "end": 6, "score": s, "tag": "good"}] for s in scores],
            "prefilter_hits": [[] for _ in range(n)], "stage": ["classifier"] * n}
    pq.write_table(pa.Table.from_pydict(rows, schema=TAGGED_SCHEMA), root / "data" / "part-000000.parquet")
    return root


def test_the_training_reader_keeps_the_written_schema(tmp_path):
    from condpt.sequences import SourceConfig, load_source

    ds = load_source(SourceConfig(path=_write_tagged(tmp_path / "tagged", [0.1, 0.7])))
    read = ds.features.arrow_schema
    for name in ("id", "text", "tag", "score", "spans", "source"):
        assert read.field(name).type == TAGGED_SCHEMA.field(name).type, name


def test_every_threshold_user_agrees_at_the_boundary(tmp_path):
    """A stored float32 score next to the threshold gets the same tag at tag, calibrate and train time."""
    from condpt import calibrate
    from condpt.policy import PolicyConfig, retag
    from condpt.tagging.cascade import Cascade, TagConfig

    threshold = 0.7
    raw = [0.7, float(np.nextafter(np.float32(0.7), np.float32(1))), 0.69]
    stored = [stored_score(s) for s in raw]
    expect = [tag_for(s, threshold) for s in stored]
    assert expect == ["good", "bad", "good"]  # float32(0.7) < 0.7: the stored value decides

    class Fixed:
        name = "fixed"

        def __init__(self):
            self.it = iter(raw)

        def score(self, texts):
            return np.array([next(self.it) for _ in texts], np.float32)

    cfg = TagConfig(granularity="document", threshold=threshold)
    out = Cascade(cfg, scorer=Fixed())({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "source": ["s"] * 3})
    assert out["tag"] == expect and [s[0]["tag"] for s in out["spans"]] == expect
    batch = {"score": out["score"], "tag": ["?"] * 3, "spans": out["spans"]}
    assert calibrate.retag(batch, threshold)["tag"] == expect
    pcfg = PolicyConfig(threshold=threshold)
    assert [retag("?", s, pcfg, "doc") for s in out["score"]] == expect
    assert calibrate.metrics_at(np.array(out["score"]), np.array([0, 1, 0]), threshold)["precision"] == 1.0


def test_tag_for_roles():
    assert tag_for(0.5, 0.5, "ok", "nope") == "nope" and tag_for(0.49, 0.5, "ok", "nope") == "ok"
    with pytest.raises(TypeError):
        tag_for(None, 0.5)


@pytest.mark.parametrize(("value", "want"), [(-0.0, 0.0), (0.0, 0.0), (1, 1.0), (0.25, 0.25)])
def test_a_threshold_has_one_spelling(tmp_path, value, want):
    """`retag --threshold -0.0` recorded -0.0 in run.json and report.json (it tags as 0.0 does)."""
    import math

    from condpt.calibrate import write_threshold
    from condpt.policy import Band, PolicyConfig
    from condpt.tagged import check_threshold
    from condpt.tagging.config import TagConfig

    got = [check_threshold(value), TagConfig(threshold=value).threshold, PolicyConfig(threshold=value).threshold,
           Band(low=value, high=1.0).low]
    assert got == [want] * 4 and all(math.copysign(1.0, g) == 1.0 for g in got), got
    assert type(got[0]) is float
    assert "-0.0" not in write_threshold(tmp_path / "t.yaml", value).read_text()


@pytest.mark.parametrize(("value", "why"), [(float("nan"), "finite number"), (float("inf"), "finite number"),
                                            (-0.1, "greater than or equal to 0"), (1.5, "less than or equal to 1"),
                                            ("0.5", "valid number"), (True, "valid number")])
def test_an_invalid_threshold_is_refused_alike(value, why):
    from pydantic import ValidationError

    from condpt.policy import PolicyConfig
    from condpt.tagged import check_threshold
    from condpt.tagging.config import TagConfig

    with pytest.raises(ValueError, match=f"threshold {value!r}: .*{why}"):
        check_threshold(value)
    for config in (TagConfig, PolicyConfig):
        with pytest.raises(ValidationError, match=why):
            config(threshold=value)
