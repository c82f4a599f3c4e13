"""A run's packed train/held-out blocks (`condpt.sequences.build_datasets`), built once by the main process and
cached under OUTPUT_DIR/cache/data-<key>, the key naming everything that decides the blocks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from condpt.config import RunConfig

# Data settings that never reach the blocks: the routed units and the coherence fine-tune shape the model and
# the steps (mode route itself, which leaves the tag ids out, is in the key), and document masking only chooses
# whether the model is given the position ids every block carries (`condpt.train._set_up`).
_NOT_IN_BLOCKS: dict[str, Any] = {"document_masking": True, "policy": {"route": True}}


def _data_key(cfg: RunConfig, tok_dir: Path) -> str:
    """Names `prepare_data`'s cache by what decides the blocks: the data settings (less `_NOT_IN_BLOCKS`), the
    seed, the packing processes (each cuts the stream at its own batch ends), the tokenizer's files, and the size
    and time of every source file and of the stories file."""
    h = hashlib.sha256()
    h.update(cfg.data.model_dump_json(exclude=_NOT_IN_BLOCKS).encode())
    h.update(f"{cfg.seed}:{cfg.train.preprocess_num_proc}".encode())
    for f in sorted(tok_dir.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    inputs = [Path(src.path) for src in cfg.data.sources]
    selfref = cfg.data.policy.selfref
    if selfref is not None and selfref.stories_path is not None:
        inputs.append(Path(selfref.stories_path))
    for p in inputs:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepare_data(cfg: RunConfig, tokenizer, manifest, accelerator, out: Path):
    """Train/held-out block datasets, built by the main process first and cached under OUTPUT_DIR/cache."""
    from datasets import load_from_disk

    from condpt.sequences import build_datasets

    cache = out / "cache" / f"data-{_data_key(cfg, out / 'tokenizer')}"
    with accelerator.main_process_first():
        if not (cache / "done").is_file():
            train, heldout = build_datasets(cfg.data, tokenizer, manifest, seed=cfg.seed,
                                            num_proc=cfg.train.preprocess_num_proc)
            train.save_to_disk(str(cache / "train"))
            heldout.save_to_disk(str(cache / "heldout"))
            (cache / "done").write_text("ok\n")
        train = load_from_disk(str(cache / "train"))
        heldout = load_from_disk(str(cache / "heldout"))
    cols = ["input_ids", "labels", "tag_index", "position_ids"]
    return train.select_columns(cols).with_format("torch"), heldout.select_columns(cols).with_format("torch")
