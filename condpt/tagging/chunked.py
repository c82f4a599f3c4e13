"""`condpt tag`'s own reader and writer as datatrove steps: ``ChunkReader → CondptTagger → ChunkWriter``.

The input stream (every input, in order) is cut into chunks (`condpt.corpus.iter_chunks`: ``rows_per_shard``
records, about ``max_shard_bytes``); task ``rank`` of ``world_size`` takes the chunks ``k`` with
``k mod world_size = rank``, so a task's share does not depend on how many files there are, and every task of
any executor (local, Slurm, Ray) reads the same stream. Chunk ``k`` becomes ``part-k`` in ``data/``,
``set_aside/``, ``quarantine/`` (and ``attributes/``), written atomically, then ``markers/part-k.json`` (its
statistics, which the report sums, and what it was made from). Once the reader has read the stream to its end,
``tasks/NNNNN.json`` records what the task was made from (a hash chained over its chunks' raw records) and how
many chunks the whole input has; it is trusted only with the completion file datatrove writes after the task's
last chunk (`condpt.tagging.run` checks it against the input before a re-run skips the task).

Every record becomes exactly one datatrove `Document`: a parsed one carries its text and id, an unusable one
(malformed, missing text, a duplicate of an id this task has seen: docs/tagging.md#input) carries
``metadata[QUARANTINED]`` and is passed through `CondptTagger` untagged. So the writer counts
``read = written + set aside + quarantined`` per chunk without being told.

A task starts by removing every file of its chunks and its temporary directory: a task is redone whole (datatrove
re-runs a task that has no completion file), and a task run again on an edited input writes exactly what a
clean run writes, no part past the input's new end included.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from condpt.corpus import (
    QUARANTINE_SCHEMA,
    TAGGED_SCHEMA,
    InputSpec,
    Quarantined,
    iter_chunks,
    parse_record,
    write_parquet_atomic,
)
from condpt.corpus import Document as Record
from condpt.corpus.read import raw_bytes
from condpt.corpus.write import write_text_atomic
from condpt.tagging.attributes import attributes_table
from condpt.tagging.cascade import TagConfig
from condpt.tagging.datatrove_steps import DECISION_KEYS, QUARANTINED, fields_of

TMP, DATA, SET_ASIDE, QUARANTINE, MARKERS, TASKS = ".tmp", "data", "set_aside", "quarantine", "markers", "tasks"
PARTS = (DATA, SET_ASIDE, QUARANTINE)
ATTRIBUTES = "attributes"  # an optional part (`condpt tag --attributes`), written like the others
PROGRESS = ".progress"  # records each running task has written, for the main process's progress bar
PROGRESS_EVERY = 0.5  # seconds between progress-file updates of a task


def part_name(k: int) -> str:
    return f"part-{k:06d}"


def chain_hash(chain: str, digest: str) -> str:
    """The hash of a task's chunks so far, extended by one chunk's `digest` (`condpt.corpus.Chunk.digest`)."""
    return hashlib.blake2b(f"{chain}:{digest}".encode(), digest_size=16).hexdigest()


def task_file(out: Path, rank: int) -> Path:
    return out / TASKS / f"{rank:05d}.json"


class ChunkReader(PipelineStep):
    """Task `rank`'s chunks of `specs` (the inputs `condpt.corpus.expand_inputs` found and `check_inputs` passed),
    one `Document` per record, in input order (see the module docstring); with `out`, ``tasks/NNNNN.json`` is
    written once the task's share is read. Metadata: ``chunk``, ``made_from``,
    ``source``, or ``QUARANTINED`` (input, line, reason, id, raw bytes, source) for a record that is no document.
    Duplicate ids are found within the task (the first occurrence is kept)."""

    name = "🏷 condpt chunk reader"
    type = "📖 - READER"

    def __init__(self, specs: list[InputSpec], cfg: TagConfig, out: str | Path | None = None):
        super().__init__()
        self.specs = list(specs)
        self.config = cfg.model_dump(mode="json")
        self.out = None if out is None else str(out)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        cfg = TagConfig.model_validate(self.config)
        fields, specs = fields_of(cfg), self.specs
        seen: set[str] = set()
        chain, n_chunks = "", 0
        for chunk in iter_chunks(specs, fields, cfg.rows_per_shard, cfg.max_shard_bytes):
            n_chunks = chunk.index + 1
            if chunk.index % world_size != rank:
                continue
            digest = chunk.digest()
            chain = chain_hash(chain, digest)
            (k0, l0, _), (k1, l1, _) = chunk.records[0], chunk.records[-1]
            made_from = {"first": [k0, l0], "last": [k1, l1], "records": len(chunk.records), "digest": digest,
                         "chain": chain}
            self.stat_update("records", value=len(chunk.records), unit="chunk")
            for p, (k, line, payload) in enumerate(chunk.records):
                r = parse_record(specs[k], k, line, payload, fields)
                if isinstance(r, Record) and r.id in seen:
                    r = Quarantined(k, line, f"duplicate id {r.id!r}", raw_bytes(payload), r.id)
                meta = {"chunk": chunk.index, "made_from": made_from}
                if isinstance(r, Quarantined):
                    meta[QUARANTINED] = {"input": specs[k].label, "line": r.line, "reason": r.reason, "id": r.id,
                                         "raw": r.raw, "source": specs[k].name}
                    yield Document(text="", id=f"quarantined:{chunk.index}:{p}", metadata=meta)
                else:
                    seen.add(r.id)
                    yield Document(text=r.text, id=r.id, metadata={**meta, "source": r.source})
        if self.out is not None:  # trusted only with the task's completion file, written after its last chunk
            out = Path(self.out)
            write_text_atomic(json.dumps({"rank": rank, "tasks": world_size, "chain": chain, "chunks_total": n_chunks},
                                         sort_keys=True, indent=1), task_file(out, rank), out / TMP / f"{rank:05d}")


class ChunkWriter(PipelineStep):
    """Write each chunk of tagged documents under `out` (see the module docstring); passes the documents on.
    `threshold`: the scorer's, for the statistics. `attributes`: also write ``attributes/``."""

    name = "🏷 condpt chunk writer"
    type = "💽 - WRITER"

    def __init__(self, out: str | Path, cfg: TagConfig, threshold: float, attributes: bool = False):
        super().__init__()
        self.out = str(out)
        self.config = cfg.model_dump(mode="json")
        self.threshold = threshold
        self.parts = (*PARTS, ATTRIBUTES) if attributes else PARTS
        self._progress: dict[str, Any] = {}

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        out, cfg = Path(self.out), TagConfig.model_validate(self.config)
        tmp = out / TMP / f"{rank:05d}"
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed run of this task left
        tmp.mkdir(parents=True)
        self._remove_task_files(out, rank, world_size)
        self._progress = {"path": out / PROGRESS / f"{rank:05d}", "n": 0, "at": 0.0, "tmp": tmp}
        group: list[Document] = []
        for doc in data:
            if group and doc.metadata["chunk"] != group[0].metadata["chunk"]:
                self.finish(group, cfg, tmp)
                yield from group
                group = []
            group.append(doc)
            self._count(1)
        if group:
            self.finish(group, cfg, tmp)
            yield from group
        self._count(0, force=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def _count(self, n: int, force: bool = False) -> None:
        p = self._progress
        p["n"] += n
        if force or time.monotonic() - p["at"] >= PROGRESS_EVERY:
            write_text_atomic(str(p["n"]), p["path"], p["tmp"])
            p["at"] = time.monotonic()

    def _remove_task_files(self, out: Path, rank: int, world_size: int) -> None:
        task_file(out, rank).unlink(missing_ok=True)
        for sub in (MARKERS, *self.parts):
            for path in (out / sub).glob("part-*.*"):
                m = re.fullmatch(r"part-(\d+)\.(json|parquet)", path.name)
                if m and int(m[1]) % world_size == rank:
                    path.unlink()

    def finish(self, group: list[Document], cfg: TagConfig, tmp: Path) -> dict:
        """Write one chunk's parts, then its marker; returns its statistics."""
        from condpt.tagging.report import chunk_stats

        k = group[0].metadata["chunk"]
        made_from = group[0].metadata["made_from"]
        docs = [d for d in group if QUARANTINED not in d.metadata]
        quarantined = [d.metadata[QUARANTINED] for d in group if QUARANTINED in d.metadata]
        rows = {"id": [d.id for d in docs], "text": [d.text for d in docs],
                "source": [d.metadata["source"] for d in docs],
                **{c: [d.metadata[c] for d in docs] for c in DECISION_KEYS}}
        aside_roles = set(cfg.set_aside_roles)
        is_aside = [t in aside_roles for t in rows["tag"]]
        name = part_name(k)
        out = Path(self.out)
        tables = {}
        for sub, want in ((DATA, False), (SET_ASIDE, True)):
            sel = [i for i, a in enumerate(is_aside) if a == want]
            if sel:
                tables[sub] = pa.Table.from_pydict({c: [rows[c][i] for i in sel] for c in TAGGED_SCHEMA.names},
                                                   schema=TAGGED_SCHEMA)
        if ATTRIBUTES in self.parts and rows["id"]:
            tables[ATTRIBUTES] = attributes_table(rows)
        if quarantined:
            tables[QUARANTINE] = pa.Table.from_pydict({c: [q[c] for q in quarantined] for c in QUARANTINE_SCHEMA.names},
                                                      schema=QUARANTINE_SCHEMA)
        for sub in self.parts:
            if sub in tables:
                write_parquet_atomic(tables[sub], out / sub / f"{name}.parquet", tmp)
        stats = chunk_stats(rows, is_aside, [(q["source"], q["reason"]) for q in quarantined], read=len(group),
                            threshold=self.threshold, bad_role=cfg.bad_role)
        assert stats["read"] == stats["written"] + stats["set_aside"] + stats["quarantined"], stats
        write_text_atomic(json.dumps({"chunk": k, "made_from": made_from, **stats}, sort_keys=True, indent=1),
                          out / MARKERS / f"{name}.json", tmp)
        self.stat_update("chunks")
        return stats


def task_chains(specs: list[InputSpec], cfg: TagConfig, tasks: int, ranks: set[int]) -> tuple[dict[int, str], int]:
    """Read the input stream: the chain of each task in `ranks` and how many chunks the stream has."""
    chains = {r: "" for r in ranks}
    n = 0
    for chunk in iter_chunks(specs, fields_of(cfg), cfg.rows_per_shard, cfg.max_shard_bytes):
        n = chunk.index + 1
        r = chunk.index % tasks
        if r in chains:
            chains[r] = chain_hash(chains[r], chunk.digest())
    return chains, n
