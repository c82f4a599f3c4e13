"""The attributes contract: a tagged document's id and what the cascade decided, without its text.

Dolma-style attributes live beside a corpus instead of inside a copy of it: a team whose corpus sits elsewhere
(another format, another bucket, already deduplicated) joins these rows to it by ``id``. `condpt tag
--attributes` writes them as ``OUT/attributes/part-k.parquet`` (`condpt.tagging.run`), the datatrove step
`condpt.tagging.datatrove_steps.AttributesWriter` as JSONL; both take the rows from here, so the columns
mean the same in each.
"""

from __future__ import annotations

import pyarrow as pa

from condpt.tagged import TAGGED_SCHEMA

# id + the decision (stored score, tag, spans with their own score and tag, the last stage that scored it)
ATTRIBUTE_COLUMNS = ("id", "score", "tag", "spans", "stage")
ATTRIBUTES_SCHEMA = pa.schema([TAGGED_SCHEMA.field(c) for c in ATTRIBUTE_COLUMNS])


def attribute_rows(rows: dict[str, list]) -> dict[str, list]:
    """The attribute columns of tagged rows (columns of `TAGGED_SCHEMA`, as the cascade returns them)."""
    return {c: rows[c] for c in ATTRIBUTE_COLUMNS}


def attributes_table(rows: dict[str, list]) -> pa.Table:
    return pa.Table.from_pydict(attribute_rows(rows), schema=ATTRIBUTES_SCHEMA)
