"""head.json, the file of settings and weights that the embedding and static scorers keep (`classifiers.head`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condpt.tagging.classifiers.embedding import EmbeddingScorer
from condpt.tagging.classifiers.head import HEAD_FILE, read_head, write_head
from condpt.tagging.classifiers.static import StaticScorer


def test_a_head_reads_back_what_was_written(tmp_path):
    write_head(tmp_path, {"coef": [1.0, 2.0], "intercept": -0.5})
    assert read_head(tmp_path, "test", ("coef", "intercept")) == {"coef": [1.0, 2.0], "intercept": -0.5}


@pytest.mark.parametrize("cls", [EmbeddingScorer, StaticScorer])
def test_scorers_save_and_load_their_head(tmp_path, cls):
    scorer = cls(np.array([0.5, -0.25]), 0.125, referent_penalty=2.0)
    scorer.save(tmp_path)
    back = cls.load(tmp_path)
    assert back.coef.tolist() == [0.5, -0.25] and back.intercept == 0.125 and back.referent_penalty == 2.0
    assert back.encoder == scorer.encoder and back.name.endswith(tmp_path.name)


@pytest.mark.parametrize("cls", [EmbeddingScorer, StaticScorer])
def test_a_head_without_a_field_names_the_file_and_the_field(tmp_path, cls):
    cls(np.zeros(2), 0.0).save(tmp_path)
    head = json.loads((tmp_path / HEAD_FILE).read_text())
    del head["coef"]
    (tmp_path / HEAD_FILE).write_text(json.dumps(head))
    with pytest.raises(ValueError, match=r"head\.json: missing field\(s\) coef"):
        cls.load(tmp_path)


@pytest.mark.parametrize("cls", [EmbeddingScorer, StaticScorer])
def test_a_head_that_is_not_json_names_the_file(tmp_path, cls):
    (tmp_path / HEAD_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"head\.json: not valid JSON"):
        cls.load(tmp_path)


@pytest.mark.parametrize(("cls", "what"), [(EmbeddingScorer, "embedding"), (StaticScorer, "static")])
def test_a_missing_head_names_the_file_and_the_kind(tmp_path, cls, what):
    with pytest.raises(FileNotFoundError, match=rf"head\.json: {what} head missing"):
        cls.load(tmp_path)
