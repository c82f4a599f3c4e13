"""condpt.tagging.run: the tagging step hands documents on one classifier batch at a time, so the progress bar
(counted from what the writer has received) moves with each batch; with 256 documents per step, the default
scorer (~1.3 docs/s per core) showed 0% for minutes."""

from __future__ import annotations

from condpt.tagging.config import TagConfig
from condpt.tagging.run import _pipeline


def test_the_tagging_step_batches_as_the_classifier_does(tmp_path):
    cfg = TagConfig(classifier={"spec": "none", "batch_size": 7}, threshold=0.5)
    tagger = _pipeline([], tmp_path, cfg, 0.5, False, {}, 1)[1]
    assert tagger.batch_size == 7
