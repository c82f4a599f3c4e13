"""condpt's tagger as datatrove pipeline steps, to drop into a team's own pipeline (`condpt tag` runs them too).

- `CondptReader`: condpt's own reader (`condpt.corpus`) as a datatrove reader: the same formats, ids and
  quarantine as `condpt tag`, where datatrove's readers skip a malformed record with a warning.
- `CondptTagger`: documents in batches through the same pure `Cascade` batch function `condpt tag` runs; the
  decision (``score``, ``tag``, ``spans``, ``stage``, ``prefilter_hits``: the columns of
  `condpt.tagged.TAGGED_SCHEMA`) goes into ``doc.metadata``.
- `SetAside`: a datatrove filter dropping documents whose tag is a set-aside role; with an
  ``exclusion_writer`` they are written there (the same split as ``set_aside_roles`` in `condpt tag`).
- `AttributesWriter`: Dolma-style attributes (`condpt.tagging.attributes`): id + decision, no text, JSONL.
- `limit_threads`: the OpenMP / torch thread cap `CondptTagger(threads=...)` applies in each process.
- `guard_logging_dir`: datatrove skips every task with a completion file in ``logging_dir/completions/``,
  even when the pipeline that wrote it was another one; this refuses a ``logging_dir`` whose recorded
  pipeline differs from the executor's.

Under ``workers > 1`` datatrove pickles the pipeline (dill) into processes started with forkserver: the steps
hold only their settings (the config as plain data); the cascade, its lexicon and scorer load lazily, once per
process, on the first batch.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from string import Template
from typing import Any

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.utils.batching import batched
except ImportError as e:  # an optional extra: say which
    raise ImportError(f"condpt.tagging.datatrove_steps needs datatrove: pip install 'condpt[datatrove]' ({e})") from e

from condpt.corpus.read import Fields
from condpt.tagging.attributes import ATTRIBUTE_COLUMNS
from condpt.tagging.cascade import Cascade, TagConfig

# SetAside and AttributesWriter are defined on first use (module __getattr__)
__all__ = ["AttributesWriter", "CondptReader", "CondptTagger", "LoggingDirError", "SetAside",  # noqa: F822
           "guard_logging_dir",
           "limit_threads", "pipeline_settings"]

# what the cascade decides, as `doc.metadata` keys (the tagged-row columns beyond id/text/source)
DECISION_KEYS = ("score", "tag", "spans", "stage", "prefilter_hits")
# metadata key of a record a reader found unusable (`condpt.tagging.chunked.ChunkReader`): passed on untagged
QUARANTINED = "condpt_quarantined"
GUARD_FILE = "condpt_pipeline.json"

# one cascade per config and process: a worker that runs several tasks loads the lexicon and scorer once
_CASCADES: dict[str, Cascade] = {}


def fields_of(cfg: TagConfig) -> Fields:
    """The record fields `cfg` names (text, id, source), as condpt's reader takes them."""
    return Fields(cfg.text_field, cfg.id_field, cfg.source_field)


def share_cascade(cascade: Cascade) -> None:
    """Let the `CondptTagger` steps of this process with `cascade`'s config use it (its scorer already loaded)
    instead of loading their own: `condpt tag` loads the scorer before the executor starts (its threshold goes
    into the report), and with ``workers=1`` the tasks run in the same process."""
    _CASCADES[json.dumps(cascade.cfg.model_dump(mode="json"), sort_keys=True)] = cascade


class CondptReader(PipelineStep):
    """Read `inputs` (files or directories, as `condpt tag` takes them) with condpt's reader; task `rank` of
    `world_size` reads inputs ``rank, rank + world_size, ...`` of the expanded list (in the order given, a
    directory's files sorted).

    Each document's metadata holds its ``source``, ``input`` (path) and ``line``; its id is the record's, or
    the stable id `condpt tag` derives (`condpt.corpus.ids`). Unusable records (malformed JSON, missing text,
    a duplicate of an id this task has seen, ...: docs/tagging.md#input) go to
    ``quarantine_folder/${rank}.parquet`` (`condpt.corpus.QUARANTINE_SCHEMA`: input, line, reason, id, raw
    bytes; written by every task that ran, empty when nothing was quarantined) and are counted: the stats
    say ``records = documents + quarantined``. An unreadable input is an error naming it (`CorpusError`).
    `cfg` gives ``text_field``, ``id_field`` and ``source_field``."""

    name = "🏷 condpt reader"
    type = "📖 - READER"

    def __init__(self, inputs: Iterable[str], cfg: TagConfig | None = None, quarantine_folder: str | None = None):
        super().__init__()
        self.inputs = [str(p) for p in inputs]
        self.config = (cfg or TagConfig()).model_dump(mode="json")
        self.quarantine_folder = quarantine_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from condpt.corpus import Document as Record
        from condpt.corpus import check_inputs, expand_inputs, iter_records, parse_record
        from condpt.corpus.read import Quarantined, raw_bytes

        if data:
            yield from data
        fields = fields_of(TagConfig.model_validate(self.config))
        specs = expand_inputs(self.inputs)[rank::world_size]
        check_inputs(specs, fields)
        seen: set[str] = set()
        quarantined: list[Quarantined] = []
        for k, line, payload in iter_records(specs, fields):
            self.stat_update("records")
            r = parse_record(specs[k], k, line, payload, fields)
            if isinstance(r, Record) and r.id in seen:
                r = Quarantined(k, line, f"duplicate id {r.id!r}", raw_bytes(payload), r.id)
            if isinstance(r, Quarantined):
                self.stat_update("quarantined")
                quarantined.append(r)
                continue
            seen.add(r.id)
            self.stat_update("documents")
            yield Document(text=r.text, id=r.id, metadata={"source": r.source, "input": specs[k].label, "line": line})
        if self.quarantine_folder is not None:
            self._write_quarantine(quarantined, specs, rank)

    def _write_quarantine(self, rows: list, specs: list, rank: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from datatrove.io import get_datafolder

        from condpt.corpus import QUARANTINE_SCHEMA

        table = pa.Table.from_pydict({
            "input": [specs[r.input].label for r in rows], "line": [r.line for r in rows],
            "reason": [r.reason for r in rows], "id": [r.id for r in rows], "raw": [r.raw for r in rows],
        }, schema=QUARANTINE_SCHEMA)
        with get_datafolder(self.quarantine_folder).open(f"{rank:05d}.parquet", "wb") as f:
            pq.write_table(table, f)


class CondptTagger(PipelineStep):
    """Tag every document with condpt's cascade (`condpt.tagging.cascade`), `batch_size` documents per call.

    `threads`: the cap on OpenMP / torch threads of the process (`limit_threads`; None: its share).
    `cfg`: the tag config (`TagConfig`; its ``text_field``/``id_field``/``set_aside_roles`` and chunking keys
    are for `condpt tag`'s reader and writer and are not used here: datatrove's reader gives the text and id).
    `scorer`: an object with ``score(texts) -> ndarray`` replacing ``classifier.spec`` (picklable for
    ``workers > 1``). The record's ``source`` metadata, when there is one, is passed to the cascade as
    `condpt tag` passes it."""

    name = "🏷 condpt tagger"
    type = "🏷 - TAGGER"

    def __init__(self, cfg: TagConfig | None = None, *, batch_size: int = 256, scorer: Any = None,
                 refiner: Any = None, autorater: Any = None, threads: int | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size}: must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError(f"threads {threads}: must be at least 1")
        self.config = (cfg or TagConfig()).model_dump(mode="json")  # plain data: pickles, fingerprints
        self.batch_size = batch_size
        self.scorer, self.refiner, self.autorater = scorer, refiner, autorater
        self.threads = threads
        self._cascade: Cascade | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cascade": None}  # loaded models stay in the process that loaded them

    @property
    def cascade(self) -> Cascade:
        if self._cascade is None:
            limit_threads(self.threads)
            cfg = TagConfig.model_validate(self.config)
            given = {k: v for k, v in (("scorer", self.scorer), ("refiner", self.refiner),
                                       ("autorater", self.autorater)) if v is not None}
            if given:
                self._cascade = Cascade(cfg, **given)
            else:
                key = json.dumps(self.config, sort_keys=True)
                self._cascade = _CASCADES.get(key) or _CASCADES.setdefault(key, Cascade(cfg))
        return self._cascade

    def tag(self, docs: list[Document]) -> None:
        """Write the cascade's decision for `docs` into their metadata (a quarantined record is left as it is)."""
        docs = [d for d in docs if QUARANTINED not in d.metadata]
        if not docs:
            return
        rows = self.cascade({"id": [d.id for d in docs], "text": [d.text for d in docs],
                             "source": [_source(d) for d in docs]})
        for i, doc in enumerate(docs):
            doc.metadata.update({k: rows[k][i] for k in DECISION_KEYS})

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        for batch in batched(data, self.batch_size):
            with self.track_time("batch"):
                self.tag(batch)
            self.stat_update("batches")
            # counted per batch, not per document: datatrove's per-document stat calls cost as much as the
            # fastText scorer's per-document work at document granularity (profiled)
            counts = Counter("quarantined" if QUARANTINED in d.metadata else f"tag_{d.metadata['tag']}" for d in batch)
            if n := len(batch) - counts.get("quarantined", 0):
                self.stat_update("documents", value=n, unit="batch")
            for label, n in sorted(counts.items()):
                self.stat_update(label, value=n, unit="batch")
            yield from batch


def limit_threads(threads: int | None) -> None:
    """Cap this process's OpenMP / BLAS / torch threads at `threads`, so that W worker processes on C cores use
    W x threads <= C instead of each starting C threads and thrashing. None: this process's share, all the cores
    it may use when it is alone (a Slurm or Ray task, `workers=1`), 1 in a worker process of a local pool
    (`condpt tag --workers W` passes cores // W)."""
    import multiprocess

    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user's choice stands
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = 1 if multiprocess.parent_process() is not None else cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # read by libraries when they load: before the scorer does
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "torch" in sys.modules:  # already loaded (it reads OMP_NUM_THREADS on import): set it directly
        sys.modules["torch"].set_num_threads(threads)


def _source(doc: Document) -> str:
    s = doc.metadata.get("source")
    return s if isinstance(s, str) else ""


def _attributes(writer: Any, doc: Document) -> dict:
    """`AttributesWriter`'s adapter: the attribute columns of one tagged document."""
    try:
        return {"id": doc.id, **{c: doc.metadata[c] for c in ATTRIBUTE_COLUMNS if c != "id"}}
    except KeyError as e:
        raise ValueError(f"document {doc.id!r} has no condpt {e.args[0]!r} in its metadata: put CondptTagger "
                         "before AttributesWriter") from None


def __getattr__(name: str):
    """`SetAside` and `AttributesWriter`, defined on first use: their bases' packages (datatrove's filters and
    writers) import every filter and writer datatrove has, ~0.2 CPU-seconds that `condpt tag` and each of its
    workers would pay at start-up for two classes they do not use (profiled: docs/benchmarks.md)."""
    if name in ("SetAside", "AttributesWriter"):
        _define_filter_and_writer()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_filter_and_writer() -> None:
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.writers.disk_base import DiskWriter
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    class SetAside(BaseFilter):
        """Drop documents whose condpt ``tag`` is one of `roles` (to `exclusion_writer` when given: the
        set-aside output). A document `CondptTagger` did not tag is an error, not a silent keep."""

        name = "🏷 condpt set-aside"

        def __init__(self, roles: Iterable[str] = ("bad",), exclusion_writer: DiskWriter | None = None):
            super().__init__(exclusion_writer)
            self.roles = sorted(set(roles))
            if not self.roles:
                raise ValueError("SetAside needs at least one role (e.g. ['bad'])")

        def filter(self, doc: Document) -> bool | tuple[bool, str]:
            tag = doc.metadata.get("tag")
            if tag is None:
                raise ValueError(f"document {doc.id!r} has no condpt tag in its metadata: put CondptTagger before "
                                 "SetAside")
            return (False, f"set_aside_{tag}") if tag in self.roles else True

    class AttributesWriter(JsonlWriter):
        """Dolma-style attributes, one JSON object per document: ``id``, ``score``, ``tag``, ``spans``,
        ``stage`` (`condpt.tagging.attributes`), no text; ``${rank}.jsonl.gz`` by default, so a task's
        attributes sit beside its data file, in the same order."""

        name = "🏷 condpt attributes"

        def __init__(self, output_folder, output_filename: str | None = None, compression: str | None = "gzip",
                     max_file_size: int = -1):
            super().__init__(output_folder, output_filename=output_filename, compression=compression,
                             adapter=_attributes, max_file_size=max_file_size)

    for cls in (SetAside, AttributesWriter):  # importable by name: pickled by reference for worker processes
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls


class LoggingDirError(ValueError):
    """A datatrove ``logging_dir`` that holds the completions of another pipeline."""


def pipeline_settings(pipeline: list) -> list:
    """What each step is set to, as plain data: its class and its public settings (nested steps such as an
    ``exclusion_writer`` included; folders by path, templates by text, functions by name; objects of other
    types by their type only, so run-time state never makes a re-run look like another pipeline)."""
    return [_settings(step) for step in pipeline]


def _settings(o: Any) -> Any:
    if o is None or isinstance(o, (str, int, float, bool)):
        return o
    if isinstance(o, (list, tuple)):
        return [_settings(x) for x in o]
    if isinstance(o, dict):
        return {str(k): _settings(v) for k, v in sorted(o.items(), key=lambda kv: str(kv[0]))}
    if isinstance(o, PipelineStep):
        return {"step": _qualname(type(o)),
                **{k: _settings(v) for k, v in sorted(vars(o).items()) if not k.startswith("_") and k != "stats"}}
    if isinstance(o, Template):
        return o.template
    path, fs = getattr(o, "path", None), getattr(o, "fs", None)
    if isinstance(path, str) and fs is not None:  # a datatrove DataFolder (fsspec DirFileSystem)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return f"{protocol}://{path}"
    if isinstance(o, Callable):
        return _qualname(getattr(o, "__func__", o))
    return _qualname(type(o))


def _qualname(o: Any) -> str:
    return f"{getattr(o, '__module__', '?')}.{getattr(o, '__qualname__', type(o).__qualname__)}"


def guard_logging_dir(executor) -> None:
    """Refuse to run `executor` (any datatrove executor) on a ``logging_dir`` written by another pipeline.

    datatrove skips a task whose ``completions/`` file exists, whatever pipeline wrote it: a re-run after a
    change of config, scorer, input or output (or of ``tasks``, which re-shards the input) would skip every
    finished task and report success. The pipeline's settings (`pipeline_settings`) and task count are stored in
    ``logging_dir/condpt_pipeline.json`` on the first run; a later run with other ones is refused, naming the
    first step that differs, as is a ``logging_dir`` that has completions but no record of what made them.
    Call it before ``executor.run()``."""
    folder = executor.logging_dir
    mine = {"tasks": executor.world_size, "pipeline": pipeline_settings(executor.pipeline)}
    text = json.dumps(mine, sort_keys=True, indent=1)
    where = f"{folder.path}/{GUARD_FILE}"
    if folder.isfile(GUARD_FILE):
        with folder.open(GUARD_FILE, "rt") as f:
            theirs = json.load(f)
        if theirs != json.loads(text):
            raise LoggingDirError(f"{where}: logging_dir {folder.path} belongs to another pipeline "
                                  f"({_first_difference(theirs, mine)}); datatrove would skip every task it "
                                  "finished. Use a new logging_dir (and output folder), or delete this one")
        return
    if folder.exists("completions") and folder.list_files("completions"):
        raise LoggingDirError(f"{folder.path}: logging_dir holds completed tasks but no {GUARD_FILE}, so what made "
                              "them is unknown; use a new logging_dir (or delete this one)")
    with folder.open(GUARD_FILE, "wt") as f:
        f.write(text)


def _first_difference(theirs: dict, mine: dict) -> str:
    if theirs.get("tasks") != mine["tasks"]:
        return f"tasks {theirs.get('tasks')} then, {mine['tasks']} now"
    old, new = theirs.get("pipeline", []), mine["pipeline"]
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            name = b.get("step", b) if isinstance(b, dict) else b
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) if isinstance(a, dict) and isinstance(
                b, dict) else []
            return f"step {i} ({name}) differs" + (f" in {', '.join(keys)}" if keys else "")
    return f"{len(old)} steps then, {len(new)} now"

