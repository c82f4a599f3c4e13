"""The shipped default scorers, trained on first use from labelled passages shipped in the package.

No weights are committed: training takes seconds and is deterministic, and the result is cached under
condpt's cache directory (`condpt.cache.cache_dir`) keyed by the data's hash, the format version and the kind.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from condpt.cache import cache_dir
from condpt.labelled import Labelled, read_labelled
from condpt.tagging.classifiers.agency import agency_path
from condpt.tagging.classifiers.base import SCORER_FILE, Scorer, load_kind
from condpt.tagging.classifiers.referent import referents_path
from condpt.tagging.classifiers.static import freq_path
from condpt.tagging.classifiers.train import FORMAT_VERSION, train_classifier

DATA_GLOB = "classifier_*.jsonl"
# Training parameters of each shipped default beyond the kind's own defaults. Every default requires an AI
# referent (near a window; in the document for fastText) before it can tag (see classifiers/referent.py).
DEFAULT_TRAIN_PARAMS: dict[str, dict] = {"embedding": {"referent": True}, "static": {"referent": True},
                                         "fasttext": {"referent": True}}
# Part of the cache key, with train.FORMAT_VERSION: bump when the default's training or features change
# (2: the AI-referent penalty and referents.yaml; 3: the fastText default gets the penalty too).
DEFAULT_VERSION = 3


def data_files() -> list[Path]:
    """The labelled JSONL files shipped in ``condpt/tagging/data/`` that train the default."""
    root = Path(str(resources.files("condpt.tagging") / "data"))
    return sorted(root.glob(DATA_GLOB))


def shipped_data() -> Labelled:
    """All shipped labelled passages; the group is the genre, so grouped CV holds out whole genres."""
    data = Labelled()
    for path in data_files():
        part = read_labelled(path, group_field="genre")
        data.texts += part.texts
        data.labels += part.labels
        data.groups += part.groups
        data.ids += part.ids
    return data


def cache_key(kind: str) -> str:
    h = hashlib.sha256(f"{kind}\0{FORMAT_VERSION}\0{DEFAULT_VERSION}\0".encode())
    extra = [referents_path()] if DEFAULT_TRAIN_PARAMS[kind].get("referent") else []
    if DEFAULT_TRAIN_PARAMS[kind].get("agency"):  # the agency rules read referents.yaml too
        extra += [p for p in (referents_path(), agency_path()) if p not in extra]
    if kind == "static":  # its SIF weights come from the shipped word counts
        extra.append(freq_path())
    for path in data_files() + extra:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def default_dir(kind: str = "embedding") -> Path:
    """Where the default scorer of `kind` is cached (holds ``scorer.json`` once trained)."""
    return cache_dir() / "scorers" / f"default-{kind}-{cache_key(kind)}"


def default_scorer(kind: str = "embedding") -> Scorer:
    """The default scorer of `kind` (``embedding``, ``static`` or ``fasttext``), training and caching it if needed."""
    target = default_dir(kind)
    if not (target / SCORER_FILE).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            # grouped CV over registers picks the threshold (the head refits are cheap once encoded)
            train_classifier(shipped_data(), tmp, kind=kind, cv=True, **DEFAULT_TRAIN_PARAMS[kind])
            try:
                tmp.rename(target)  # atomic: concurrent first uses (num_proc workers) never see half a model
            except OSError:
                if not (target / SCORER_FILE).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    scorer = load_kind(kind, target)
    scorer.name = f"default-{kind}"
    return scorer
