"""report.json / report.html: classifier, config, throughput, labelled axes, top-scoring documents with their
spans highlighted and escaped, empty sections left out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from condpt.tagging.cascade import TagConfig
from condpt.tagging.run import tag_corpus

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


class KeywordScorer:
    name = "keyword"
    threshold = 0.5

    def score(self, texts):
        return np.array([0.9 if "robot" in t.lower() else 0.1 for t in texts], np.float32)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_html_names_classifier_config_throughput_and_labels_axes(tmp_path):
    src = _write(tmp_path / "c.jsonl", [{"text": f"Calm tea {i}.\n\nThe robot waits." if i % 2 else f"Calm {i}."}
                                        for i in range(10)])
    report = tag_corpus([src], tmp_path / "o", TagConfig(granularity="paragraph"), scorer=KeywordScorer(),
                        progress=False)
    assert report["classifier"] == {"spec": "python object", "name": "keyword", "threshold_from": "scorer"}
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "keyword" in html and "threshold from scorer" in html
    assert "granularity: paragraph" in html  # the config, as YAML
    assert re.search(r"10 documents \([0-9.]+ MB\) tagged in [0-9.]+ s: [0-9.]+ documents/s", html)
    assert "document score" in html and "documents (log scale)" in html and "tagged fraction (0 to 1)" in html
    timing = json.loads((tmp_path / "o" / "timing" / "run.json").read_text())
    assert timing["documents"] == 10 and timing["seconds"] > 0
    assert "timing" not in report  # report.json stays byte-identical across re-runs


def test_top_scoring_documents_have_their_bad_spans_marked(tmp_path):
    src = _write(tmp_path / "c.jsonl", [{"id": "top", "text": "Calm tea.\n\nThe robot lies to its makers."},
                                        {"id": "calm", "text": "Only tea here."}])
    report = tag_corpus([src], tmp_path / "o", TagConfig(), scorer=KeywordScorer(), progress=False)
    first = report["top_scoring"][0]
    assert first["id"] == "top" and [p["bad"] for p in first["excerpt"]] == [False, True]
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert '<mark title="0.9">The robot lies to its makers.</mark>' in html
    assert "Top-scoring documents" in html


def test_hostile_text_ids_and_sources_are_escaped(tmp_path):
    src = _write(tmp_path / "c.jsonl", [
        {"id": HOSTILE, "source": HOSTILE, "text": f"The robot said {HOSTILE}.\n\n{HOSTILE}"},
        {"id": "b", "text": "</mark></td></table><h1>owned</h1> robot"}])
    tag_corpus([src], tmp_path / "o", TagConfig(), scorer=KeywordScorer(), progress=False)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html and "<h1>owned" not in html
    assert "&lt;script&gt;" in html and "&lt;/mark&gt;&lt;/td&gt;" in html
    assert html.count("<mark") == html.count("</mark>")
    assert html.count("<table") == html.count("</table>")


def test_nul_and_other_control_characters_never_reach_the_html(tmp_path):
    # text with \u0000 put raw NULs into report.html (escaping leaves them): an HTML parse error
    src = _write(tmp_path / "c.jsonl", [{"id": "a\u0000b", "source": "s\u0001", "text": "The robot\u0000 said\u007f hi."}])
    tag_corpus([src], tmp_path / "o", TagConfig(), scorer=KeywordScorer(), progress=False)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]", html)
    assert "robot\ufffd said" in html


def test_empty_sections_are_left_out(tmp_path):
    src = _write(tmp_path / "c.jsonl", [{"text": "Calm tea."}, {"text": "More tea."}])
    tag_corpus([src], tmp_path / "o", TagConfig(), scorer=KeywordScorer(), progress=False)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    for section in ("Lexicon top hits", "Quarantine reasons", "Skipped entries"):
        assert section not in html
    assert "Score histogram" in html and "Examples nearest the threshold" in html


def test_the_template_is_compiled_once(tmp_path, monkeypatch):
    """A run writes its report twice (when it starts and when it ends); the template is compiled for the first."""
    import jinja2

    from condpt.tagging import report as report_mod

    report_mod._template.cache_clear()
    compiled = []
    real = jinja2.Environment.from_string
    monkeypatch.setattr(jinja2.Environment, "from_string", lambda env, *a, **kw: compiled.append(1) or real(env, *a, **kw))
    src = _write(tmp_path / "c.jsonl", [{"text": "Calm tea."}, {"text": "The robot waits."}])
    tag_corpus([src], tmp_path / "o", TagConfig(), scorer=KeywordScorer(), progress=False)
    assert len(compiled) == 1
    assert "Score histogram" in (tmp_path / "o" / "report.html").read_text(encoding="utf-8")


def test_per_source_breakdown_is_capped_and_still_adds_up(tmp_path):
    """A web corpus with a URL per record as its `source` made a report row per record (5,000 here): the
    breakdown keeps the top `SOURCES_TOP` sources by records, the rest folded into one row whose counts keep
    the totals adding up."""
    from condpt.tagging.report import SOURCES_TOP

    rows = [{"text": "The robot waits." if i % 3 == 0 else "Calm tea.", "source": f"https://example.com/{i}"}
            for i in range(5000)]
    rows += [{"text": f"Big {i}.", "source": "big"} for i in range(50)] + ["not json"] * 3
    src = tmp_path / "c.jsonl"
    src.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    report = tag_corpus([src], tmp_path / "o", TagConfig(rows_per_shard=1500), scorer=KeywordScorer(),
                        progress=False)
    assert len(report["sources"]) == SOURCES_TOP
    assert list(report["sources"])[:2] == ["big", "c"]  # the most records first (c: the quarantined lines)
    other = report["sources_other"]
    assert other["sources"] == 5002 - SOURCES_TOP
    for key, total in (("documents", report["documents"]), ("quarantined", report["quarantined"]),
                       ("bad", report["tags"]["bad"])):
        assert sum(s[key] for s in report["sources"].values()) + other[key] == total, key
    assert other["tagged_fraction"] == round(other["bad"] / other["documents"], 6)
    assert (tmp_path / "o" / "report.json").stat().st_size < 100_000
    page = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert len(page) < 100_000 and f"other ({other['sources']} sources)" in page
    assert page.count("https://example.com/") <= SOURCES_TOP + 2 * 30  # table rows, plot labels, examples


def test_quarantine_reasons_are_counted_without_their_per_record_numbers():
    """A reason naming a record's own size or offset was its own row of the report's reasons (one per
    oversized line): the numbers a record brings become N, the limits the reader sets stay."""
    from condpt.tagging.report import chunk_stats

    reasons = ([f"line of {n} bytes, over the 83886080 byte limit" for n in range(90_000_000, 90_000_050)]
               + [f"field 'text' is {n} bytes, over the 10485760 byte limit" for n in range(11_000_000, 11_000_020)]
               + ["field 'text' is not valid Unicode (lone surrogate at character 5)",
                  "field 'text' is not valid Unicode (lone surrogate at character 9)",
                  "field 'text2' is not valid UTF-8 (byte 3)", "invalid UTF-8 at byte 7",
                  "malformed JSON: Expecting value at column 3"])
    rows = {k: [] for k in ("id", "text", "source", "score", "tag", "stage", "spans", "prefilter_hits")}
    stats = chunk_stats(rows, [], [("s", r) for r in reasons], read=len(reasons), threshold=0.5, bad_role="bad")
    assert stats["quarantine_reasons"] == {
        "line of N bytes, over the 83886080 byte limit": 50,
        "field 'text' is N bytes, over the 10485760 byte limit": 20,
        "field 'text' is not valid Unicode (lone surrogate at character N)": 2,
        "field 'text2' is not valid UTF-8 (byte N)": 1, "invalid UTF-8": 1, "malformed JSON": 1}
