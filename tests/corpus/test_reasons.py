"""Quarantine reasons read as sentences: json's own message for a raw control character ends in 'at', which the
reason doubled ('Invalid control character at at column 11')."""

from __future__ import annotations

from condpt.corpus import Fields, InputSpec, parse_record


def test_a_raw_control_character_is_named_once_with_its_column(tmp_path):
    spec = InputSpec(tmp_path / "a.jsonl", "jsonl", None, "a")
    out = parse_record(spec, 0, 1, b'{"text":"a\x0bb"}', Fields())
    assert out.reason == "malformed JSON: Invalid control character at column 11"
