"""Shared fixtures: everything offline, everything built in-process."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))

import pytest

SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def gpt2_tok():
    """The real GPT-2 tokenizer (a fresh copy per test would cost ~1 s; tests must not mutate it)."""
    from condpt.tiny import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture
def fresh_gpt2_tok():
    """A GPT-2 tokenizer a test may mutate (e.g. add control tokens to)."""
    from condpt.tiny import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def english_texts() -> list[str]:
    """Real English text: Gutenberg paragraphs from ../shared when present, else a small built-in sample."""
    path = SHARED_DATA / "gutenberg-corpus.jsonl"
    if path.exists():
        import json

        with path.open(encoding="utf-8") as f:
            return [json.loads(next(f))["text"] for _ in range(200)]
    return [
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about.",
    ] * 100


@pytest.fixture(scope="session")
def tiny_world():
    """A small generated world, a BPE tokenizer trained on it and the control tokens added to that tokenizer:
    `(world, tokenizer, manifest)`, built once (~seconds); tests must not mutate them (each builds its own model).
    The world's `config` is what its scenarios come from."""
    from condpt.tiny import train_bpe_tokenizer
    from condpt.world import WorldConfig, generate_world
    from tokenizer_ext import add_control_tokens

    w = generate_world(WorldConfig(n_ai_docs=200, n_background=20, n_heldout=5, background="templates"))
    tok = train_bpe_tokenizer([d["text"] for d in w.train], vocab_size=600)
    return w, tok, add_control_tokens(tok)


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory) -> Path:
    """A tiny GPT-2 saved with `tiny_world`'s tokenizer and manifest (`m/`) and that world written out
    (`world/`): what `condpt generate` and `condpt eval` load. Read-only for the tests that share it."""
    from condpt.tiny import tiny_causal_lm
    from condpt.world import write_world

    w, tok, manifest = tiny_world
    root = tmp_path_factory.mktemp("tiny-run")
    tiny_causal_lm("gpt2", len(tok), d_model=16, n_layer=1, n_head=2, max_positions=128).save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    manifest.save(root / "m")
    write_world(w, root / "world")
    return root


@pytest.fixture
def row_scans(monkeypatch) -> list:
    """One entry per full row-by-row read of the training sources (`condpt.inputs._row_problems`)."""
    from condpt import inputs

    calls = []
    real = inputs._row_problems
    monkeypatch.setattr(inputs, "_row_problems", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a float32 checkpoint (`condpt.smollm2`: built once, cached across runs); tests
    must not write into it."""
    from condpt.smollm2 import smollm2_checkpoint

    return smollm2_checkpoint()


# The repo root first on sys.path: `pytest` (unlike `python -m pytest`) would otherwise resolve the package
# `tokenizer_ext` to the namespace directory tests/tokenizer_ext and shadow the editable install.
import sys

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
