"""condpt.corpus.read: bytes after a whole bz2/xz stream that start no valid stream (a second stream whose header
is damaged) were ignored, every record in them lost with exit 0 (Python's bz2/lzma files stop there silently);
a Parquet file without the text column, checked before writing, was called 'corrupt or unreadable ... replace it'
(the column message wrapped in the damage message); two Parquet columns named 'text' silently used the last."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from condpt.corpus import check_inputs, expand_inputs, iter_records
from condpt.corpus.read import CorpusError, Fields

PACK = {".bz2": bz2.compress, ".xz": lzma.compress, ".gz": gzip.compress,
        ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def _lines(n: int, tag: str) -> bytes:
    return "".join(json.dumps({"id": f"{tag}{i}", "text": f"Doc {tag} {i}."}) + "\n" for i in range(n)).encode()


@pytest.mark.parametrize("suffix", list(PACK))
@pytest.mark.parametrize("tail", ["damaged second stream", "garbage"])
def test_bytes_after_a_whole_stream_that_start_no_stream_are_an_error(tmp_path, suffix, tail):
    second = bytearray(PACK[suffix](_lines(200, "b")))
    second[0] ^= 0xFF
    extra = bytes(second) if tail == "damaged second stream" else b"garbage after the end\n"
    path = tmp_path / f"c.jsonl{suffix}"
    path.write_bytes(PACK[suffix](_lines(10, "a")) + extra)
    specs = expand_inputs([path])
    with pytest.raises(CorpusError, match=r"c\.jsonl.*corrupt or unreadable"):
        check_inputs(specs, Fields())


@pytest.mark.parametrize("suffix", list(PACK))
def test_several_whole_streams_are_all_read(tmp_path, suffix):
    path = tmp_path / f"c.jsonl{suffix}"
    path.write_bytes(PACK[suffix](_lines(10, "a")) + PACK[suffix](_lines(5, "b")))
    specs = expand_inputs([path])
    check_inputs(specs, Fields())
    assert len(list(iter_records(specs, Fields()))) == 15


def test_xz_stream_padding_is_allowed(tmp_path):
    path = tmp_path / "c.jsonl.xz"
    path.write_bytes(lzma.compress(_lines(3, "a")) + b"\0" * 8 + lzma.compress(_lines(2, "b")) + b"\0" * 4)
    specs = expand_inputs([path])
    check_inputs(specs, Fields())
    assert len(list(iter_records(specs, Fields()))) == 5


def test_a_parquet_file_without_the_text_column_is_not_called_damaged(tmp_path):
    pq.write_table(pa.table({"id": ["z"], "body": ["x"]}), tmp_path / "z.parquet")
    with pytest.raises(CorpusError) as e:
        check_inputs(expand_inputs([tmp_path / "z.parquet"]), Fields())
    assert "no column 'text'" in str(e.value) and "corrupt" not in str(e.value) and "replace it" not in str(e.value)


def test_two_parquet_columns_named_text_are_refused(tmp_path):
    t = pa.Table.from_arrays([pa.array(["a"]), pa.array(["first"]), pa.array(["second"])], names=["id", "text", "text"])
    pq.write_table(t, tmp_path / "d.parquet")
    with pytest.raises(CorpusError, match="2 columns named 'text'"):
        check_inputs(expand_inputs([tmp_path / "d.parquet"]), Fields())


def test_a_named_pipe_given_as_input_is_refused_not_waited_on(tmp_path):
    """`condpt tag p.jsonl` with p.jsonl a FIFO hung for ever in check_inputs (no writer); with a writer, the check
    would consume what the tagging pass then never sees (inputs are read twice)."""
    import os

    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match=r"p\.jsonl: not a regular file"):
        expand_inputs([fifo])
