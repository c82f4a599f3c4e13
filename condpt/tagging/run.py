"""`tag_corpus`: inputs → ``OUT/data``, ``OUT/set_aside``, ``OUT/quarantine`` Parquet shards + report.

Layout of OUT (one file per chunk ``k`` of the input stream, ``part-{k:06d}``):

- ``data/`` tagged rows (`condpt.corpus.TAGGED_SCHEMA`), ``set_aside/`` same schema for documents whose tag
  is in ``set_aside_roles``, ``quarantine/`` unusable records with the reason and the raw bytes;
- ``attributes/`` (with ``attributes=True``, `condpt tag --attributes`): id + decision of each tagged document
  of the chunk (`condpt.tagging.attributes`), data and set-aside rows in input order, no text;
- ``markers/part-k.json``: the chunk's counts and what it was made from (``made_from``: its first and last
  record, how many, a hash of its raw records and a hash chained over this ``--shard``'s chunks so far),
  written last: a chunk whose marker matches what the input holds now is complete and a re-run skips it;
- ``run.json``: inputs and config; a re-run with other inputs or config into the same OUT is refused;
- ``report.json`` / ``report.html``: built from the markers; written when a run starts (``complete: false``),
  when it fails (with ``error``) and when it ends.

Inputs are checked whole (`check_inputs`) before anything is written. Determinism: chunking depends only on
the input bytes, workers return chunks in order, files are renamed into place only when complete and hold no
timestamps, so a run killed at any point (SIGKILL included) and restarted writes byte-identical files; its
leftover temporary files are removed. If an input was edited in between, the first chunk whose records
differ and every later one (their duplicate-id decisions depend on it) are redone, and chunks past the new end
are removed: the output is what a clean run on the new input writes. Duplicate ids are found in the main
process in input order (the first occurrence is kept) over all chunks of this invocation's ``--shard`` (ids
in other shards of a job array are not compared). Workers die with the main process, even on SIGKILL.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from condpt.corpus import (
    QUARANTINE_SCHEMA,
    TAGGED_SCHEMA,
    Document,
    Fields,
    InputSpec,
    check_inputs,
    expand_inputs,
    iter_chunks,
    parse_record,
    shown,
    write_parquet_atomic,
)
from condpt.corpus.write import write_text_atomic
from condpt.tagging.attributes import attributes_table
from condpt.tagging.cascade import Cascade, TagConfig

FORMAT_VERSION = 1
TMP, DATA, SET_ASIDE, QUARANTINE, MARKERS = ".tmp", "data", "set_aside", "quarantine", "markers"
PARTS = (DATA, SET_ASIDE, QUARANTINE)
ATTRIBUTES = "attributes"  # an optional part (`tag_corpus(attributes=True)`), written like the others
TIMING = "timing"  # wall-clock throughput per job: the one thing that differs between runs (not in report.json)
RETAG = ".retag"  # `condpt retag`'s journal (condpt.tagging.retag): present only while a retag is unfinished
# Documents per cascade call: the progress bar moves this often (a chunk holds up to rows_per_shard records).
PROGRESS_BATCH = 256


class TagRunError(ValueError):
    """A run that cannot start (e.g. OUT holds a different run); reported to the user, non-zero exit."""


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' → (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def part_name(k: int) -> str:
    return f"part-{k:06d}"


def fields_of(cfg: TagConfig) -> Fields:
    return Fields(cfg.text_field, cfg.id_field, cfg.source_field)


def tag_records(cascade: Cascade, specs: list[InputSpec], fields: Fields, records: list,
                progress: Any = None) -> tuple[dict, list]:
    """Parse and tag one chunk's raw records: (tagged columns + ``pos``, [(pos, Quarantined)]).

    The cascade runs on `PROGRESS_BATCH` documents at a time; `progress(n)` is told after each batch, and
    once more for the quarantined records, so that it hears ``len(records)`` in all."""
    pos, ids, texts, sources, bad = [], [], [], [], []
    for p, (k, line, payload) in enumerate(records):
        r = parse_record(specs[k], k, line, payload, fields)
        if isinstance(r, Document):
            pos.append(p)
            ids.append(r.id)
            texts.append(r.text)
            sources.append(r.source)
        else:
            bad.append((p, r))
    out: dict[str, list] = {c: [] for c in TAGGED_SCHEMA.names}
    for i in range(0, len(ids), PROGRESS_BATCH):
        part = cascade({"id": ids[i: i + PROGRESS_BATCH], "text": texts[i: i + PROGRESS_BATCH],
                        "source": sources[i: i + PROGRESS_BATCH]})
        for c, col in out.items():
            col.extend(part[c])
        if progress is not None:
            progress(len(part["id"]))
    if progress is not None and bad:
        progress(len(bad))
    return {"pos": pos, **out}, bad


_WORKER: dict[str, Any] = {}
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this worker when the main process ends: a SIGKILLed main never shuts its pool down, and its idle
    workers (and the resource tracker, which lives while they hold its pipe) would wait forever.

    Linux: the kernel sends SIGKILL when the parent goes (PR_SET_PDEATHSIG; the pool spawns workers from the
    thread that submits, which outlives the pool). Everywhere: a thread that polls the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    if os.getppid() != parent:  # the parent went before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(cfg_json: str, specs: list[InputSpec], fields: Fields, threads: int, scorers: dict,
                 parent: int, done: Any) -> None:
    _die_with_parent(parent)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = TagConfig.model_validate_json(cfg_json)
    _WORKER.update(cascade=Cascade(cfg, **scorers), specs=specs, fields=fields, done=done)


def _count(n: int) -> None:
    with _WORKER["done"].get_lock():
        _WORKER["done"].value += n


def _work(records: list) -> tuple[dict, list]:
    return tag_records(_WORKER["cascade"], _WORKER["specs"], _WORKER["fields"], records, _count)


class _Writer:
    """Main-process side: duplicate ids, set-aside split, atomic writes and the completion marker."""

    def __init__(self, out: Path, cfg: TagConfig, specs: list[InputSpec], threshold: float, tmp: Path,
                 attributes: bool = False):
        self.out, self.cfg, self.specs, self.threshold, self.tmp = out, cfg, specs, threshold, tmp
        self.parts = (*PARTS, ATTRIBUTES) if attributes else PARTS
        self.seen: set[str] = set()

    def remember(self, k: int) -> None:
        """A chunk finished by an earlier run: its ids count as seen."""
        for sub in (DATA, SET_ASIDE):
            path = self.out / sub / f"{part_name(k)}.parquet"
            if path.exists():
                with open(path, "rb") as f:  # opened by Python: pyarrow cannot open a path that is not UTF-8
                    self.seen.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())

    def finish(self, k: int, records: list, tagged: dict, bad: list, made_from: dict) -> dict:
        from condpt.corpus.read import Quarantined, raw_bytes
        from condpt.tagging.report import chunk_stats

        keep, quarantined = [], list(bad)
        for i, doc_id in enumerate(tagged["id"]):
            if doc_id in self.seen:
                p = tagged["pos"][i]
                kk, line, payload = records[p]
                quarantined.append((p, Quarantined(kk, line, f"duplicate id {doc_id!r}", raw_bytes(payload), doc_id)))
            else:
                self.seen.add(doc_id)
                keep.append(i)
        quarantined.sort(key=lambda x: x[0])
        aside_roles = set(self.cfg.set_aside_roles)
        rows = {c: [tagged[c][i] for i in keep] for c in TAGGED_SCHEMA.names}
        is_aside = [t in aside_roles for t in rows["tag"]]
        name = part_name(k)
        tmp = self.tmp
        (self.out / MARKERS / f"{name}.json").unlink(missing_ok=True)  # a stale chunk is unfinished until redone
        tables = {}
        for sub, want in ((DATA, False), (SET_ASIDE, True)):
            sel = [i for i, a in enumerate(is_aside) if a == want]
            if sel:
                tables[sub] = pa.Table.from_pydict({c: [rows[c][i] for i in sel] for c in rows},
                                                   schema=TAGGED_SCHEMA)
        if ATTRIBUTES in self.parts and rows["id"]:
            tables[ATTRIBUTES] = attributes_table(rows)
        if quarantined:
            q = [r for _, r in quarantined]
            tables[QUARANTINE] = pa.Table.from_pydict({
                "input": [self.specs[r.input].label for r in q], "line": [r.line for r in q],
                "reason": [r.reason for r in q], "id": [r.id for r in q], "raw": [r.raw for r in q],
            }, schema=QUARANTINE_SCHEMA)
        for sub in self.parts:  # a part an earlier (killed or stale) run wrote and this one does not is removed
            if sub in tables:
                write_parquet_atomic(tables[sub], self.out / sub / f"{name}.parquet", tmp)
            else:
                (self.out / sub / f"{name}.parquet").unlink(missing_ok=True)
        stats = chunk_stats(rows, is_aside, [(self.specs[r.input].name, r.reason) for _, r in quarantined],
                            read=len(records), threshold=self.threshold, bad_role=self.cfg.bad_role)
        assert stats["read"] == stats["written"] + stats["set_aside"] + stats["quarantined"], stats
        write_text_atomic(json.dumps({"chunk": k, "made_from": made_from, **stats}, sort_keys=True, indent=1),
                          self.out / MARKERS / f"{name}.json", tmp)
        return stats

    def remove_after(self, n_chunks: int, shard: tuple[int, int]) -> None:
        """Remove this shard's chunks at index >= `n_chunks`: left by a run on a longer version of the input."""
        me, n = shard
        for sub in (MARKERS, *self.parts):
            for path in (self.out / sub).glob("part-*.*"):
                m = re.fullmatch(r"part-(\d+)\.(json|parquet)", path.name)
                if m and int(m[1]) >= n_chunks and int(m[1]) % n == me:
                    path.unlink()


def _run_file(out: Path, specs: list[InputSpec], cfg: TagConfig, attributes: bool) -> str | None:
    """The text of ``run.json`` to write, None when OUT already holds this run; another run is refused."""
    meta = {"format": FORMAT_VERSION, "inputs": [shown(s.path.resolve()) for s in specs],
            "config": cfg.model_dump(mode="json")}
    if attributes:  # only then: a run without keeps the run.json it always had
        meta["attributes"] = True
    text = json.dumps(meta, sort_keys=True, indent=1)
    path = out / "run.json"
    if not path.exists():
        return text
    if json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
        raise TagRunError(f"{shown(path)}: {shown(out)} holds a run with other inputs or another config; "
                          "use a new --out directory (or delete this one)")
    return None


def _fresh_tmp(out: Path, shard: tuple[int, int]) -> Path:
    """This job's own temporary directory, emptied: what a killed run left there is removed. A job array's
    jobs each have theirs (a job never deletes another's file in flight); a lone job clears all of ``.tmp``."""
    me, n = shard
    shutil.rmtree(out / TMP if n == 1 else out / TMP / f"{me}-of-{n}", ignore_errors=True)
    tmp = out / TMP / f"{me}-of-{n}"
    tmp.mkdir(parents=True)
    return tmp


def _is_done(out: Path, k: int, chain: str) -> bool:
    """Chunk `k` has a marker made from exactly the records (and earlier chunks) the input holds now."""
    path = out / MARKERS / f"{part_name(k)}.json"
    try:
        made_from = json.loads(path.read_text(encoding="utf-8")).get("made_from") or {}
    except (OSError, ValueError):  # none (or not one this version wrote): the chunk is to be done
        return False
    return made_from.get("chain") == chain


def _made_from(chunk, chain: str, digest: str) -> dict:
    (k0, l0, _), (k1, l1, _) = chunk.records[0], chunk.records[-1]
    return {"first": [k0, l0], "last": [k1, l1], "records": len(chunk.records), "digest": digest, "chain": chain}


def count_records(specs: list[InputSpec]) -> int:
    """About how many records the inputs hold, cheaply, for the progress bar's total: Parquet and datasets
    from their metadata, JSONL by counting line ends (blank lines count too: an estimate)."""
    import pyarrow.parquet as pq

    from condpt.corpus.read import _dataset_parts, _open_binary

    n = 0
    for spec in specs:
        if spec.format == "parquet":
            with open(spec.path, "rb") as f:
                n += pq.ParquetFile(f).metadata.num_rows
        elif spec.format == "datasets":
            n += sum(part.num_rows for part in _dataset_parts(spec))
        else:
            last = b"\n"
            with _open_binary(spec) as f:
                while block := f.read(1 << 22):
                    n += block.count(b"\n")
                    last = block[-1:]
            n += last != b"\n"
    return n


def _load_scorer(cascade: Cascade, cfg: TagConfig, scorer_given: bool) -> float:
    """Load the scorer before forking (its threshold); say so when a shipped default is trained first."""
    from condpt.tagging.expected import BUILT_IN, scorer_dir

    spec = cfg.classifier.spec
    first_use = not scorer_given and spec in BUILT_IN and scorer_dir(spec) is None
    if first_use:
        print(f"training the shipped {spec!r} classifier on first use (once: it is cached for later runs; "
              "about a minute for 'default')...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    threshold = cascade.threshold  # loads (and, for the default, trains once) the scorer
    if first_use:
        print(f"trained {spec!r} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return threshold


def _meta(cascade: Cascade, cfg: TagConfig, scorer_given: bool) -> dict:
    """What report.json says about the classifier (`condpt.tagging.report.build_report`'s `meta`)."""
    from condpt.tagging.expected import scorer_meta

    on = cascade.classifier_enabled
    name = getattr(cascade.scorer, "name", type(cascade.scorer).__name__) if on else None
    own = getattr(cascade.scorer, "threshold", None) if on else None
    source = "config" if cfg.threshold is not None else "scorer" if own is not None else "default 0.5"
    return {"classifier": {"spec": "python object" if scorer_given else cfg.classifier.spec, "name": name,
                           "threshold_from": source},
            "scorer": scorer_meta(cfg, scorer_given)}


def tag_corpus(inputs: list[str | Path], out_dir: str | Path, cfg: TagConfig | None = None, *,
               num_proc: int = 1, shard: tuple[int, int] = (0, 1), scorer: Any = None, refiner: Any = None,
               autorater: Any = None, progress: bool = True, attributes: bool = False) -> dict:
    """Tag `inputs` into `out_dir` (see module docstring); returns the report (also in report.json).
    `attributes`: also write ``attributes/`` (id + decision, no text).

    `scorer`, `refiner`, `autorater`: objects with ``score(texts)`` replacing what the config names (they
    must be picklable when ``num_proc > 1``). A tagged fraction far from what the scorer's cross-validation
    predicts is warned about on stderr (`condpt.tagging.expected`)."""
    from tqdm import tqdm

    from condpt.tagging.expected import warning
    from condpt.tagging.report import write_report

    started = time.perf_counter()
    cfg = cfg or TagConfig()
    skipped: list[str] = []
    specs = expand_inputs(inputs, skipped)
    fields = fields_of(cfg)
    check_inputs(specs, fields)  # a bad input found half way would leave half a run behind
    out = Path(out_dir)
    if (out / RETAG).exists():
        raise TagRunError(f"{shown(out)}: a `condpt retag` was interrupted; run `condpt retag {shown(out)} "
                          "--threshold T` again to finish it first")
    run_file = _run_file(out, specs, cfg, attributes)
    scorers = {"scorer": scorer, "refiner": refiner, "autorater": autorater}
    cascade = Cascade(cfg, **scorers)
    threshold = _load_scorer(cascade, cfg, scorer is not None)
    meta = _meta(cascade, cfg, scorer is not None)
    out.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_tmp(out, shard)
    if run_file is not None:
        write_text_atomic(run_file, out / "run.json", tmp)
    write_report(out, tmp_dir=tmp, skipped=skipped, meta=meta)  # from here on a report says how far the run got
    writer = _Writer(out, cfg, specs, threshold, tmp, attributes)
    me, n_shards = shard
    total = -(-count_records(specs) // n_shards) if progress else None
    bar = tqdm(total=total, unit="doc", desc=f"tag {me}/{n_shards}" if n_shards > 1 else "tag",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    pool = None
    done = get_context("spawn").Value("q", 0)  # records the workers have finished (their batches, in order)
    if num_proc > 1:
        threads = max(1, (os.cpu_count() or 1) // num_proc)
        pool = ProcessPoolExecutor(num_proc, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(cfg.model_dump_json(), specs, fields, threads, scorers, os.getpid(),
                                             done))
    pending: deque = deque()
    n_chunks = 0
    chain = ""
    here = {"records": 0, "tagged": 0, "bytes": 0}  # this invocation's own work, for its throughput

    def show() -> None:
        bar.update(here["records"] + done.value - bar.n)

    def count_here(n: int) -> None:
        here["records"] += n
        show()

    def result(fut):
        while True:
            try:
                return fut.result(timeout=0.5)
            except TimeoutError:  # the bar moves with the workers' batches, not only with finished chunks
                show()

    def drain(limit: int) -> None:
        while len(pending) > limit:
            k, records, made_from, fut = pending.popleft()
            tagged, bad = result(fut)
            writer.finish(k, records, tagged, bad, made_from)
            show()

    try:
        for chunk in iter_chunks(specs, fields, cfg.rows_per_shard, cfg.max_shard_bytes):
            n_chunks = chunk.index + 1
            if chunk.index % n_shards != me:
                continue
            digest = chunk.digest()
            chain = hashlib.blake2b(f"{chain}:{digest}".encode(), digest_size=16).hexdigest()
            made_from = _made_from(chunk, chain, digest)
            if _is_done(out, chunk.index, chain):
                drain(0)  # keep the order in which ids are seen
                writer.remember(chunk.index)
                count_here(len(chunk.records))
                continue
            here["tagged"] += len(chunk.records)
            here["bytes"] += chunk.nbytes
            if pool is None:
                tagged, bad = tag_records(cascade, specs, fields, chunk.records, count_here)
                writer.finish(chunk.index, chunk.records, tagged, bad, made_from)
            else:
                pending.append((chunk.index, chunk.records, made_from, pool.submit(_work, chunk.records)))
                drain(2 * num_proc)
        drain(0)
        writer.remove_after(n_chunks, shard)
        if bar.total is not None and bar.total != bar.n:  # the estimate counted blank lines
            bar.total = bar.n
            bar.refresh()
    except BaseException as e:
        _report_failure(out, tmp, e, skipped, meta)
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if here["tagged"]:  # a re-run that found everything done keeps the timing of the run that did the work
        timing = {"job": f"shard {me}/{n_shards}" if n_shards > 1 else "run", "documents": here["tagged"],
                  "bytes": here["bytes"], "seconds": round(time.perf_counter() - started, 3), "num_proc": num_proc}
        (out / TIMING).mkdir(exist_ok=True)
        write_text_atomic(json.dumps(timing, indent=1), out / TIMING / f"{me}-of-{n_shards}.json", tmp)
    report = write_report(out, chunks_total=n_chunks, tmp_dir=tmp, skipped=skipped, meta=meta)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (out / TMP).rmdir()  # only when empty: another shard job may still be writing
    except OSError:
        pass
    if report["complete"] and (line := warning(report["expected"])):
        print(line, file=sys.stderr)
    return report


def _report_failure(out: Path, tmp: Path, e: BaseException, skipped: list[str], meta: dict) -> None:
    """Say in report.json that the run stopped and why (best effort: the failure may be the disk itself)."""
    from condpt.tagging.report import write_report

    try:
        write_report(out, tmp_dir=tmp, error=shown(f"{type(e).__name__}: {e}"), skipped=skipped, meta=meta)
    except Exception as again:  # noqa: BLE001 (the original error is what the user must see)
        print(f"warning: could not write {shown(out / 'report.json')}: {shown(again)}", file=sys.stderr)
