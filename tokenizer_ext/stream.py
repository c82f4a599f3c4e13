"""Copy a safetensors checkpoint file to file while growing its vocabulary tensors, a chunk of rows at a time.

`safetensors.torch.save_file` wants every tensor in memory at once, so this module writes the format itself. It
is small (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON header
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}` padded with spaces, then the
tensors' raw little-endian bytes back to back. Unchanged tensors are copied as bytes; a grown tensor is its old
rows (a chunk at a time, with the rows to re-initialise patched in) followed by its new rows. Sharded checkpoints
(`model.safetensors.index.json`) keep their shard files and get an index with the new total size.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
CHUNK_BYTES = 1 << 24  # rows copied per write: small against any checkpoint worth streaming

# safetensors dtype names of the floating types a vocabulary matrix can have
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

RowReader = Callable[[int, int], torch.Tensor]
"""rows [a, b) of the old tensor, in its dtype"""

NewRows = Callable[[RowReader, int], tuple[torch.Tensor, dict[int, torch.Tensor]]]
"""(reader, old row count) -> (the value of every added row, {row id: value} for rows that differ from it; ids
below the old count re-initialise existing rows)"""


class StreamError(ValueError):
    """The checkpoint files cannot be grown as asked (missing tensor, non-float dtype, malformed header)."""


@dataclass(frozen=True)
class Entry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute offsets in the file
    end: int


def shard_names(model_dir: Path) -> list[str] | None:
    """The safetensors files of a checkpoint directory, as transformers finds them; None if it has none."""
    index = model_dir / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = list(dict.fromkeys(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StreamError(f"{index}: not a safetensors index (a JSON object with a weight_map): "
                              f"{type(e).__name__}: {e}") from None
        if not names or not all(isinstance(n, str) and n and Path(n).name == n for n in names):
            raise StreamError(f"{index}: weight_map must map tensor names to shard file names in this directory")
        return names
    if (model_dir / SINGLE).is_file():
        return [SINGLE]
    return None


# bytes per element of the safetensors dtypes, to check each tensor's byte range against its shape
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _entry(path: Path, name: str, e, start: int, size: int) -> Entry:
    """One header entry, checked: a bad one is a StreamError naming the file and the tensor, never a KeyError or
    a read past the end later."""
    try:
        dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
    except (TypeError, KeyError, ValueError):
        raise StreamError(f"{path}: header entry {name!r} is not {{dtype, shape, data_offsets: [begin, end]}}") \
            from None
    ints = [*shape, begin, end] if isinstance(shape, list) else None
    if ints is None or not all(type(i) is int and i >= 0 for i in ints) or begin > end:
        raise StreamError(f"{path}: header entry {name!r} has a bad shape {shape!r} or offsets {[begin, end]!r}")
    if dtype in ITEMSIZE and end - begin != ITEMSIZE[dtype] * math.prod(shape):
        raise StreamError(f"{path}: tensor {name!r} ({dtype} {shape}) has {end - begin} bytes of data, "
                          f"expected {ITEMSIZE[dtype] * math.prod(shape)}")
    if start + end > size:
        raise StreamError(f"{path}: truncated: tensor {name!r} ends at byte {start + end} but the file has "
                          f"{size} bytes")
    return Entry(dtype, tuple(shape), start + begin, start + end)


def read_header(path: Path) -> tuple[dict[str, Entry], dict[str, str] | None]:
    """(tensor name -> entry, the `__metadata__` block) of one safetensors file, checked against the file's size
    so that a truncated or garbled file is an error naming it here, before anything is written."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(8)
            if len(raw) != 8:
                raise StreamError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                raise StreamError(f"{path}: not a safetensors file or truncated: its header length says {n} bytes, "
                                  f"the file has {size}")
            blob = f.read(n)
    except OSError as e:
        raise StreamError(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        header = json.loads(blob)
    except ValueError as e:
        raise StreamError(f"{path}: unreadable safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise StreamError(f"{path}: unreadable safetensors header: a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    start = 8 + n
    return {name: _entry(path, name, e, start, size) for name, e in header.items()}, metadata


def headers(model_dir: Path, shards: list[str]) -> dict[str, tuple[str, Entry]]:
    """tensor name -> (shard file, entry) over all shards."""
    missing = [s for s in shards if not (model_dir / s).is_file()]
    if missing:
        raise StreamError(f"{model_dir / INDEX}: names shard files that are not there: {missing}")
    return {name: (shard, entry) for shard in shards for name, entry in read_header(model_dir / shard)[0].items()}


def _reader(f, entry: Entry) -> RowReader:
    dtype = DTYPES[entry.dtype]
    inner = entry.shape[1:]
    row_bytes = dtype.itemsize * (inner[0] if inner else 1)

    def read(a: int, b: int) -> torch.Tensor:
        buf = bytearray((b - a) * row_bytes)
        if buf:
            f.seek(entry.begin + a * row_bytes)
            if f.readinto(buf) != len(buf):
                raise StreamError(f"{f.name}: truncated tensor data")
            return torch.frombuffer(buf, dtype=dtype).view(b - a, *inner)
        return torch.empty((0, *inner), dtype=dtype)

    return read


def _copy(src, dst, begin: int, end: int) -> None:
    src.seek(begin)
    while begin < end:
        chunk = src.read(min(CHUNK_BYTES, end - begin))
        if not chunk:
            raise StreamError(f"{src.name}: truncated tensor data")
        dst.write(chunk)
        begin += len(chunk)


def _write_grown(src, dst, entry: Entry, n_new: int, new_rows: NewRows) -> None:
    read = _reader(src, entry)
    n_old = entry.shape[0]
    fill, rows = new_rows(read, n_old)
    dtype = DTYPES[entry.dtype]
    row_bytes = (entry.end - entry.begin) // max(n_old, 1)
    step = max(1, CHUNK_BYTES // max(row_bytes, 1))
    patched = sorted(i for i in rows if i < n_old)
    for a in range(0, n_old, step):
        b = min(a + step, n_old)
        here = [i for i in patched if a <= i < b]
        if not here:
            _copy(src, dst, entry.begin + a * row_bytes, entry.begin + b * row_bytes)
            continue
        chunk = read(a, b)
        for i in here:
            chunk[i - a] = rows[i].to(dtype)
        dst.write(chunk.view(torch.uint8).numpy().data)
    if n_new > n_old:
        tail = fill.to(dtype).expand(n_new - n_old, *entry.shape[1:]).clone()
        for i, row in rows.items():
            if i >= n_old:
                tail[i - n_old] = row.to(dtype)
        dst.write(tail.view(torch.uint8).numpy().data)


def _grow_file(src_path: Path, dst_path: Path, n_new: int, grow: dict[str, NewRows]) -> tuple[int, int]:
    """Write `dst_path` from `src_path` with the tensors in `grow` extended to `n_new` rows; returns (bytes of
    tensor data written, elements added)."""
    entries, metadata = read_header(src_path)
    order = sorted(entries, key=lambda name: entries[name].begin)  # keep the input's layout
    header: dict[str, object] = {"__metadata__": metadata} if metadata is not None else {}
    offset = added = 0
    for name in order:
        e = entries[name]
        shape, size = list(e.shape), e.end - e.begin
        if name in grow:
            if e.dtype not in DTYPES or len(e.shape) not in (1, 2):
                raise StreamError(f"{src_path}: {name} is {e.dtype} {list(e.shape)}, not a float vector or matrix")
            if n_new < e.shape[0]:
                raise StreamError(f"{src_path}: {name} has {e.shape[0]} rows, more than the {n_new} asked for")
            row_elems = math.prod(e.shape[1:])
            size = DTYPES[e.dtype].itemsize * row_elems * n_new
            added += row_elems * (n_new - e.shape[0])
            shape[0] = n_new
        header[name] = {"dtype": e.dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
        dst.write(struct.pack("<Q", len(blob)))
        dst.write(blob)
        for name in order:
            e = entries[name]
            if name in grow:
                _write_grown(src, dst, e, n_new, grow[name])
            else:
                _copy(src, dst, e.begin, e.end)
        if dst.tell() != 8 + len(blob) + offset:
            raise StreamError(f"{dst_path}: wrote {dst.tell()} bytes, expected {8 + len(blob) + offset}")
        dst.flush()
        os.fsync(dst.fileno())
    return offset, added


def grow_checkpoint(model_dir: Path, out_dir: Path, n_new: int, grow: dict[str, NewRows]) -> list[str]:
    """Write the safetensors files of `model_dir` (single or sharded) to `out_dir` with each tensor named in
    `grow` extended to `n_new` rows by its `NewRows`; returns the file names written."""
    shards = shard_names(model_dir)
    if shards is None:
        raise StreamError(f"{model_dir}: no {SINGLE} or {INDEX}")
    found = headers(model_dir, shards)
    missing = sorted(set(grow) - set(found))
    if missing:
        raise StreamError(f"{model_dir}: tensors {missing} not in the checkpoint files")
    written = [_grow_file(model_dir / s, out_dir / s, n_new, {k: v for k, v in grow.items() if found[k][0] == s})
               for s in shards]
    if (model_dir / INDEX).is_file():
        index = json.loads((model_dir / INDEX).read_text(encoding="utf-8"))
        meta = index.setdefault("metadata", {})
        meta["total_size"] = sum(size for size, _ in written)
        if "total_parameters" in meta:
            meta["total_parameters"] += sum(added for _, added in written)
        (out_dir / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [*shards, INDEX]
    return shards
