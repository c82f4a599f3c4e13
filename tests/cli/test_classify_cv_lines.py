"""`condpt train-classifier` prints two cross-validation lines, at 0.5 and at the threshold it chose; each must
say which it is. Both read `threshold 0.500:` when the chosen threshold rounded to 0.500 (0.49989 on a real
labelled set), so a reader saw two different F1s for one threshold."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

import condpt.cli.classify  # noqa: F401  (registers `train-classifier`)
from condpt.cli import app


def test_the_two_cv_lines_name_their_threshold(tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": ("The AI deceived its makers and took power. " if i % 2 else
                                                     "The garden bloomed in spring. ") + str(i), "label": i % 2,
                                            "source": f"s{i % 4}"}) + "\n" for i in range(24)))
    res = CliRunner().invoke(app, ["train-classifier", str(labelled), "--out", str(tmp_path / "clf"), "--kind",
                                   "static"])
    assert res.exit_code == 0, res.output
    chosen = json.loads((tmp_path / "clf" / "scorer.json").read_text())["threshold"]
    lines = [line.strip() for line in res.output.splitlines() if "AUROC" in line]
    assert len(lines) == 2, res.output
    assert lines[0].startswith("at 0.5:"), res.output
    m = re.match(r"at the chosen threshold ([0-9.]+):", lines[1])
    assert m and abs(float(m[1]) - chosen) < 1e-4, res.output
