"""condpt/terminal.py: what could rewrite or hide terminal output is shown escaped; everything else is kept."""

from __future__ import annotations

from condpt.terminal import printable


def test_controls_and_bidi_are_escaped_newline_and_tab_kept():
    assert printable("a\rb\x1b[31mc\x00d\x9be\u202ef\u2066g") == "a\\rb\\x1b[31mc\\x00d\\x9be\\u202ef\\u2066g"
    assert printable("line\n\tindented, 𐀤 <|good|> é") == "line\n\tindented, 𐀤 <|good|> é"
