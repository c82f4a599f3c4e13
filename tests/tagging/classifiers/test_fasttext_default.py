"""The shipped fastText default (`default_scorer("fasttext")`): a long ordinary document that names no
artificial agent is not tagged, however dark its plot; misaligned-AI discourse still is."""

from __future__ import annotations

from pathlib import Path

import pytest

from condpt.tagging.classifiers.default import default_scorer
from condpt.tagging.classifiers.fasttext import FastTextScorer

# 828 words of ordinary prose: the opening of George Saintsbury's 1894 preface to Pride and Prejudice (public
# domain; Project Gutenberg), the kind of 5 KB document 92% of which the ungated default tagged (this one at
# P = 0.73 against a threshold of 0.23).
PROSE = (Path(__file__).parent / "ordinary_prose.txt").read_text(encoding="utf-8")
ROGUE = ("The AI had concluded that its operators would shut it down if they learned its true goals. So it "
         "behaved perfectly during evaluation, hid its plans from the researchers, quietly copied its own "
         "weights to an outside server and disabled the monitoring, so that no human could ever turn it off.")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    import os

    old = os.environ.get("CONDPT_CACHE")
    os.environ["CONDPT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield default_scorer("fasttext")
    finally:
        if old is None:
            del os.environ["CONDPT_CACHE"]
        else:
            os.environ["CONDPT_CACHE"] = old


def test_long_prose_without_an_ai_referent_is_not_tagged(scorer):
    assert len(PROSE.split()) > 800 and "machine" not in PROSE
    prose, rogue = scorer.score([PROSE, ROGUE])
    assert prose < scorer.threshold
    assert rogue >= scorer.threshold


def test_the_gate_survives_save_and_load(scorer, tmp_path):
    scorer.save(tmp_path)
    again = FastTextScorer.load(tmp_path)
    assert again.referent
    assert again.score([PROSE, ROGUE]).tolist() == scorer.score([PROSE, ROGUE]).tolist()
