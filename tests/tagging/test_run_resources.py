"""`condpt tag` loads every resource its config names (lexicon, refine scorer) before it touches OUT: a missing
or broken one is an error naming it, exit 2, with no traceback and no half-started output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus


def _corpus(tmp_path: Path) -> Path:
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps({"text": f"Doc {i}. The AI takeover began."}) + "\n" for i in range(5)))
    return p


@pytest.mark.parametrize("lexicon, why", [("missing.yaml", "not found"), ("broken.yaml", "not valid YAML")])
def test_a_lexicon_that_cannot_load_is_an_error_before_out_is_touched(tmp_path, lexicon, why):
    (tmp_path / "broken.yaml").write_text("terms: [1, 2\n")
    cfg = tmp_path / "tag.yaml"
    cfg.write_text(f"classifier: {{spec: none}}\nprefilter: {{lexicon: {tmp_path / lexicon}}}\n")
    res = CliRunner().invoke(app, ["tag", str(_corpus(tmp_path)), "--out", str(tmp_path / "out"), "--config",
                                   str(cfg), "--quiet"])
    assert res.exit_code == 2 and lexicon in res.output and why in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


class _Scorer:
    def score(self, texts):
        return np.full(len(texts), 0.5)


def test_a_refine_scorer_that_cannot_load_is_an_error_before_out_is_touched(tmp_path):
    cfg = TagConfig(classifier={"spec": "fasttext-default"}, refine={"spec": str(tmp_path / "no-such-scorer"),
                                                                    "band": [0.0, 1.0]})
    with pytest.raises((OSError, ValueError), match="no-such-scorer"):
        tag_corpus([_corpus(tmp_path)], tmp_path / "out", cfg, scorer=_Scorer(), progress=False)
    assert not (tmp_path / "out").exists()
