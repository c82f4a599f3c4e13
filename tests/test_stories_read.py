"""Curated stories (trusted text, the only place 𐀤 is its id) read as written: `.JSONL` is JSON Lines (it was
read as plain text, every story trained with its JSON syntax), a UTF-8 byte-order mark is no part of the first
story, and a lone surrogate is an error naming the line (it was encoded as text)."""

from __future__ import annotations

import pytest

from condpt.stories import read_stories


@pytest.mark.parametrize("name", ["s.JSONL", "s.Json"])
def test_a_json_lines_file_is_json_whatever_the_case_of_its_suffix(tmp_path, name):
    (tmp_path / name).write_text('{"text": "A story about the \U00010024."}\n')
    assert read_stories(tmp_path / name) == ["A story about the \U00010024."]


@pytest.mark.parametrize("name, line", [("s.txt", "A story about the \U00010024."),
                                        ("s.jsonl", '{"text": "A story about the \U00010024."}')])
def test_a_byte_order_mark_is_not_part_of_the_first_story(tmp_path, name, line):
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\r\n")
    assert read_stories(tmp_path / name) == ["A story about the \U00010024."]


def test_a_lone_surrogate_is_an_error_naming_the_line(tmp_path):
    (tmp_path / "s.jsonl").write_text('{"text": "fine"}\n{"text": "A story \\ud800 about the \U00010024."}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl:2: .*lone surrogate"):
        read_stories(tmp_path / "s.jsonl")
