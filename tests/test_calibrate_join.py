"""`condpt calibrate --labelled`: the join of labelled rows to tagged rows counts each tagged document once
and never attaches a label to another document; the printed JSON line is strict JSON (issue 9's probes)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `calibrate`)
from condpt.cli import app
from condpt.corpus import TAGGED_SCHEMA

TEXTS = [f"t{i}" for i in range(8)]
SCORES = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]


def _tagged(tmp_path):
    n = len(TEXTS)
    rows = {"id": [f"id{i}" for i in range(n)], "text": TEXTS, "source": ["s"] * n, "score": SCORES,
            "tag": ["good"] * n,
            "spans": [[{"start": 0, "end": len(t), "score": s, "tag": "good"}] for t, s in zip(TEXTS, SCORES)],
            "prefilter_hits": [[] for _ in range(n)], "stage": ["classifier"] * n}
    (tmp_path / "tagged" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict(rows, schema=TAGGED_SCHEMA), tmp_path / "tagged" / "data" / "part-0.parquet")
    return tmp_path / "tagged"


def _calibrate(tmp_path, rows, target=("--target-precision", "0.5")):
    lab = tmp_path / "lab.jsonl"
    lab.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return CliRunner().invoke(app, ["calibrate", str(_tagged(tmp_path)), "--labelled", str(lab), *target])


def test_one_text_labelled_twice_is_refused(tmp_path):
    """Joined by text, "t7" labelled 1 and 0 was counted as two documents (n 4 of 3); an id labelled twice
    was already refused."""
    res = _calibrate(tmp_path, [{"text": "t7", "label": 1}, {"text": "t7", "label": 0}, {"text": "t0", "label": 0}])
    assert res.exit_code == 2 and "'t7'" in res.output and "labelled 2 times" in res.output, res.output


def test_a_labelled_id_whose_text_is_another_documents_is_refused(tmp_path):
    """Ids from another corpus ("id7" there is "t0" here) silently gave each label to another document."""
    res = _calibrate(tmp_path, [{"id": "id7", "text": "t0", "label": 1}, {"id": "id0", "text": "t0", "label": 0}])
    assert res.exit_code == 2 and "'id7'" in res.output and "text differs" in res.output, res.output


def test_the_json_line_is_strict_json_when_one_class_is_labelled(tmp_path):
    """AUROC is undefined with one class: it was printed as NaN, which no strict JSON parser reads."""
    res = _calibrate(tmp_path, [{"text": "t7", "label": 1}, {"text": "t6", "label": 1}], ("--target-recall", "0.5"))
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    out = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert out["auroc"] is None and out["recall"] == 0.5
    assert "AUROC n/a" in res.output


def test_a_plot_or_out_path_that_cannot_be_written_is_refused_before_calibrating(tmp_path):
    """`--plot p.txt` was a matplotlib ValueError traceback, `--plot DIR` wrote DIR.png and printed DIR, and a
    --plot or --out under a file was a FileExistsError traceback (after --out's threshold was printed)."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    rows = [{"text": f"t{i}", "label": int(i >= 4)} for i in range(8)]
    for option, path, why in [("--plot", tmp_path / "p.txt", "ends in .png"),
                              ("--plot", tmp_path / "adir", "ends in .png"),
                              ("--plot", tmp_path / "afile" / "p.png", "is not a directory"),
                              ("--out", tmp_path / "afile" / "t.yaml", "is not a directory")]:
        lab = tmp_path / "lab.jsonl"
        lab.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tagged = tmp_path / "tagged" if (tmp_path / "tagged").exists() else _tagged(tmp_path)
        res = CliRunner().invoke(app, ["calibrate", str(tagged), "--labelled", str(lab), "--target-recall", "0.5",
                                       option, str(path)])
        assert res.exit_code == 2 and why in res.output and "threshold 0" not in res.output, (option, path,
                                                                                             res.output)
    assert not (tmp_path / "adir.png").exists()


def test_rows_with_and_without_ids_are_each_joined(tmp_path):
    """With some rows joined by id, the rows that carry only a text were left out as "not found" although
    their text is in the tagged data; a document reached both by its id and by its text counts once."""
    res = _calibrate(tmp_path, [{"id": "id7", "label": 1}, {"id": "id0", "label": 0}, {"text": "t6", "label": 1},
                                {"text": "t1", "label": 0}], ("--target-recall", "1.0"))
    assert res.exit_code == 0 and "not found" not in res.output, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["n"] == 4
    (tmp_path / "again").mkdir()
    res = _calibrate(tmp_path / "again", [{"id": "id7", "label": 1}, {"text": "t7", "label": 1},
                                          {"text": "t0", "label": 0}])
    assert res.exit_code == 2 and "labelled 2 times" in res.output, res.output


def _tagged_with(tmp_path, texts, scores):
    n = len(texts)
    rows = {"id": [f"id{i}" for i in range(n)], "text": texts, "source": ["s"] * n, "score": scores,
            "tag": ["good"] * n, "spans": [[] for _ in range(n)], "prefilter_hits": [[] for _ in range(n)],
            "stage": ["classifier"] * n}
    (tmp_path / "dup" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict(rows, schema=TAGGED_SCHEMA), tmp_path / "dup" / "data" / "part-0.parquet")
    return tmp_path / "dup"


def test_a_text_twice_in_the_corpus_with_one_score_is_one_labelled_example(tmp_path):
    """The same text at two places of the corpus (two ids, the same stored score): the labelled row joined the
    last copy; it is one labelled example (n counts labelled rows, n + not found = rows), whichever copy."""
    from condpt import calibrate as cal
    from condpt.labelled import Labelled

    d = _tagged_with(tmp_path, ["x", "y", "x", "z"], [0.9, 0.2, 0.9, 0.6])
    rows = Labelled(texts=["x", "y", "q"], labels=[1, 0, 1], ids=[None] * 3, path="lab.jsonl")
    s, y, missing, repeated = cal.join_labels(d, rows)
    assert s.tolist() == [np.float32(0.9), np.float32(0.2)] and y.tolist() == [1, 0] and missing == 1
    assert repeated == 1
    # another row reaching a copy (by its id) labels that text twice
    twice = Labelled(texts=["x", None], labels=[1, 0], ids=[None, "id2"], path="lab.jsonl", lines=[1, 2])
    with pytest.raises(cal.CalibrationError, match=r"lab\.jsonl:2: .*'id2'.*labelled 2 times, here and at lab\.jsonl:1"):
        cal.join_labels(d, twice)


def test_a_text_whose_copies_have_different_scores_is_refused(tmp_path):
    """Copies of one text scored differently (another scorer's shard, nondeterministic batching): the join
    silently took the last copy's score; the error names the labelled line, the ids and their scores."""
    d = _tagged_with(tmp_path, ["x", "y", "x"], [0.9, 0.2, 0.3])
    lab = tmp_path / "lab.jsonl"
    lab.write_text(json.dumps({"text": "y", "label": 0}) + "\n" + json.dumps({"text": "x", "label": 1}) + "\n")
    res = CliRunner().invoke(app, ["calibrate", str(d), "--labelled", str(lab), "--target-recall", "0.5"])
    assert res.exit_code == 2, res.output
    assert f"{lab}:2" in res.output and "'id0'" in res.output and "'id2'" in res.output, res.output
    assert "0.9" in res.output and "0.3" in res.output and "different scores" in res.output, res.output


def test_a_corpus_that_cannot_be_read_is_refused_before_calibrating(tmp_path):
    """`--corpus` was read last: the threshold and metrics were printed and the PR curve written, then the
    command failed."""
    rows = [{"text": f"t{i}", "label": int(i >= 4)} for i in range(8)]
    res = _calibrate(tmp_path, rows, ("--target-recall", "0.5", "--corpus", str(tmp_path / "nope")))
    assert res.exit_code == 2 and "nope" in res.output, res.output
    assert "threshold 0" not in res.output and not (tmp_path / "tagged" / "pr_curve.png").exists(), res.output


def test_the_cli_reports_a_text_joined_to_several_copies(tmp_path):
    d = _tagged_with(tmp_path, ["x", "y", "x"], [0.9, 0.2, 0.9])
    lab = tmp_path / "lab.jsonl"
    lab.write_text(json.dumps({"text": "y", "label": 0}) + "\n" + json.dumps({"text": "x", "label": 1}) + "\n")
    res = CliRunner().invoke(app, ["calibrate", str(d), "--labelled", str(lab), "--target-recall", "0.5"])
    assert res.exit_code == 0 and "on 2 labelled rows" in res.output, res.output
    assert "1 labelled rows match several tagged documents (copies of one text, one score): each counted once" in res.output, res.output
