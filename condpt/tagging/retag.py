"""`retag_dir`: apply another threshold to a finished `condpt tag` output without running a model.

Tags (documents and spans) are recomputed from the stored scores by the one rule (`condpt.tagged.tag_for`,
through `condpt.calibrate.retag`), rows move between ``data/`` and ``set_aside/`` as their tag now says, and
each chunk's marker and ``attributes/`` part (if any), ``run.json`` (its ``threshold``) and the report are
rewritten: the directory is then what ``condpt tag`` with that threshold writes (byte for byte when
``set_aside_roles`` is empty; with set-aside roles a row that moves is appended to its new part, so row order
within a part can differ).

Crash safety: ``OUT/.retag/`` exists for the whole retag (``condpt tag`` refuses the directory meanwhile).
A chunk's new files are written into ``.retag/stage/`` first, then a journal naming them, then they are
renamed into place and the journal removed; an interrupted retag is finished by running it again (a journal
left behind is rolled forward first, and tags are a pure function of the stored scores, so redoing a chunk is
harmless). Quarantined records are untouched: ``read = written + set_aside + quarantined`` still holds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from condpt.corpus import TAGGED_SCHEMA, CorpusError, shown, write_parquet_atomic
from condpt.corpus.write import read_json_object, write_text_atomic
from condpt.tagged import check_threshold, stored_row_problem
from condpt.tagging.attributes import ATTRIBUTE_COLUMNS, ATTRIBUTES_SCHEMA, attributes_table
from condpt.tagging.config import TagConfig
from condpt.tagging.report import read_marker
from condpt.tagging.run import ATTRIBUTES, DATA, FORMAT_VERSION, MARKERS, RETAG, SET_ASIDE, TagRunError

JOURNAL = "journal.json"
HAND_EDITED = "the directory was changed by hand: tag again into a new --out"


def _read_table(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:  # opened by Python: pyarrow cannot open a path that is not UTF-8
            return pq.read_table(f)
    except (pa.ArrowException, OSError) as e:
        raise TagRunError(f"{shown(path)}: unreadable ({shown(e)}); the directory was damaged: tag again into a "
                          "new --out") from None


def _read(path: Path) -> list[dict]:
    table = _read_table(path)
    return [] if table is None else table.to_pylist()


def _check_chunk(out: Path, marker: Path, roles: tuple[str, ...]) -> None:
    """The chunk's parts hold the rows its marker counts, each with the columns `condpt tag` writes and values
    it could have written (`condpt.tagged.stored_row_problem`: a span past its text, a NaN score, a tag that
    is no role); the error names the part, the row and its id, and the field."""
    old = read_marker(marker)
    held = 0
    for sub, schema in ((DATA, TAGGED_SCHEMA), (SET_ASIDE, TAGGED_SCHEMA), (ATTRIBUTES, ATTRIBUTES_SCHEMA)):
        path = out / sub / f"{marker.stem}.parquet"
        table = _read_table(path)
        if table is None:
            continue
        where = f"{shown(path.relative_to(out))} in {shown(out)}"
        for want in schema:
            if want.name not in table.column_names:
                raise TagRunError(f"{where}: no field {want.name!r}; {HAND_EDITED}")
            if (got := table.schema.field(want.name).type) != want.type:
                raise TagRunError(f"{where}: field {want.name!r} is {got}, not {want.type}; {HAND_EDITED}")
        if extra := [c for c in table.column_names if c not in schema.names]:  # a rewrite would drop it
            raise TagRunError(f"{where}: field {extra[0]!r} is not one `condpt tag` writes; {HAND_EDITED}")
        for n, row in enumerate(table.to_pylist(), 1):
            if why := stored_row_problem(row, roles):
                raise TagRunError(f"{where}: row {n} (id {row.get('id')!r}): {why}; {HAND_EDITED}")
        held += table.num_rows if sub != ATTRIBUTES else 0
    if held != old["written"] + old["set_aside"]:
        raise TagRunError(f"{shown(marker)}: says {old['written'] + old['set_aside']} tagged rows, the parts hold "
                          f"{held}; {HAND_EDITED}")


def _plan(journal: Path) -> dict:
    """The journal's renames and removals, refused unless they are ones `_retag_chunk` writes: staged files
    onto a chunk's parts and marker (the journal is followed blindly, so a foreign one could move or delete
    anything under OUT, or outside it)."""
    plan = read_json_object(journal, ("moves", "remove"))
    parts = (DATA, SET_ASIDE, ATTRIBUTES, MARKERS)

    def ours(path: object, under: tuple[str, ...]) -> bool:
        p = Path(path) if isinstance(path, str) else None
        return p is not None and len(p.parts) == len(under[0].split("/")) + 1 and "/".join(p.parts[:-1]) in under \
            and p.name not in ("", ".", "..")

    moves, remove = plan["moves"], plan["remove"]
    if not (isinstance(moves, list) and isinstance(remove, list)
            and all(isinstance(m, list) and len(m) == 2 and ours(m[0], (f"{RETAG}/stage",)) and ours(m[1], parts)
                    for m in moves)
            and all(ours(r, (DATA, SET_ASIDE)) for r in remove)):
        raise TagRunError(f"{shown(journal)}: not a journal `condpt retag` wrote (its moves must take "
                          f"{RETAG}/stage/ files onto {', '.join(parts)}/); remove the directory and tag again")
    return plan


def _roll_forward(out: Path) -> None:
    """Finish the renames of a chunk whose journal was written (its staged files are complete)."""
    journal = out / RETAG / JOURNAL
    if not journal.exists():
        return
    plan = _plan(journal)
    for staged, target in plan["moves"]:
        if (out / staged).exists():
            os.replace(out / staged, out / target)
    for target in plan["remove"]:
        (out / target).unlink(missing_ok=True)
    journal.unlink()


def _chunk_stats(rows: dict, is_aside: list[bool], old: dict, threshold: float, bad_role: str) -> dict:
    """The marker statistics of the retagged rows, with the chunk's quarantine figures kept as they were."""
    from condpt.tagging.report import chunk_stats

    stats = chunk_stats(rows, is_aside, [], read=len(is_aside), threshold=threshold, bad_role=bad_role)
    stats.update(read=old["read"], quarantined=old["quarantined"], quarantine_reasons=old["quarantine_reasons"])
    for src, s in old["sources"].items():
        if s["quarantined"]:
            stats["sources"].setdefault(src, {"documents": 0, "bad": 0, "quarantined": 0})["quarantined"] = s[
                "quarantined"]
    assert stats["read"] == stats["written"] + stats["set_aside"] + stats["quarantined"], stats
    return stats


def _retag_chunk(out: Path, marker: Path, cfg: TagConfig, threshold: float, stage: Path, tmp: Path) -> None:
    from condpt.calibrate import retag

    name = marker.stem
    old = read_marker(marker)
    rows = _read(out / DATA / f"{name}.parquet") + _read(out / SET_ASIDE / f"{name}.parquet")  # `_check_chunk`ed
    batch = retag({c: [r[c] for r in rows] for c in TAGGED_SCHEMA.names}, threshold, cfg.good_role, cfg.bad_role)
    aside = set(cfg.set_aside_roles)
    is_aside = [t in aside for t in batch["tag"]]
    stats = _chunk_stats(batch, is_aside, old, threshold, cfg.bad_role)
    moves, remove = [], []
    for sub, want in ((DATA, False), (SET_ASIDE, True)):
        sel = [i for i, a in enumerate(is_aside) if a == want]
        target = Path(sub) / f"{name}.parquet"
        if not sel:
            remove.append(str(target))
            continue
        table = pa.Table.from_pydict({c: [batch[c][i] for i in sel] for c in TAGGED_SCHEMA.names},
                                     schema=TAGGED_SCHEMA)
        staged = stage / f"{sub}-{name}.parquet"
        write_parquet_atomic(table, staged, tmp)
        moves.append((str(staged.relative_to(out)), str(target)))
    attributes = _read(out / ATTRIBUTES / f"{name}.parquet")
    if attributes:  # `condpt tag --attributes`: the same decisions without the text, retagged alike
        cols = retag({c: [r[c] for r in attributes] for c in ATTRIBUTE_COLUMNS}, threshold, cfg.good_role,
                     cfg.bad_role)
        staged = stage / f"{ATTRIBUTES}-{name}.parquet"
        write_parquet_atomic(attributes_table(cols), staged, tmp)
        moves.append((str(staged.relative_to(out)), str(Path(ATTRIBUTES) / f"{name}.parquet")))
    staged = stage / f"marker-{name}.json"
    write_text_atomic(json.dumps({"chunk": old["chunk"], "made_from": old["made_from"], **stats}, sort_keys=True,
                                 indent=1), staged, tmp)
    moves.append((str(staged.relative_to(out)), str(Path(MARKERS) / marker.name)))  # the marker last
    write_text_atomic(json.dumps({"moves": moves, "remove": remove}), out / RETAG / JOURNAL, tmp)
    _roll_forward(out)


def _damaged(read, path: Path):
    try:
        return read(path)
    except (OSError, CorpusError) as e:
        raise TagRunError(f"{shown(e)}; the directory was damaged: tag again into a new --out") from None


def _check_parts(out: Path, markers: list[Path], chunks_total: int | None) -> None:
    """Every chunk the report counts has its marker, and every part its chunk's marker: retag goes marker by
    marker, so a part without one would be left out of the new report without a word."""
    have = {m.stem for m in markers}
    for sub in (DATA, SET_ASIDE, ATTRIBUTES):
        for part in sorted((out / sub).glob("part-*.parquet")):
            if part.stem not in have:
                raise TagRunError(f"{shown(part.relative_to(out))} in {shown(out)} has no marker "
                                  f"({MARKERS}/{part.stem}.json); the directory was changed by hand: tag again "
                                  "into a new --out")
    if chunks_total is not None and len(markers) != chunks_total:
        raise TagRunError(f"{shown(out / MARKERS)}: {len(markers)} chunk markers, report.json counts {chunks_total} "
                          "chunks; the directory was changed by hand: tag again into a new --out")


def retag_dir(out: str | Path, threshold: float) -> dict:
    """Retag the finished `condpt tag` output `out` at `threshold` (see module docstring); returns the new
    report (also in report.json). A tagged fraction far from the scorer's cross-validation at this threshold
    is warned about as `condpt tag` does."""
    import sys

    from condpt.tagging.expected import warning
    from condpt.tagging.report import write_report

    out = Path(out)
    try:
        threshold = check_threshold(threshold, "--threshold")  # as a tag config's (-0.0 recorded as 0.0)
    except ValueError as e:
        raise TagRunError(str(e)) from None
    if not (out / "run.json").is_file():
        raise TagRunError(f"{shown(out)}: not a `condpt tag` output (no run.json)")
    if not (out / "report.json").is_file():
        raise TagRunError(f"{shown(out / 'report.json')}: missing (`condpt tag` writes it right after run.json); run "
                          "the same `condpt tag` again to rewrite it, then retag")
    try:
        run = read_json_object(out / "run.json", ("config",))
        report = read_json_object(out / "report.json")
    except (OSError, CorpusError) as e:
        raise TagRunError(f"{shown(e)}; the directory was damaged: tag again into a new --out") from None
    if run.get("format") != FORMAT_VERSION:
        raise TagRunError(f"{shown(out / 'run.json')}: format {run.get('format')}, this condpt writes "
                          f"{FORMAT_VERSION}; tag again")
    if not report.get("complete") and not (out / RETAG).exists():
        raise TagRunError(f"{shown(out)}: the tag run is not complete (report.json: complete false); finish it "
                          "(run `condpt tag` again: it redoes the unfinished tasks) before retagging")
    markers = sorted((out / MARKERS).glob("part-*.json"))
    _check_parts(out, markers, report.get("chunks_total"))
    try:
        cfg = TagConfig.model_validate({**run["config"], "threshold": threshold})
    except (TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise TagRunError(f"{shown(out / 'run.json')}: config: {shown(str(e))}") from None
    for marker in markers:  # every one checked before the first chunk is rewritten
        _damaged(read_marker, marker)
    if (out / RETAG / JOURNAL).exists():
        _damaged(_plan, out / RETAG / JOURNAL)
    _roll_forward(out)  # an interrupted retag's last chunk first: its parts and marker agree again
    for marker in markers:  # every row too (read twice: a bad row found mid-way left a half-retagged directory)
        _check_chunk(out, marker, (cfg.good_role, cfg.bad_role))
    tmp = out / RETAG / "tmp"
    stage = out / RETAG / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    for marker in markers:
        _retag_chunk(out, marker, cfg, threshold, stage, tmp)
    run["config"] = cfg.model_dump(mode="json")
    write_text_atomic(json.dumps(run, sort_keys=True, indent=1), out / "run.json", tmp)
    meta = {"classifier": {**(report.get("classifier") or {}), "threshold_from": "config"},
            "scorer": report.get("scorer") or {}}
    report = write_report(out, report.get("chunks_total"), tmp_dir=tmp, skipped=report.get("skipped_files", []),
                          meta=meta)
    shutil.rmtree(out / RETAG)
    if line := warning(report["expected"], shown(out)):  # the commands it gives name this directory
        print(line, file=sys.stderr)
    return report
