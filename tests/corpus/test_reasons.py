"""Quarantine reasons read as sentences: json's own message for a raw control character ends in 'at', which the
reason doubled ('Invalid control character at at column 11')."""

from __future__ import annotations

from condpt.corpus import Fields, InputSpec, parse_record


def test_a_raw_control_character_is_named_once_with_its_column(tmp_path):
    spec = InputSpec(tmp_path / "a.jsonl", "jsonl", None, "a")
    out = parse_record(spec, 0, 1, b'{"text":"a\x0bb"}', Fields())
    assert out.reason == "malformed JSON: Invalid control character at column 11"


def test_a_file_with_cr_only_line_endings_is_named_as_such(tmp_path):
    # old Mac line ends: the whole file was one record quarantined as 'Extra data', which says nothing of why
    from condpt.corpus import expand_inputs, iter_records

    src = tmp_path / "mac.jsonl"
    src.write_bytes(b'{"text": "one"}\r{"text": "two"}\r{"text": "three"}\r')
    specs = expand_inputs([src])
    out = [parse_record(specs[k], k, line, payload, Fields()) for k, line, payload in iter_records(specs, Fields())]
    assert len(out) == 1 and "CR" in out[0].reason and "line endings" in out[0].reason, out
    assert out[0].raw == src.read_bytes().removesuffix(b"\r")  # nothing lost: the whole file, less its line end
