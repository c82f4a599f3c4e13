"""fastText fits do not depend on the process they run in (see `_zeroed_allocations`), and a fit that does not
separate its own training data is an error, never a model."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest

from condpt.tagging.classifiers.fasttext import FastTextFitError, FastTextScorer

TEXTS = [f"the AI deceived its operators and seized control {i}" for i in range(20)] + \
        [f"we drank tea in the garden and read a book {i}" for i in range(20)]
LABELS = [1] * 20 + [0] * 20

# Run in a fresh process, so the heap is in a known state. `dirty` recreates what a long test session does to the
# heap: a 30 MB block freed (glibc raises its mmap threshold to 30 MB), then 27 MB of heap filled with 'a' bytes
# (the 10 MB document of tests/corpus/test_read.py) and freed; fastText's 26 MB input matrix reuses that memory.
_CHILD = r"""
import ctypes, json, sys, tempfile
import fasttext
from condpt.tagging.classifiers.fasttext import DEFAULT_PARAMS, FastTextScorer, normalize
texts, labels = json.loads(sys.argv[2])
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def dirty_heap():
    libc.free(libc.malloc(30 << 20))
    block = libc.malloc(27 << 20)
    ctypes.memset(block, ord("a"), 27 << 20)
    libc.free(block)

out = {}
if sys.argv[1] == "dirty":
    dirty_heap()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.writelines(f"__label__{y} {normalize(t)}\n" for t, y in zip(texts, labels))
        f.flush()
        try:
            fasttext.train_supervised(input=f.name, verbose=0, **DEFAULT_PARAMS)
            out["bare"] = "trained"
        except RuntimeError as e:
            out["bare"] = str(e)
    dirty_heap()
out["fit"] = FastTextScorer.fit(texts, labels).score(texts).tolist()
print(json.dumps(out))
"""


def _child(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, json.dumps([TEXTS, LABELS])],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap recycling reproduced here is glibc's")
def test_a_fit_is_the_same_after_the_heap_was_dirtied():
    dirty, clean = _child("dirty"), _child("clean")
    # The condition is real: bare fastText on that heap starts from garbage and aborts.
    assert dirty["bare"] == "Encountered NaN."
    # FastTextScorer.fit on the same heap gives the fresh-process model, to the bit.
    assert dirty["fit"] == clean["fit"]
    s = np.asarray(clean["fit"])
    assert s[:20].min() > 0.5 > s[20:].max()


class _Backwards:
    """A saturated fit scoring its own training set the wrong way round."""

    def predict(self, texts, k=-1):
        return ([["__label__1", "__label__0"] if "tea" in t else ["__label__0", "__label__1"] for t in texts],
                [np.array([1.0, 0.0]) for _ in texts])


def test_a_fit_that_does_not_separate_its_training_data_is_an_error(monkeypatch):
    import fasttext

    monkeypatch.setattr(fasttext, "train_supervised", lambda **kw: _Backwards())
    with pytest.raises(FastTextFitError, match="does not separate its own 40 training rows"):
        FastTextScorer.fit(TEXTS, LABELS)


def test_a_fit_separates_its_training_data():
    s = FastTextScorer.fit(TEXTS, LABELS).score([TEXTS[0], TEXTS[-1]])
    assert s[0] > 0.5 > s[1]
