"""A `condpt tag` output that is not finished (a run stopped part way, a retag interrupted) is refused by every
reader that would take its shards for the whole corpus: calibration and a training run's data source
(issue 9: never half a run that looks finished)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from condpt import calibrate as cal
from condpt.config import ConfigError, load_config
from condpt.corpus import TAGGED_SCHEMA
from condpt.tagged import SCORE_TYPE

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny-cpu.yaml"


def _tag_output(root: Path, complete: bool = True, scores=(0.1, 0.9)) -> Path:
    n = len(scores)
    rows = {"id": [f"d{i}" for i in range(n)], "text": ["x"] * n, "source": ["s"] * n, "score": list(scores),
            "tag": ["good"] * n, "spans": [[] for _ in range(n)], "prefilter_hits": [[] for _ in range(n)],
            "stage": ["classifier"] * n}
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict(rows, schema=TAGGED_SCHEMA), root / "data" / "part-000000.parquet")
    (root / "report.json").write_text(json.dumps({"complete": complete, "chunks_done": 1,
                                                  "chunks_total": 1 if complete else None}))
    return root


def _unfinished(tmp_path: Path, how: str) -> Path:
    out = _tag_output(tmp_path / "out", complete=how != "stopped")
    if how == "retag":
        (out / ".retag").mkdir()
    return out


@pytest.mark.parametrize(("how", "why"), [("stopped", "not complete"), ("retag", "retag. was interrupted")])
def test_calibrate_refuses_an_unfinished_output(tmp_path, how, why):
    out = _unfinished(tmp_path, how)
    with pytest.raises(cal.CalibrationError, match=why):
        cal.load_tagged(out)


@pytest.mark.parametrize(("how", "why"), [("stopped", "not complete"), ("retag", "retag. was interrupted")])
def test_a_training_source_that_is_an_unfinished_output_is_refused_at_load(tmp_path, how, why):
    out = _unfinished(tmp_path, how)
    with pytest.raises(ConfigError, match=rf"data\.sources\.0\.path.*{why}"):
        load_config(TINY, [f"data.sources.0.path={out}"])


def test_finished_outputs_and_hand_made_shard_directories_still_load(tmp_path):
    out = _tag_output(tmp_path / "out")
    assert cal.load_tagged(out)["score"] == pytest.approx([0.1, 0.9])
    (out / "report.json").unlink()  # shards put together by hand: nothing says they are unfinished
    assert len(cal.load_tagged(out)["score"]) == 2
    load_config(TINY, [f"data.sources.0.path={out}"])


def _write(out: Path, table: pa.Table) -> Path:
    (out / "data").mkdir(parents=True)
    pq.write_table(table, out / "data" / "part-000000.parquet")
    return out


@pytest.mark.parametrize(("table", "why"), [
    (pa.table({"id": ["a"], "text": ["x"]}), r"part-000000\.parquet: no column 'score'"),
    (pa.table({"id": ["a"], "score": ["x"]}), r"part-000000\.parquet: column 'score' is string, not a number"),
    (pa.table({"id": ["a", "b"], "score": pa.array([0.2, None], SCORE_TYPE)}), r"part-000000\.parquet: row 2 .*'b'.*score None"),
    (pa.table({"id": ["a", "b"], "score": pa.array([0.2, float("nan")], SCORE_TYPE)}), r"row 2 .*score nan"),
    (pa.table({"id": ["a", "b"], "score": pa.array([0.2, 1.5], SCORE_TYPE)}), r"row 2 .*score 1\.5.*\[0, 1\]"),
])
def test_shards_calibrate_cannot_use_are_named(tmp_path, table, why):
    """A shard without a usable score column was a pyarrow schema dump or a float() traceback, and a NaN or
    missing score calibrated to threshold nan (exit 0)."""
    out = _write(tmp_path / "out", table)
    with pytest.raises(cal.CalibrationError, match=why):
        cal.load_tagged(out)


def test_an_unreadable_shard_is_named(tmp_path):
    out = _tag_output(tmp_path / "out")
    (out / "data" / "part-000000.parquet").write_bytes(b"garbage")
    with pytest.raises(cal.CalibrationError, match=r"part-000000\.parquet: not a readable Parquet file"):
        cal.load_tagged(out)


def test_a_tag_output_without_its_report_is_refused(tmp_path):
    """`condpt tag` writes report.json right after run.json: an output with run.json and no report.json lost
    the file that says whether it finished; it was calibrated on as if whole."""
    out = _tag_output(tmp_path / "out", complete=False)
    (out / "report.json").unlink()
    (out / "run.json").write_text("{}")
    with pytest.raises(cal.CalibrationError, match=r"run\.json but no report\.json"):
        cal.load_tagged(out)
