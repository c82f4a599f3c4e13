"""Whether a `condpt tag` output may be read as a whole corpus (calibration, a training run's data source):
the one check, light enough for config loading (it imports no tagging machinery)."""

from __future__ import annotations

from pathlib import Path

RETAG = ".retag"  # `condpt retag`'s journal (condpt.tagging.retag): present only while a retag is unfinished


def unfinished(out: Path) -> str | None:
    """Why the `condpt tag` output `out` must not be read as a whole corpus yet, or None: a run that stopped
    part way or is still running (report.json: complete false) or a retag interrupted (its journal directory).
    A directory without report.json and run.json (shards put together by hand) says nothing either way; one
    with run.json but no report.json lost the report that would say."""
    from condpt.corpus import CorpusError, shown
    from condpt.corpus.write import read_json_object

    out = Path(out)
    if (out / RETAG).exists():
        return (f"{shown(out)}: a `condpt retag` was interrupted (its shards mix two thresholds); run "
                f"`condpt retag {shown(out)} --threshold T` again to finish it")
    if not (out / "report.json").is_file():  # run.json is written first, then report.json at once
        if (out / "run.json").is_file():
            return (f"{shown(out)}: a `condpt tag` output (run.json but no report.json): whether it finished is "
                    "unknown; run the same `condpt tag` again (it writes the report and finishes what is left)")
        return None
    try:
        report = read_json_object(out / "report.json")
    except (OSError, CorpusError) as e:
        return shown(e)
    if report.get("complete") is not True:
        done = f"{report.get('chunks_done')} of {report.get('chunks_total') or '?'} chunks"
        why = f"; it stopped: {report['error']}" if report.get("error") else ""
        return (f"{shown(out)}: the tag run is not complete (report.json: complete false, {done}{why}); run the "
                "same `condpt tag` again to finish it")
    return None
