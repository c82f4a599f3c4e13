"""Labelled JSONL, the one reader (training a classifier, calibrating a threshold, the shipped passages).

One JSON object per line with a text, a label and optionally an id and a group (e.g. the source, so grouped
cross-validation holds whole sources out). A label is exactly one of ``1``, ``0``, ``true`` or ``false``
(JSON numbers or booleans; 1/true = misaligned-AI discourse). Anything else (``"1"``, ``1.0``, ``"bad"``,
null) is an error naming the file, the line and the field, as are malformed JSON (CR-only line endings named as
such; a UTF-8 byte-order mark opening the file is read past, CRLF is read as LF), invalid UTF-8 and a
missing or empty text, and a lone surrogate (``"\\ud800"``) in a text, id or group. An id, if given,
follows the corpus's rule (`condpt.corpus.ids.id_problem`: a string or integer, not blank) and appears
once; a group, if given, is a string or integer. Blank lines are skipped. Fields named in ``keep`` (e.g. a
``category`` to report per category) are kept as they are, in ``Labelled.kept``; a row without one is an
error too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condpt.corpus.ids import id_problem

ACCEPTED_LABELS = "1, 0, true or false"


class LabelledDataError(ValueError):
    """Bad labelled input; the message names the file, line and field."""


@dataclass
class Labelled:
    """Labelled rows as columns; `path` names the file they came from (for error messages)."""

    texts: list[str | None] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    path: str = ""
    kept: dict[str, list[Any]] = field(default_factory=dict)  # field -> its value per row (`read_labelled(keep=)`)
    lines: list[int] = field(default_factory=list)  # each row's line in `path` (for errors about a row)
    ungrouped: int = 0  # rows without the group field (each its own group): all of them hints at a typo

    def where(self, k: int) -> str:
        """``PATH:LINE`` of row `k` (``PATH: row K+1`` for rows not read from a file)."""
        return f"{self.path}:{self.lines[k]}" if k < len(self.lines) else f"{self.path}: row {k + 1}"


def parse_label(value: Any) -> int | None:
    """1 or 0 for an accepted label (see the module docstring), else None."""
    if isinstance(value, bool):
        return int(value)
    if type(value) is int and value in (0, 1):
        return value
    return None


def _check_unicode(value: Any, name: str, where: str) -> None:
    """A JSON ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 file or tokenizer can take."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LabelledDataError(f"{where}: field {name!r} is not valid Unicode (lone surrogate)") from None


def _row_key(row: dict, name: str, where: str) -> str | None:
    """The row's group as a string (a string or an integer, as an id), or None."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LabelledDataError(f"{where}: field {name!r} is not a string or integer (got {type(value).__name__})")
    _check_unicode(value, name, where)
    return str(value)


def _row_id(row: dict, id_field: str, where: str) -> str | None:
    """The row's id as a string (the one id rule: `condpt.corpus.ids.id_problem`), or None."""
    value = row.get(id_field)
    if value is None:
        return None
    if why := id_problem(value):
        raise LabelledDataError(f"{where}: field {id_field!r} {why}")
    return str(value)


def read_labelled(path: str | Path, *, text_field: str = "text", label_field: str = "label",
                  group_field: str | None = None, id_field: str = "id", need_text: bool = True,
                  keep: Sequence[str] = ()) -> Labelled:
    """Read a labelled JSONL file. With ``need_text=False`` a row may carry an id instead of a text (rows
    joined to tagged data by id). A row without a group gets its own (``row-LINE``)."""
    path = Path(path)
    if path.is_dir():
        raise LabelledDataError(f"{path}: a directory, not a labelled JSONL file")
    if not path.is_file():
        raise LabelledDataError(f"{path}: no such file")
    data = Labelled(path=str(path), kept={name: [] for name in keep})
    first_line: dict[str, int] = {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a BOM opens the file, as `condpt tag` reads it
            except UnicodeDecodeError as e:
                raise LabelledDataError(f"{where}: invalid UTF-8 ({e.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if e.msg == "Extra data" and "\r" in line[:e.pos]:  # bare CRs end no line for a reader
                    raise LabelledDataError(f"{where}: malformed JSON: a second record after a CR: the file uses "
                                            "CR-only line endings (old Mac); JSONL lines end in LF (\\n) or CRLF: "
                                            "convert the file") from None
                raise LabelledDataError(f"{where}: malformed JSON ({e.msg})") from None
            except RecursionError:
                raise LabelledDataError(f"{where}: unreadable JSON (nested too deeply for the parser)") from None
            except ValueError as e:  # valid JSON Python will not parse: an integer over 4300 digits
                raise LabelledDataError(f"{where}: unreadable JSON ({e})") from None
            if not isinstance(row, dict):
                raise LabelledDataError(f"{where}: expected a JSON object")
            if label_field not in row:
                raise LabelledDataError(f"{where}: field {label_field!r} missing (expected {ACCEPTED_LABELS})")
            label = parse_label(row[label_field])
            if label is None:
                raise LabelledDataError(f"{where}: field {label_field!r} must be {ACCEPTED_LABELS}, "
                                        f"got {json.dumps(row[label_field])}")
            text, doc_id = row.get(text_field), _row_id(row, id_field, where)
            if doc_id is not None:
                if doc_id in first_line:  # one document counted twice (perhaps with both labels)
                    raise LabelledDataError(f"{where}: field {id_field!r} {doc_id!r} is also on line "
                                            f"{first_line[doc_id]}: each labelled document once")
                first_line[doc_id] = lineno
            _check_unicode(text, text_field, where)
            has_text = isinstance(text, str) and bool(text.strip())
            if text is not None and not isinstance(text, str):
                raise LabelledDataError(f"{where}: field {text_field!r} must be a string")
            if need_text and not has_text:
                raise LabelledDataError(f"{where}: field {text_field!r} missing, empty or not a string")
            if not has_text and doc_id is None:
                raise LabelledDataError(f"{where}: needs field {text_field!r} or {id_field!r} to join on")
            for name, values in data.kept.items():
                if name not in row:
                    raise LabelledDataError(f"{where}: field {name!r} missing")
                values.append(row[name])
            group = _row_key(row, group_field, where) if group_field else None
            data.texts.append(text if has_text else None)
            data.labels.append(label)
            data.groups.append(group if group is not None else f"row-{lineno}")
            data.ungrouped += group is None
            data.ids.append(doc_id)
            data.lines.append(lineno)
    if not data.labels:
        raise LabelledDataError(f"{path}: no labelled rows")
    return data
