"""Keep about one module's weights resident during a forward pass over a memory-mapped checkpoint.

transformers 5 loads safetensors weights as views of a private memory map of the file. A forward pass touches every
page, so the whole checkpoint becomes part of the process's resident set, although those pages are clean copies of
the file in the page cache. `one_module_resident` hands a module's pages back (`madvise(MADV_DONTNEED)`) right
after the module ran; the next touch maps them again from the page cache. Nothing else changes: only pages that are
still the file's own (checked once in `/proc/self/pagemap`: no page of the mapping is private anonymous memory, as a
page written in this process would be) are handed back, so no write can be lost. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

MADV_DONTNEED = 4
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def file_mappings(paths: Iterable[Path]) -> list[tuple[int, int]]:
    """Address ranges [start, end) at which this process maps any of `paths`."""
    names = {os.path.realpath(p) for p in paths}
    out = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(maxsplit=5)
                if len(parts) == 6 and parts[5] in names:
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    out.append((start, end))
    except OSError:
        return []
    return out


def only_file_pages(start: int, end: int, chunk_pages: int = 1 << 20) -> bool:
    """True when no page in [start, end) is private anonymous memory (present or swapped, and not file-backed).
    Read a million pages (8 MB of pagemap) at a time."""
    first, last = start // PAGE, end // PAGE
    try:
        with open("/proc/self/pagemap", "rb") as f:
            for page in range(first, last, chunk_pages):
                f.seek(page * 8)
                entries = np.frombuffer(f.read(min(chunk_pages, last - page) * 8), dtype="<u8")
                in_memory = (entries >> np.uint64(62)) != 0  # bit 63 present, bit 62 swapped
                file_backed = ((entries >> np.uint64(61)) & np.uint64(1)) != 0
                if not np.all(file_backed | ~in_memory):
                    return False
    except OSError:
        return False
    return True


def _madvise():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise


@contextlib.contextmanager
def one_module_resident(model: torch.nn.Module, files: Iterable[Path]) -> Iterator[bool]:
    """While inside, each module's parameter pages that map one of `files` are handed back after the module's
    forward. Yields whether it is active (False: no such mapping, a page of it was written, or not Linux).
    Only for inference: do not write to the parameters inside."""
    ranges = file_mappings(files)
    try:
        madvise = _madvise()
    except (OSError, AttributeError):
        ranges = []
    if not ranges or not all(only_file_pages(a, b) for a, b in ranges):
        yield False
        return

    def drop(module, args, output) -> None:
        for p in module.parameters(recurse=False):
            lo, hi = p.data_ptr(), p.data_ptr() + p.numel() * p.element_size()
            for a, b in ranges:
                # whole pages only: a page shared with a neighbouring tensor stays
                start, end = -(-max(lo, a) // PAGE) * PAGE, min(hi, b) // PAGE * PAGE
                if start < end:
                    madvise(start, end - start, MADV_DONTNEED)

    handles = [m.register_forward_hook(drop) for m in model.modules()
               if next(m.parameters(recurse=False), None) is not None]
    try:
        yield True
    finally:
        for h in handles:
            h.remove()
