"""A source's `text_field` cannot be one of the other columns the data path reads: `text_field: source` trained
every document as its source name, `id` or `tag` failed late with a datasets error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from condpt.sequences import SourceConfig


@pytest.mark.parametrize("field", ["id", "tag", "score", "spans", "source"])
def test_text_field_cannot_be_another_column(field):
    with pytest.raises(ValidationError, match=f"text_field {field!r} is the source's {field!r} column"):
        SourceConfig(path="corpus.jsonl", text_field=field)


def test_text_field_may_be_any_other_name():
    assert SourceConfig(path="corpus.jsonl", text_field="body").columns == ("id", "body", "tag")
