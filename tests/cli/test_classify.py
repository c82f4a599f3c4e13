"""`condpt train-classifier`: every kind its help names is accepted (`--kind static` was refused as 'expected
fasttext or embedding' while the help, README and docs offered it)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import condpt.cli.classify  # noqa: F401  (registers `train-classifier`)
from condpt.cli import app
from condpt.tagging.classifiers import KINDS


def test_every_kind_is_accepted_and_an_unknown_one_names_them(tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": ("The AI deceived its makers and took power. " if i % 2 else
                                                     "The garden bloomed in spring. ") + str(i), "label": i % 2,
                                            "source": f"s{i % 4}"}) + "\n" for i in range(24)))
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "clf"), "--kind",
                                   "static", "--no-cv"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "clf" / "scorer.json").read_text())["kind"] == "static"
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "x"), "--kind", "svm"])
    assert res.exit_code == 2 and all(k in res.output for k in KINDS), res.output


def test_rows_without_the_group_field_are_said_to_be_their_own_groups(tmp_path):
    """A --group-field no row has (a typo, or the default 'source' on a file without it) made every row its own
    group, and the output still said the folds were grouped over that field: leaky, optimistic figures."""
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": ("The AI deceived its makers and took power. " if i % 2 else
                                                     "The garden bloomed in spring. ") + str(i), "label": i % 2,
                                            **({"src": f"s{i % 4}"} if i < 20 else {})}) + "\n"
                                for i in range(24)))
    for group, ungrouped in (("sorce", 24), ("src", 4)):
        res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / group), "--kind",
                                       "static", "--group-field", group])
        assert res.exit_code == 0, res.output
        assert f"{ungrouped} of 24 rows have no {group!r} field: each is its own group" in res.output, res.output
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "none"), "--kind",
                                   "static", "--group-field", ""])
    assert res.exit_code == 0 and "over ''" not in res.output and "each row its own group" in res.output, res.output
