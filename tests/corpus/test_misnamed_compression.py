"""A compressed file named as plain JSONL (`a.jsonl` holding gzip bytes) is an error naming the compression and
the name to give it: its lines were quarantined one by one as invalid UTF-8, the records never read."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import pytest

from condpt.corpus import CorpusError, Fields, check_inputs, expand_inputs

LINES = b"".join(json.dumps({"text": f"line {i}"}).encode() + b"\n" for i in range(200))


def _zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("kind, suffix, pack", [("gzip", ".gz", gzip.compress), ("bz2", ".bz2", bz2.compress),
                                                ("xz", ".xz", lzma.compress), ("zstd", ".zst", _zst)])
def test_a_compressed_file_named_as_plain_jsonl_is_an_error(tmp_path, kind, suffix, pack):
    (tmp_path / "a.jsonl").write_bytes(pack(LINES))
    with pytest.raises(CorpusError, match=rf"a\.jsonl: {kind}-compressed; name it a\.jsonl\{suffix}"):
        check_inputs(expand_inputs([tmp_path / "a.jsonl"]), Fields())


def test_plain_jsonl_passes(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(LINES)
    check_inputs(expand_inputs([tmp_path / "a.jsonl"]), Fields())
