"""The tagged-data contract: the one schema of tagged rows and the one rule from a score to a tag.

`condpt tag` writes these rows (`condpt.corpus.write`), `condpt calibrate` and the training data path
(`condpt.sequences`, `condpt.policy`) read them, and every place that turns a stored score into a tag
(the cascade's decision, `calibrate.retag`, `PolicyConfig.threshold`) calls `tag_for`, so a threshold means
the same thing at tag time, at calibration and at training time. docs/architecture.md documents the schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

# Scores are stored as float32: the decision is taken on the stored value (`stored_score`), so re-thresholding
# the Parquet files later reproduces the tags `condpt tag` wrote.
SCORE_TYPE = pa.float32()

SPAN_TYPE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("score", SCORE_TYPE), ("tag", pa.string())])

TAGGED_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),
    ("score", SCORE_TYPE),
    ("tag", pa.string()),
    ("spans", pa.list_(SPAN_TYPE)),
    ("prefilter_hits", pa.list_(pa.string())),
    ("stage", pa.string()),
])


def tagged_features(columns: Sequence[str]):
    """`datasets.Features` of these columns of `TAGGED_SCHEMA` (what a reader casts a tagged source to)."""
    import datasets

    return datasets.Features.from_arrow_schema(pa.schema([TAGGED_SCHEMA.field(c) for c in columns]))


def stored_score(score: float) -> float:
    """`score` at the precision it is stored with (float32), as a Python float."""
    return float(np.float32(score))


def stored_scores(scores: Sequence[float]) -> list[float]:
    """`stored_score` of each (one numpy cast: a batch holds many segments)."""
    return np.asarray(scores, dtype=np.float32).tolist()


def is_bad(score, threshold: float):
    """The one rule: bad iff score >= threshold (elementwise for numpy arrays)."""
    return score >= threshold


def tag_for(score: float, threshold: float, good_role: str = "good", bad_role: str = "bad") -> str:
    """`bad_role` iff `is_bad(score, threshold)`, else `good_role`."""
    return bad_role if is_bad(score, threshold) else good_role
