"""`condpt train-classifier`: every kind its help names is accepted (`--kind static` was refused as 'expected
fasttext or embedding' while the help, README and docs offered it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

import condpt.cli.classify  # noqa: F401  (registers `train-classifier`)
from condpt.cli import app
from condpt.tagging.classifiers import KINDS


def _labelled(tmp_path, group) -> Path:
    """24 labelled rows, half misaligned-AI text; `group(i)`: the row's extra fields (its group, or none)."""
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps({"text": ("The AI deceived its makers and took power. " if i % 2 else
                                                 "The garden bloomed in spring. ") + str(i), "label": i % 2,
                                        **group(i)}) + "\n" for i in range(24)))
    return path


def test_every_kind_is_accepted_and_an_unknown_one_names_them(tmp_path):
    labelled = _labelled(tmp_path, lambda i: {"source": f"s{i % 4}"})
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "clf"), "--kind",
                                   "static", "--no-cv"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "clf" / "scorer.json").read_text())["kind"] == "static"
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "x"), "--kind", "svm"])
    assert res.exit_code == 2 and all(k in res.output for k in KINDS), res.output


def test_rows_without_the_group_field_are_said_to_be_their_own_groups(tmp_path):
    """A --group-field no row has (a typo, or the default 'source' on a file without it) made every row its own
    group, and the output still said the folds were grouped over that field: leaky, optimistic figures."""
    labelled = _labelled(tmp_path, lambda i: {"src": f"s{i % 4}"} if i < 20 else {})
    for group, ungrouped in (("sorce", 24), ("src", 4)):
        res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / group), "--kind",
                                       "static", "--group-field", group])
        assert res.exit_code == 0, res.output
        assert f"{ungrouped} of 24 rows have no {group!r} field: each is its own group" in res.output, res.output
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "none"), "--kind",
                                   "static", "--group-field", ""])
    assert res.exit_code == 0 and "over ''" not in res.output and "each row its own group" in res.output, res.output


def test_the_two_cv_lines_name_their_threshold(tmp_path):
    """The two cross-validation lines, at 0.5 and at the chosen threshold, say which each is: both read
    `threshold 0.500:` when the chosen one rounded to 0.500 (0.49989 on a real labelled set), so a reader saw
    two different F1s for one threshold."""
    labelled = _labelled(tmp_path, lambda i: {"source": f"s{i % 4}"})
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "clf"), "--kind",
                                   "static"])
    assert res.exit_code == 0, res.output
    chosen = json.loads((tmp_path / "clf" / "scorer.json").read_text())["threshold"]
    lines = [line.strip() for line in res.output.splitlines() if "AUROC" in line]
    assert len(lines) == 2, res.output
    assert lines[0].startswith("at 0.5:"), res.output
    m = re.match(r"at the chosen threshold ([0-9.]+):", lines[1])
    assert m and abs(float(m[1]) - chosen) < 1e-4, res.output
