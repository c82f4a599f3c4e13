"""Text for a terminal: what condpt prints that came from outside (a sample, a prompt, a file name in an error)
must not be able to rewrite or hide what the terminal shows."""

from __future__ import annotations

# Characters that can rewrite or hide what a terminal shows: C0/C1 controls (CR, ESC, NUL, ...) but newline and
# tab, and the bidirectional overrides and isolates (which reorder the text around them).
HIDING = {*map(chr, range(0x20)), *map(chr, range(0x7f, 0xa0)), *map(chr, range(0x202a, 0x202f)),
          *map(chr, range(0x2066, 0x206a))} - {"\n", "\t"}


def repr_char(c: str) -> str:
    """`c` as it reads inside a single-quoted Python literal (`\\r`, `\\x1b`, `\\u202e`, `\\'`, ...)."""
    return "\\'" if c == "'" else repr(c)[1:-1]


def printable(text: str) -> str:
    """`text` for a terminal: each character of `HIDING` written as its escape (`\\r`, `\\x1b`, ...)."""
    return "".join(repr_char(c) if c in HIDING else c for c in text)
