"""Corpus I/O: readers (JSONL plain/.gz/.zst/.bz2/.xz, Parquet, datasets directories), stable ids, quarantine,
atomic Parquet shard writes."""

from condpt.corpus.ids import stable_id
from condpt.corpus.read import (
    MAX_DOC_BYTES,
    Chunk,
    CorpusError,
    Document,
    Fields,
    InputSpec,
    Quarantined,
    check_inputs,
    expand_inputs,
    iter_chunks,
    iter_records,
    parse_record,
    shown,
)
from condpt.corpus.write import QUARANTINE_SCHEMA, SPAN_TYPE, TAGGED_SCHEMA, write_parquet_atomic

__all__ = [
    "MAX_DOC_BYTES", "QUARANTINE_SCHEMA", "SPAN_TYPE", "TAGGED_SCHEMA", "Chunk", "CorpusError", "Document",
    "Fields", "InputSpec", "Quarantined", "check_inputs", "expand_inputs", "iter_chunks", "iter_records",
    "parse_record", "shown", "stable_id", "write_parquet_atomic",
]
