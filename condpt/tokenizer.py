"""The run's tokenizer (`tokenizer.source`: the checkpoint's, GPT-2 BPE, a BPE trained on the sources, or a
directory) with condpt's control tokens added, built once and saved under OUTPUT_DIR/tokenizer so every process
and every resumed run sees the same ids."""

from __future__ import annotations

import shutil
from pathlib import Path

from condpt.config import RunConfig


def _source_texts(cfg: RunConfig, limit: int) -> list[str]:
    """Up to `limit` raw texts of the training sources, for training a tokenizer (not the model)."""
    from condpt.sequences import load_source

    texts: list[str] = []
    for src in cfg.data.sources:
        ds = load_source(src)
        texts += [t or "" for t in ds.select(range(min(len(ds), limit - len(texts))))["text"]]
    return texts


def base_tokenizer(cfg: RunConfig):
    from transformers import AutoTokenizer

    from condpt import tiny

    src = cfg.tokenizer.source
    if src == "checkpoint":
        return AutoTokenizer.from_pretrained(str(cfg.model.checkpoint))
    if src == "gpt2-bpe":
        return tiny.gpt2_tokenizer()
    if src == "train-bpe":
        return tiny.train_bpe_tokenizer(_source_texts(cfg, cfg.tokenizer.train_docs), cfg.tokenizer.vocab_size)
    if not Path(src).is_dir():
        raise FileNotFoundError(f"tokenizer.source: {src} is neither a builtin (checkpoint, gpt2-bpe, train-bpe) "
                                "nor a tokenizer directory")
    return AutoTokenizer.from_pretrained(src)


def prepare_tokenizer(cfg: RunConfig, directory: Path):
    """Build the run's tokenizer once (control tokens added if missing) and save it to `directory`;
    later calls, other ranks and resumed runs load the saved copy so every process sees the same ids."""
    from transformers import AutoTokenizer

    from tokenizer_ext import MANIFEST_NAME, ControlTokens, Manifest, add_control_tokens

    if not (directory / MANIFEST_NAME).is_file():
        tok = base_tokenizer(cfg)
        spec = ControlTokens.from_yaml(cfg.tokenizer.control_tokens) if cfg.tokenizer.control_tokens else ControlTokens()
        manifest = add_control_tokens(tok, spec)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(tmp)
        manifest.save(tmp)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    tok = AutoTokenizer.from_pretrained(str(directory))
    manifest = Manifest.load(directory)
    manifest.check(tok)
    return tok, manifest
