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


class DataError(ValueError):
    """Training data the run cannot use, found once the processes are up and raised alike in every rank: one
    line for the user (`condpt.recipe`), not a traceback per rank."""


class TooLittleData(DataError):
    """The sources give no full optimizer step."""


class BadRows(DataError):
    """A row of a source the data path would coerce, mistag or fail on (`condpt.inputs._row_problems`)."""


def check_sources(cfg: RunConfig, accelerator) -> None:
    """Every row of the sources checked once for the whole run, before anything reads them: by the main process
    alone, and not at all where `condpt train` or an earlier run stamped these very files
    (`condpt.inputs.checked_rows`); its verdict is broadcast, so a bad row is `BadRows` naming the file, line
    and field in every rank (the ranks load the config with `rows="later"`)."""
    from accelerate.utils import broadcast_object_list

    from condpt.inputs import checked_rows

    problems = checked_rows(cfg, stamp=True) if accelerator.is_main_process else None
    [problems] = broadcast_object_list([problems])
    if problems:
        raise BadRows("training data that cannot be used: " + "; ".join(f"{field}: {msg}" for field, msg in problems))


def too_little(cfg: RunConfig, blocks: int, processes: int) -> TooLittleData:
    t = cfg.train
    sources = ", ".join(str(src.path) for src in cfg.data.sources)
    return TooLittleData(f"too little training data: {sources} gave {blocks} training blocks of {cfg.data.block_size} "
                         f"tokens; one optimizer step needs {processes * t.micro_batch_size * t.grad_accum} "
                         f"({processes} processes × micro_batch_size {t.micro_batch_size} × grad_accum {t.grad_accum})")


def prepare_data(cfg: RunConfig, tokenizer, manifest, accelerator, out: Path):
    """Train/held-out block datasets, built by the main process first and cached under OUTPUT_DIR/cache.
    No training block at all: `TooLittleData` in every process (an empty dataset cannot be saved and loaded)."""
    from datasets import load_from_disk

    from condpt.sequences import build_datasets

    cache = out / "cache" / f"data-{_data_key(cfg, out / 'tokenizer')}"
    with accelerator.main_process_first():
        if not (cache / "done").is_file():
            train, heldout = build_datasets(cfg.data, tokenizer, manifest, seed=cfg.seed,
                                            num_proc=cfg.train.preprocess_num_proc)
            # an empty dataset is saved as 0 shards, which load_from_disk cannot read (IndexError): not saved
            if len(train):  # no train/ in a finished cache: the sources gave no block
                train.save_to_disk(str(cache / "train"))
            if len(heldout):
                heldout.save_to_disk(str(cache / "heldout"))
            cache.mkdir(parents=True, exist_ok=True)
            (cache / "done").write_text("ok\n")
        if not (cache / "train").is_dir():
            raise too_little(cfg, 0, accelerator.num_processes)
        train = load_from_disk(str(cache / "train"))
        heldout = load_from_disk(str(cache / "heldout")) if (cache / "heldout").is_dir() else train.select([])
    cols = ["input_ids", "labels", "tag_index", "position_ids"]
    return train.select_columns(cols).with_format("torch"), heldout.select_columns(cols).with_format("torch")
