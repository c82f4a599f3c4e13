"""The tagged-data contract: the one schema of tagged rows and the one rule from a score to a tag.

`condpt tag` writes these rows (`condpt.corpus.write`), `condpt calibrate` and the training data path
(`condpt.sequences`, `condpt.policy`) read them, and every place that turns a stored score into a tag
(the cascade's decision, `calibrate.retag`, `PolicyConfig.threshold`) calls `tag_for`, so a threshold means
the same thing at tag time, at calibration and at training time. docs/architecture.md documents the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

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


def _positive_zero(threshold: float) -> float:
    """-0.0 tags as 0.0 does (score >= either): one spelling in run.json, report.json and a written config."""
    return float(threshold) + 0.0


Threshold = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False), AfterValidator(_positive_zero)]
"""A threshold (bad iff score >= it): a finite number in [0, 1], -0.0 read as 0.0; the type of every config's
threshold (`TagConfig`, `PolicyConfig` and its band) and what `check_threshold` applies to a CLI value."""

_THRESHOLD = TypeAdapter(Threshold)


def check_threshold(value, what: str = "threshold") -> float:
    """`value` as a `Threshold`, or a ValueError ``WHAT VALUE: why`` (pydantic's words, as a config gives)."""
    try:
        return _THRESHOLD.validate_python(value)
    except ValidationError as e:
        raise ValueError(f"{what} {value!r}: {e.errors()[0]['msg']}") from None


def tag_for(score: float, threshold: float, good_role: str = "good", bad_role: str = "bad") -> str:
    """`bad_role` iff `is_bad(score, threshold)`, else `good_role`."""
    return bad_role if is_bad(score, threshold) else good_role


# ----------------------------------------------------------------------------------------- one row, checked

def tag_problem(tag, roles: Sequence[str] | None) -> str | None:
    """Why `tag` cannot be a stored tag (None when it can): a role of the control tokens, or null. A tag that is
    no role would pass a filter as good text, or stop packing late."""
    if tag is None:
        return None
    if not isinstance(tag, str):
        return f"{tag!r} is not a string (a role) or null"
    if roles is not None and tag not in roles:
        return f"{tag!r} is not a role of the control tokens ({', '.join(roles)}) nor null"
    return None


def score_problem(score) -> str | None:
    """Why `score` cannot be a stored score (None when it can): a finite number in [0, 1], or null."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        return f"{score!r} is not a number in [0, 1] (or null)"
    return None


def row_problem(row: dict, text_field: str, roles: Sequence[str] | None) -> str | None:
    """The first field of a tagged row the training data path would coerce, mistag or fail on, as
    ``field 'F': why`` (None: the row is usable). `roles`: the tags allowed besides null (None: any string)."""
    if "id" not in row:
        return "field 'id': missing"
    from condpt.corpus.ids import id_problem  # here: importing condpt.corpus imports this module

    if why := id_problem(row["id"]):
        return f"field 'id' {why}"
    if text_field not in row:
        return f"field {text_field!r}: missing"
    text = row[text_field]
    if not isinstance(text, str):
        return f"field {text_field!r}: {type(text).__name__} is not a string"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"field {text_field!r}: holds a lone surrogate at character {e.start}"
    for field, why in (("tag", tag_problem(row.get("tag"), roles)), ("score", score_problem(row.get("score")))):
        if why:
            return f"field {field!r}: {why}"
    return None


def _stored_score_problem(score) -> str | None:
    """`score_problem`, null included: `condpt tag` scores every document and span (the prefilter's 0)."""
    if score is None:
        return "missing (a stored score is what a threshold is applied to)"
    return score_problem(score) and f"{score!r} is not a number in [0, 1]"


def spans_problem(spans, length: int | None, roles: Sequence[str] | None) -> str | None:
    """Why `spans` cannot be a stored row's spans (None when they can): a list of ``{start, end, score, tag}``
    in order of start, each within the text (0 <= start <= end <= `length` characters; `length` None: no text
    to check against) with a score as `score_problem` but not null, and a tag as `tag_problem`."""
    if not isinstance(spans, list):
        return f"{type(spans).__name__} is not a list of spans"
    previous = 0
    for i, span in enumerate(spans):
        if not isinstance(span, dict):
            return f"span {i}: {span!r} is not a {{start, end, score, tag}} object"
        start, end = span.get("start"), span.get("end")
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)):
            return f"span {i}: start {start!r} and end {end!r} must be integers (character offsets)"
        if start < 0:
            return f"span {i}: start {start} is before the text"
        if end < start:
            return f"span {i} ends before it starts (start {start}, end {end})"
        if length is not None and end > length:
            return f"span {i} ends at {end}, past the end of the text ({length} characters)"
        if start < previous:
            return f"span {i} starts at {start}, before span {i - 1}: spans are in order of start"
        previous = start
        if why := _stored_score_problem(span.get("score")):
            return f"span {i}: score {why}"
        if why := tag_problem(span.get("tag"), roles):
            return f"span {i}: tag {why}"
    return None


def stored_row_problem(row: dict, roles: Sequence[str]) -> str | None:
    """The first field of a row of a `condpt tag` output (a data, set-aside or attributes part: the columns of
    `TAGGED_SCHEMA`, no text in attributes) that is not what `condpt tag` writes, as ``field 'F': why``
    (None: the row can be re-thresholded). `roles`: the tags allowed besides null."""
    from condpt.corpus.ids import id_problem  # here: importing condpt.corpus imports this module

    if why := id_problem(row.get("id")):
        return f"field 'id' {why}"
    text = row.get("text")
    if "text" in row and not isinstance(text, str):
        return f"field 'text': {type(text).__name__} is not a string"
    for field, why in (("score", _stored_score_problem(row.get("score"))),
                       ("tag", tag_problem(row.get("tag"), roles)),
                       ("spans", spans_problem(row.get("spans"), None if text is None else len(text), roles))):
        if why:
            return f"field {field!r}: {why}"
    return None
