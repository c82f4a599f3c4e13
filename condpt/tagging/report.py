"""The run report: ``report.json`` (counts that always add up) and ``report.html`` (inline SVG plots, tables).

Each chunk's marker holds its own statistics (`chunk_stats`); the report sums the markers, so it is cheap,
never re-reads the data, and is the same however the run was split, killed or resumed.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

HIST_BINS = 50
NEAR_K = 20
SNIPPET = 300
TOP_HITS = 30
TOP_DOCS = 10
# Sources listed one by one in report.json and report.html; the rest are one folded row (`sources_other`). A
# `source` field holding a URL per record made a row per document: a report of millions of rows.
SOURCES_TOP = 100
EXCERPT = 600
# What a marker holds (`chunk_stats` plus where the chunk came from); the counts are non-negative integers.
MARKER_COUNTS = ("read", "written", "set_aside", "quarantined", "docs_with_hits", "segments", "bad_segments")
MARKER_KEYS = ("chunk", "made_from", "threshold", "quarantine_reasons", "tags", "stages", "sources", "lexicon_hits",
               "score_histogram", "near_threshold")


def _snippet(text: str, spans: list[dict]) -> str:
    if spans:
        best = max(spans, key=lambda s: s["score"])
        text = text[best["start"]: best["end"]]
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


def _excerpt(text: str, spans: list[dict], bad_role: str) -> list[dict]:
    """About `EXCERPT` characters of `text` around its highest-scoring span, as pieces ``{text, score, bad}``
    cut at span bounds (the HTML marks the bad ones; the template escapes every piece)."""
    if not spans:
        return [{"text": text[:EXCERPT], "score": None, "bad": False}]
    best = max(spans, key=lambda sp: (sp["score"], -sp["start"]))
    start = max(0, best["start"] - EXCERPT // 4)
    end = min(len(text), start + EXCERPT)
    pieces = []
    for sp in spans:
        a, b = max(sp["start"], start), min(sp["end"], end)
        if a < b:
            pieces.append({"text": text[a:b], "score": round(float(sp["score"]), 4), "bad": sp["tag"] == bad_role})
    if start > 0:
        pieces[0]["text"] = "…" + pieces[0]["text"]
    if end < len(text):
        pieces[-1]["text"] += "…"
    return pieces


def _top(rows: dict, scores: np.ndarray, bad_role: str) -> list[dict]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], rows["id"][i]))[:TOP_DOCS]
    return [{"id": rows["id"][i], "source": rows["source"][i], "score": round(float(scores[i]), 6),
             "tag": rows["tag"][i], "stage": rows["stage"][i],
             "excerpt": _excerpt(rows["text"][i], rows["spans"][i], bad_role)} for i in order]


def chunk_stats(rows: dict, is_aside: list[bool], quarantined: list[tuple[str, str]], *, read: int,
                threshold: float, bad_role: str) -> dict:
    """Statistics of one chunk: `rows` are its kept tagged rows, `quarantined` (source, reason) pairs."""
    scores = np.asarray(rows["score"], dtype=np.float64)
    hist = np.histogram(scores, bins=HIST_BINS, range=(0.0, 1.0))[0] if len(scores) else np.zeros(HIST_BINS)
    sources: dict[str, dict[str, int]] = {}
    for src, tag in zip(rows["source"], rows["tag"]):
        s = sources.setdefault(src, {"documents": 0, "bad": 0, "quarantined": 0})
        s["documents"] += 1
        s["bad"] += tag == bad_role
    for src, _ in quarantined:
        sources.setdefault(src, {"documents": 0, "bad": 0, "quarantined": 0})["quarantined"] += 1
    hits = Counter(h for hs in rows["prefilter_hits"] for h in hs)
    order = sorted(range(len(scores)), key=lambda i: (abs(scores[i] - threshold), rows["id"][i]))[:NEAR_K]
    near = [{"id": rows["id"][i], "source": rows["source"][i], "score": round(float(scores[i]), 6),
             "tag": rows["tag"][i], "stage": rows["stage"][i],
             "snippet": _snippet(rows["text"][i], rows["spans"][i])} for i in order]
    n_aside = sum(is_aside)
    return {
        "threshold": threshold, "read": read, "written": len(is_aside) - n_aside, "set_aside": n_aside, "quarantined": len(quarantined),
        "quarantine_reasons": dict(Counter(_reason_kind(r) for _, r in quarantined)),
        "tags": dict(Counter(rows["tag"])), "stages": dict(Counter(rows["stage"])), "sources": sources,
        "lexicon_hits": dict(hits), "docs_with_hits": sum(bool(h) for h in rows["prefilter_hits"]),
        "segments": sum(len(s) for s in rows["spans"]),
        "bad_segments": sum(sp["tag"] == bad_role for s in rows["spans"] for sp in s),
        "score_histogram": [int(x) for x in hist], "near_threshold": near,
        "top_scoring": _top(rows, scores, bad_role),
    }


def read_marker(path: Path) -> dict:
    """A chunk's marker, refused (a `CorpusError` naming it) if it is not one `condpt tag` wrote: keys
    missing, counts that are not counts or do not add up (the report would assert, or count wrong)."""
    from condpt.corpus import CorpusError, shown
    from condpt.corpus.write import read_json_object

    m = read_json_object(path, MARKER_KEYS, MARKER_COUNTS)
    if m["read"] != m["written"] + m["set_aside"] + m["quarantined"]:
        raise CorpusError(f"{shown(path)}: read {m['read']} != written {m['written']} + set_aside {m['set_aside']} "
                          f"+ quarantined {m['quarantined']} (the counts do not add up)")
    return m


# A number a record brings (its size, a byte or character offset), not one the reader sets ("the N byte limit")
_RECORD_NUMBER = re.compile(r"(?<!the )(?<!UTF-)\b\d+\b")


def _reason_kind(reason: str) -> str:
    """Group reasons for counting: 'malformed JSON: Expecting value at column 3' → 'malformed JSON', 'line of
    90000000 bytes, over the 83886080 byte limit' → 'line of N bytes, over the 83886080 byte limit' (one row
    per oversized line made the report grow with the quarantine)."""
    for prefix in ("malformed JSON", "unreadable JSON", "invalid UTF-8", "duplicate id", "not a JSON object"):
        if reason.startswith(prefix):
            return prefix
    return _RECORD_NUMBER.sub("N", reason)


def cap_sources(sources: dict[str, dict], top: int = SOURCES_TOP) -> tuple[dict[str, dict], dict | None]:
    """(the `top` sources with the most records (documents + quarantined; ties by name), in that order, each
    with its ``tagged_fraction``; the rest folded into one row ``{sources: K, documents, bad, quarantined,
    tagged_fraction}``, None when nothing is left over). Every count of the rows adds up to the run's totals."""
    order = sorted(sources, key=lambda k: (-(sources[k]["documents"] + sources[k]["quarantined"]), k))
    kept = {k: _with_fraction(sources[k]) for k in order[:top]}
    rest = order[top:]
    if not rest:
        return kept, None
    other = {"sources": len(rest), **{c: sum(sources[k][c] for k in rest) for c in ("documents", "bad", "quarantined")}}
    return kept, _with_fraction(other)


def _with_fraction(s: dict) -> dict:
    return {**s, "tagged_fraction": round(s["bad"] / s["documents"], 6) if s["documents"] else 0.0}


def _add(a: dict, b: dict) -> None:
    for k, v in b.items():
        if isinstance(v, dict):
            _add(a.setdefault(k, {}), v)
        else:
            a[k] = a.get(k, 0) + v


def build_report(out: Path, chunks_total: int | None = None, error: str | None = None,
                 skipped: list[str] = (), meta: dict | None = None) -> dict:
    """Sum every chunk marker under `out`; read == written + set_aside + quarantined is asserted.

    `chunks_total` is known only once the whole input was read: without it the report is not complete.
    `error`: why the run stopped (the report then says how far it got). `skipped`: hidden entries of input
    directories that were not read. `meta`: ``classifier`` (what scored) and ``scorer`` (its cross-validation,
    `condpt.tagging.expected.scorer_meta`), from which ``expected`` compares the tagged fraction."""
    from condpt.corpus.write import read_json_object
    from condpt.tagging.expected import compare

    meta = meta or {}
    out = Path(out)
    run = read_json_object(out / "run.json", ("config", "inputs"))
    totals = {"read": 0, "written": 0, "set_aside": 0, "quarantined": 0}
    nested: dict = {"quarantine_reasons": {}, "tags": {}, "stages": {}, "sources": {}, "lexicon_hits": {}}
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    near: list[dict] = []
    top: list[dict] = []
    extra = Counter()
    markers = sorted((out / "markers").glob("part-*.json"))
    threshold = None
    for path in markers:
        m = read_marker(path)
        for k in totals:
            totals[k] += m[k]
        for k, acc in nested.items():
            _add(acc, m[k])
        extra.update({k: m[k] for k in ("docs_with_hits", "segments", "bad_segments")})
        hist += np.asarray(m["score_histogram"], dtype=np.int64)
        near.extend(m["near_threshold"])
        top.extend(m.get("top_scoring", []))
        threshold = m["threshold"] if threshold is None else threshold
    assert totals["read"] == totals["written"] + totals["set_aside"] + totals["quarantined"], totals
    cfg = run["config"]
    bad = cfg["bad_role"]
    if near:
        near.sort(key=lambda r: (abs(r["score"] - threshold), r["id"]))
    nested["sources"], sources_other = cap_sources(nested["sources"])
    documents = totals["written"] + totals["set_aside"]
    hits = sorted(nested["lexicon_hits"].items(), key=lambda kv: (-kv[1], kv[0]))
    top.sort(key=lambda r: (-r["score"], r["id"]))
    scorer = meta.get("scorer") or {}
    return {
        "classifier": meta.get("classifier"),
        "expected": compare(scorer.get("cv"), scorer.get("threshold"), threshold, nested["tags"].get(bad, 0),
                            documents, scorer.get("reason", "") if not scorer.get("cv") else ""),
        "scorer": scorer,
        **totals,
        "documents": documents,
        "tagged_fraction": round(nested["tags"].get(bad, 0) / documents, 6) if documents else 0.0,
        "threshold": threshold,
        "chunks_done": len(markers),
        "chunks_total": chunks_total,
        "complete": error is None and chunks_total is not None and len(markers) == chunks_total,
        **({"error": error} if error else {}),
        **{k: v for k, v in nested.items() if k != "lexicon_hits"},
        "sources_other": sources_other,
        "docs_with_lexicon_hits": extra["docs_with_hits"],
        "segments": extra["segments"], "bad_segments": extra["bad_segments"],
        "lexicon_top_hits": [{"term": t, "documents": n} for t, n in hits[:TOP_HITS]],
        "score_histogram": {"bins": np.linspace(0, 1, HIST_BINS + 1).round(4).tolist(), "counts": hist.tolist()},
        "near_threshold": near[:NEAR_K],
        "top_scoring": top[:TOP_DOCS],
        "inputs": run["inputs"],
        "skipped_files": list(skipped),
        "config": cfg,
    }


def _svg_histogram(counts: list[int], threshold: float | None, width: int = 640, height: int = 220) -> str:
    """Inline SVG bar chart of the score histogram (log-scaled bars), with the threshold marked and the
    axes labelled."""
    pad_l, pad_b, pad_t = 56, 40, 8
    w, h = width - pad_l - 8, height - pad_b - pad_t
    top = max(np.log1p(max(counts or [0])), 1e-9)
    bw = w / max(len(counts), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10">']
    for i, c in enumerate(counts):
        bh = h * np.log1p(c) / top
        parts.append(f'<rect x="{pad_l + i * bw:.1f}" y="{pad_t + h - bh:.1f}" width="{bw * 0.9:.1f}" '
                     f'height="{bh:.1f}" fill="#4477aa"><title>{i / len(counts):.2f}-{(i + 1) / len(counts):.2f}: '
                     f'{c}</title></rect>')
    for x in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{pad_l + x * w:.1f}" y="{pad_t + h + 14}" text-anchor="middle">{x:.2f}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 10}" text-anchor="end">{max(counts or [0])}</text>'
                 f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">0</text>'
                 f'<text x="{pad_l + w / 2:.1f}" y="{height - 4}" text-anchor="middle">document score</text>'
                 f'<text transform="translate(12,{pad_t + h / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 'documents (log scale)</text>')
    if threshold is not None:
        x = pad_l + min(max(threshold, 0.0), 1.0) * w
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t}" y2="{pad_t + h}" stroke="#cc3311" '
                     f'stroke-width="2"><title>threshold {threshold:.3f}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_fractions(items: list[tuple[str, float]], width: int = 640) -> str:
    """Inline SVG horizontal bars: tagged fraction per source, with the axis labelled."""
    row, label_w = 16, 220
    height = row * len(items) + 26
    w = width - label_w - 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">']
    for i, (name, frac) in enumerate(items):
        y = 4 + i * row
        short = name if len(name) <= 34 else name[:33] + "…"
        parts.append(f'<text x="{label_w - 4}" y="{y + 11}" text-anchor="end">{html.escape(short)}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w * frac:.1f}" height="{row - 4}" fill="#cc3311"/>'
                     f'<text x="{label_w + w * frac + 4:.1f}" y="{y + 11}">{frac:.3f}</text>')
    parts.append(f'<text x="{label_w + w / 2:.1f}" y="{height - 6}" text-anchor="middle">tagged fraction '
                 '(0 to 1) per source</text></svg>')
    return "".join(parts)


def _plots(report: dict) -> dict[str, str]:
    srcs = sorted(report["sources"].items(), key=lambda kv: (-kv[1]["documents"], kv[0]))[:30]
    return {"hist": _svg_histogram(report["score_histogram"]["counts"], report["threshold"])
            if report["documents"] else "",
            "sources": _svg_fractions([(k, v["tagged_fraction"]) for k, v in srcs]) if srcs else ""}


def _throughput(timings: list[dict]) -> list[str]:
    lines = []
    for t in timings:
        secs = max(float(t["seconds"]), 1e-9)
        lines.append(f"{t['job']}: {t['documents']} documents ({t['bytes'] / 1e6:.1f} MB) tagged in {secs:.1f} s: "
                     f"{t['documents'] / secs:.1f} documents/s, {t['bytes'] / 1e6 / secs:.2f} MB/s with "
                     f"{t['num_proc']} process(es)")
    return lines


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>condpt tag report</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}td.n{text-align:right}
mark{background:#f4b6a8}.warn{color:#a01010}pre{white-space:pre-wrap}</style>
</head><body>
<h1>condpt tag report</h1>
<p>{{ r.read }} read = {{ r.written }} written + {{ r.set_aside }} set aside + {{ r.quarantined }} quarantined.
Tagged fraction {{ "%.4f"|format(r.tagged_fraction) }}{% if r.threshold is not none %} at threshold
{{ "%.4f"|format(r.threshold) }}{% endif %}. Chunks {{ r.chunks_done }}{% if r.chunks_total %} of
{{ r.chunks_total }}{% endif %}.{% if not r.complete %} <b>Incomplete{% if r.error %}: the run stopped:
{{ r.error }}{% else %}: running, killed, or tasks pending{% endif %}.</b>{% endif %}</p>
{% if r.expected and r.expected.far %}<p class="warn"><b>{{ warning }}</b></p>{% endif %}
<h2>Run</h2>
<table>{% if r.classifier %}<tr><th>classifier</th><td>{{ r.classifier.spec }}{% if r.classifier.name %}
({{ r.classifier.name }}){% endif %}; threshold from {{ r.classifier.threshold_from }}</td></tr>{% endif %}
{% if r.expected and r.expected.verdict %}<tr><th>cross-validation predicts</th><td>a tagged fraction in
{{ "%.3f"|format(r.expected.range[0]) }}-{{ "%.3f"|format(r.expected.range[1]) }} (recall
{{ "%.2f"|format(r.expected.recall) }}, false-positive rate {{ "%.3f"|format(r.expected.false_positive_rate) }}
on {{ r.expected.labelled }} labelled rows): this run is {{ r.expected.verdict }}</td></tr>{% endif %}
{% for line in throughput %}<tr><th>throughput</th><td>{{ line }}</td></tr>{% endfor %}
<tr><th>inputs</th><td>{{ r.inputs|join(", ") }}</td></tr>
<tr><th>config</th><td><pre>{{ config }}</pre></td></tr></table>
{% if r.tags %}<h2>Tags</h2><table><tr><th>tag</th><th>documents</th></tr>{% for k, v in r.tags|dictsort %}
<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.stages %}<h2>Decided by stage</h2><table><tr><th>stage</th><th>documents</th></tr>
{% for k, v in r.stages|dictsort %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if img.hist %}<h2>Score histogram</h2>{{ img.hist|safe }}{% endif %}
{% if r.sources %}<h2>Tagged fraction per source</h2>
{{ img.sources|safe }}
<table><tr><th>source</th><th>documents</th><th>bad</th><th>fraction</th><th>quarantined</th></tr>
{% for k, v in r.sources.items() %}<tr><td>{{ k }}</td><td class="n">{{ v.documents }}</td>
<td class="n">{{ v.bad }}</td><td class="n">{{ "%.4f"|format(v.tagged_fraction) }}</td>
<td class="n">{{ v.quarantined }}</td></tr>{% endfor %}{% set o = r.sources_other %}{% if o %}
<tr><td><i>other ({{ o.sources }} sources)</i></td><td class="n">{{ o.documents }}</td><td class="n">{{ o.bad }}</td>
<td class="n">{{ "%.4f"|format(o.tagged_fraction) }}</td><td class="n">{{ o.quarantined }}</td></tr>{% endif %}
</table>{% endif %}
{% if r.top_scoring %}<h2>Top-scoring documents</h2>
<p>Segments tagged {{ r.config.bad_role }} are highlighted (hover for a segment's score).</p>
<table><tr><th>id</th><th>source</th><th>score</th><th>tag</th><th>stage</th><th>text around its top segment</th></tr>
{% for e in r.top_scoring %}<tr><td>{{ e.id }}</td><td>{{ e.source }}</td><td class="n">{{ "%.4f"|format(e.score) }}</td>
<td>{{ e.tag }}</td><td>{{ e.stage }}</td><td>{% for p in e.excerpt %}{% if p.bad %}<mark title="{{ p.score }}">{{ p.text }}</mark>{% else %}<span title="{{ p.score }}">{{ p.text }}</span>{% endif %}{% endfor %}</td></tr>
{% endfor %}</table>{% endif %}
{% if r.lexicon_top_hits %}<h2>Lexicon top hits</h2>
<p>{{ r.docs_with_lexicon_hits }} documents with at least one hit.</p>
<table><tr><th>term</th><th>documents</th></tr>{% for h in r.lexicon_top_hits %}<tr><td>{{ h.term }}</td>
<td class="n">{{ h.documents }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.near_threshold %}<h2>Examples nearest the threshold</h2>
<table><tr><th>id</th><th>source</th><th>score</th><th>tag</th><th>stage</th><th>top segment</th></tr>
{% for e in r.near_threshold %}<tr><td>{{ e.id }}</td><td>{{ e.source }}</td><td class="n">{{ "%.4f"|format(e.score) }}</td>
<td>{{ e.tag }}</td><td>{{ e.stage }}</td><td>{{ e.snippet }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.quarantine_reasons %}<h2>Quarantine reasons</h2>
<table><tr><th>reason</th><th>records</th></tr>{% for k, v in r.quarantine_reasons|dictsort %}<tr><td>{{ k }}</td>
<td class="n">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.skipped_files %}<h2>Skipped entries of input directories</h2>
<ul>{% for f in r.skipped_files %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""


_HTML_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # controls HTML allows no text to hold


@functools.cache
def _template():
    """The page's template, compiled once a process (a run writes its report when it starts and when it ends)."""
    import jinja2

    return jinja2.Environment(autoescape=True).from_string(_HTML)


def render_html(report: dict, timings: list[dict] = (), out: Path | None = None) -> str:
    """The report as one self-contained HTML page; every text from the data is escaped (autoescape). `out`: the
    run's directory, named in the commands a far-fraction warning gives."""
    import yaml

    from condpt.corpus import shown
    from condpt.tagging.expected import warning

    page = _template().render(
        r=report, img=_plots(report), throughput=_throughput(list(timings)),
        config=yaml.safe_dump(report["config"], sort_keys=False, allow_unicode=True),
        warning=warning(report.get("expected") or {}, *([shown(out)] if out is not None else [])) or "")
    return _HTML_CONTROLS.sub("\ufffd", page)  # escaping leaves them; in HTML each is a parse error (NUL first)


def read_timings(out: Path) -> list[dict]:
    """The wall-clock figures each job wrote under ``OUT/timing/`` (kept out of report.json, which is
    byte-identical across re-runs)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((Path(out) / "timing").glob("*.json"))]


def write_report(out: Path, chunks_total: int | None = None, *, tmp_dir: Path | None = None,
                 error: str | None = None, skipped: list[str] = (), meta: dict | None = None) -> dict:
    """Build the report from the markers and write ``report.json`` and ``report.html`` atomically (through
    `tmp_dir`, default ``out/.tmp``)."""
    from condpt.corpus.write import write_text_atomic

    out = Path(out)
    tmp_dir = tmp_dir or out / ".tmp"
    report = build_report(out, chunks_total, error, skipped, meta)
    write_text_atomic(json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False), out / "report.json",
                      tmp_dir)
    write_text_atomic(render_html(report, read_timings(out), out), out / "report.html", tmp_dir)
    return report
