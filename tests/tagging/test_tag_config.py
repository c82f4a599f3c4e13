"""TagConfig: the record fields and roles a tag run depends on are refused at load when they cannot mean
what they say (issue 9 sweep 2)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.tagging.config import TagConfig


@pytest.mark.parametrize("field", ["text_field", "id_field", "source_field", "good_role", "bad_role"])
def test_an_empty_field_or_role_is_refused(field):
    """`--id-field ""` tagged every record under a generated id, silently (no record has a field ''), and an
    empty role wrote tags nothing reads."""
    with pytest.raises(ValidationError, match=field):
        TagConfig(**{field: ""})


@pytest.mark.parametrize(("fields", "why"), [({"id_field": "text"}, "text_field and id_field"),
                                             ({"source_field": "text"}, "text_field and source_field"),
                                             ({"id_field": "k", "source_field": "k"}, "id_field and source_field")])
def test_one_record_field_in_two_roles_is_refused(fields, why):
    """--id-field text made each text its own id (a repeated text then quarantined as a 'duplicate id')."""
    with pytest.raises(ValidationError, match=why):
        TagConfig(**fields)


def test_cli_names_the_option(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "hello"}) + "\n")
    res = CliRunner().invoke(app, ["tag", str(src), "--out", str(tmp_path / "out"), "--classifier", "none",
                                   "--quiet", "--id-field", ""])
    assert res.exit_code == 2 and "id_field" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "out").exists()
