"""Training data path: tagged sources → policy → encode_untrusted + control ids by id → packed blocks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import datasets
from pydantic import BaseModel, ConfigDict, Field, model_validator

from condpt.configtypes import STRICT, Name, PathField
from condpt.layout import condition_ids, encode_curated, encode_text
from condpt.policy import (
    MissKey,
    PolicyConfig,
    apply_policy,
    retag,
    score_miss_cutoff,
    stochastic_round,
    unit_hash,
)
from condpt.stories import story_rows
from condpt.tagged import tagged_features
from tokenizer_ext import Manifest

log = logging.getLogger(__name__)


class SourceConfig(BaseModel):
    """One tagged source: a `condpt tag` output dir (or its data/ dir), a parquet file, or a JSONL file."""

    model_config = STRICT

    path: PathField
    weight: float = Field(1.0, ge=0.0, description="times each document is seen (0.5: half, chosen by hash)")
    text_field: Name = "text"

    @model_validator(mode="after")
    def _text_is_its_own_column(self) -> SourceConfig:
        if self.text_field in _DOC_COLUMNS and self.text_field != "text":  # read as text, it would be lost as itself
            raise ValueError(f"text_field {self.text_field!r} is the source's {self.text_field!r} column; name the "
                             "column that holds the text")
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns every file of this source must have."""
        return ("id", self.text_field, "tag")


class DataConfig(BaseModel):
    """Everything that decides the training and held-out token blocks."""

    model_config = STRICT

    sources: list[SourceConfig] = Field(min_length=1)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    block_size: int = Field(1024, ge=2, le=2**20)
    loss_on_tags: bool = True
    document_masking: bool = Field(True, description="attention stays inside a document in packed blocks "
                                   "(position ids restart at each EOS; transformers builds the block-diagonal mask)")
    heldout_fraction: float = Field(0.01, ge=0.0, lt=1.0, description="documents held out by id hash, same for every arm")


# ----------------------------------------------------------------------------------------- packing

def tag_roles(manifest: Manifest) -> list[str]:
    """The stable roles list that `tag_index` indexes into (the manifest's tag roles, in spec order)."""
    return list(manifest.roles)


def pack_batch(
    batch: dict[str, list],
    *,
    tokenizer: Any,
    manifest: Manifest,
    block_size: int,
    loss_on_tags: bool = True,
    insert_tags: bool = True,
) -> dict[str, list]:
    """Training rows (`segments`, optional `trusted`) → fixed-length blocks `input_ids`, `labels`, `tag_index`,
    `position_ids`.

    Segment text goes through `encode_untrusted` (one batched call); rows marked `trusted` (self-reference
    stories) through `encode_trusted`, the only path that yields the self-token id. A segment with a role gets
    that role's tag id (`condpt.layout.condition_ids`) inserted *by id* before its tokens; EOS follows each
    document, so each document after the first reads as a prompt does (`condpt.layout.prompt_ids`); the
    stream is concatenated and cut into `block_size` blocks, the tail shorter than a block dropped (as HF
    `group_texts`).
    A block that starts inside a tagged segment begins with that segment's tag again (label -100), so every
    block shows the condition it was trained under. With `insert_tags=False` no tag id is inserted, but
    `tag_index` still records the roles (used for the held-out set: the same tokens for every arm).
    `position_ids` restart at 0 at the start of each block and at each EOS, so the EOS that closes one
    document opens the next exactly as a prompt `[eos, tag, text]` does at generation and evaluation; given
    to the model they keep attention inside a document (see `DataConfig.document_masking`).
    Pure over the batch, for `datasets.map(batched=True)`: encode, stream, cut.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; packing needs one between documents")
    rows = batch["segments"]
    trusted = batch.get("trusted") or [False] * len(rows)
    encoded = _encode_segments(rows, trusted, tokenizer, manifest)
    stream = _document_stream(rows, encoded, manifest, eos, loss_on_tags=loss_on_tags, insert_tags=insert_tags)
    return _cut_blocks(stream, manifest, eos, block_size, insert_tags=insert_tags)


def _encode_segments(rows: list[list[dict]], trusted: list[bool], tokenizer: Any,
                     manifest: Manifest) -> list[list[list[int]]]:
    """Each row's segments as token ids, from one batched encoder call per trust level over the whole batch:
    untrusted text through `encode_text`, trusted rows (self-reference stories) through `encode_curated`."""
    plain_texts: list[str] = []
    story_texts: list[str] = []
    for segments, is_trusted in zip(rows, trusted):
        (story_texts if is_trusted else plain_texts).extend(s["text"] for s in segments)
    plain_ids = iter(encode_text(tokenizer, manifest, plain_texts))
    story_ids = iter(encode_curated(tokenizer, manifest, story_texts))
    return [[next(story_ids if is_trusted else plain_ids) for _ in segments]
            for segments, is_trusted in zip(rows, trusted)]


class _Stream(NamedTuple):
    """A batch's documents end to end: token ids, labels, per-token role index (-1 untagged), and the positions
    where an inserted tag starts."""

    ids: list[int]
    labels: list[int]
    tag_index: list[int]
    tag_at: set[int]


def _document_stream(rows: list[list[dict]], encoded: list[list[list[int]]], manifest: Manifest, eos: int, *,
                     loss_on_tags: bool, insert_tags: bool) -> _Stream:
    """The documents concatenated: each tagged segment preceded by its tag id (unless `insert_tags` is off),
    EOS after each non-empty document, every token indexed by the role in effect."""
    roles = tag_roles(manifest)
    role_index = {r: i for i, r in enumerate(roles)}
    ids: list[int] = []
    labels: list[int] = []
    tix: list[int] = []
    tag_at: set[int] = set()
    for segments, segment_ids in zip(rows, encoded):
        start = len(ids)
        index = -1
        for seg, seg_ids in zip(segments, segment_ids):
            if not seg_ids:
                continue  # an empty segment gets no tag (an empty document adds nothing, not even EOS)
            role = seg["role"]
            if role is None:
                index = -1
            else:
                if role not in role_index:
                    raise ValueError(f"role {role!r} has no control token in the manifest (roles: {roles})")
                index = role_index[role]
                if insert_tags:
                    tag = condition_ids(manifest, role)
                    tag_at.add(len(ids))
                    ids.extend(tag)
                    labels.extend(tag if loss_on_tags else [-100] * len(tag))
                    tix.extend([index] * len(tag))
            ids.extend(seg_ids)
            labels.extend(seg_ids)
            tix.extend([index] * len(seg_ids))
        if len(ids) > start:
            ids.append(eos)
            labels.append(eos)
            tix.append(index)  # EOS closes the document under the role in effect
    return _Stream(ids, labels, tix, tag_at)


def _cut_blocks(stream: _Stream, manifest: Manifest, eos: int, block_size: int, *,
                insert_tags: bool) -> dict[str, list]:
    """The stream cut into `block_size` blocks (the shorter tail dropped); a block that starts inside a tagged
    segment carries that segment's tag first (label -100)."""
    roles = tag_roles(manifest)
    ids, labels, tix, tag_at = stream
    out: dict[str, list] = {"input_ids": [], "labels": [], "tag_index": [], "position_ids": []}
    pos, n = 0, len(ids)
    while True:
        index = tix[pos] if pos < n else -1
        inside = insert_tags and index >= 0 and pos not in tag_at and ids[pos] != eos
        carry = condition_ids(manifest, roles[index]) if inside else []
        take = block_size - len(carry)
        if pos + take > n:
            break
        out["input_ids"].append([*carry, *ids[pos : pos + take]])
        out["labels"].append([-100] * len(carry) + labels[pos : pos + take])
        out["tag_index"].append([index] * len(carry) + tix[pos : pos + take])
        out["position_ids"].append(document_positions(out["input_ids"][-1], eos))
        pos += take
    return out


def document_positions(block: list[int], eos: int) -> list[int]:
    """Position ids that restart at the block start and at every EOS (the EOS opens the next document)."""
    positions, p = [], 0
    for i, tok in enumerate(block):
        p = 0 if i == 0 or tok == eos else p + 1
        positions.append(p)
    return positions


def expand_repeats(batch: dict[str, list], *, weight: float, seed: int) -> dict[str, list]:
    """Each training row `repeat × weight` times (fractional counts by deterministic stochastic rounding on
    the row id and `seed`): upweighting and the source mixture in one place."""
    out: dict[str, list] = {k: [] for k in batch}
    for i, doc_id in enumerate(batch["id"]):
        times = stochastic_round(batch["repeat"][i] * weight, unit_hash("mixture", seed, doc_id))
        for k in batch:
            out[k].extend([batch[k][i]] * times)
    return out


# ----------------------------------------------------------------------------------------- sources

_HELDOUT_SALT = "heldout"  # fixed: the held-out documents never depend on the policy, arm or seed
_DOC_COLUMNS = ("id", "text", "tag", "score", "spans", "source")
DOC_FEATURES = tagged_features(_DOC_COLUMNS)  # the written schema (condpt.tagged), not a copy of it
# Training rows (the "Policy output" contract), typed so that all-null roles still concatenate.
TRAIN_FEATURES = datasets.Features({
    "id": datasets.Value("string"), "source": datasets.Value("string"), "tag": datasets.Value("string"),
    "segments": datasets.List({"text": datasets.Value("string"), "role": datasets.Value("string")}),
    "repeat": datasets.Value("int64"), "trusted": datasets.Value("bool"),
})


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Whether a document is held out (by a hash of its id alone: the same for every arm and seed)."""
    return unit_hash(_HELDOUT_SALT, doc_id) < fraction


_SOURCE_FORMATS = (("parquet", (".parquet",)), ("json", (".jsonl", ".json", ".jsonl.gz", ".json.gz")))


def _format_of(name: str) -> str | None:
    return next((fmt for fmt, suffixes in _SOURCE_FORMATS if name.lower().endswith(suffixes)), None)


def _source_files(path: Path) -> tuple[str, list[str]]:
    if path.is_dir():
        root = path / "data" if (path / "data").is_dir() or (path / "run.json").is_file() else path
        if not root.is_dir():
            raise ValueError(f"{path}: a `condpt tag` output without data/: it wrote no document (all set aside or "
                             "quarantined; see its report.json)")
        by_format: dict[str, list[str]] = {}
        unread = []  # refused, never skipped: a file a source leaves out is training data lost without a word
        for p in sorted(root.iterdir()):
            fmt = _format_of(p.name)
            if fmt is not None and not p.is_file() and not p.name.startswith((".", "_")):
                raise ValueError(f"{p}: not a file ({'a directory' if p.is_dir() else 'a broken link'})")
            if fmt is not None:
                by_format.setdefault(fmt, []).append(str(p))
            elif not p.name.startswith((".", "_")):  # .DS_Store, _SUCCESS
                unread.append(p.name)
        if unread:
            raise ValueError(f"{root}: holds {', '.join(unread[:5])}, which a data source cannot read (.parquet, "
                             ".jsonl or .json, optionally .gz); move them out")
        if len(by_format) > 1:
            raise ValueError(f"{root}: mixes Parquet ({by_format['parquet'][0]}) and JSONL ({by_format['json'][0]}) "
                             "files; give each format a source of its own")
        if not by_format:
            raise ValueError(f"{path}: no .parquet or .jsonl files (expected a `condpt tag` output directory)")
        return next(iter(by_format.items()))
    if not path.exists():
        raise FileNotFoundError(f"{path}: data source not found")
    fmt = _format_of(path.name)
    if fmt is None:
        raise ValueError(f"{path}: unknown data source format (use a tagged parquet dir, .parquet or .jsonl)")
    return fmt, [str(path)]


def load_source(src: SourceConfig) -> datasets.Dataset:
    """A tagged source as a Dataset with columns id, text, tag, score, spans, source (nothing else, so no
    column of the data can mark text as trusted)."""
    fmt, files = _source_files(Path(src.path))
    ds = datasets.load_dataset(fmt, data_files=files, split="train")
    for field in src.columns:
        if field not in ds.column_names:
            raise ValueError(f"{src.path}: missing column {field!r} (columns: {ds.column_names})")
    if src.text_field != "text":
        ds = ds.remove_columns([c for c in ["text"] if c in ds.column_names]).rename_column(src.text_field, "text")
    if "source" not in ds.column_names:
        ds = ds.add_column("source", [str(src.path)] * len(ds))
    n = len(ds)
    if "score" not in ds.column_names:
        ds = ds.add_column("score", [None] * n)
    if "spans" not in ds.column_names:
        ds = ds.add_column("spans", [[] for _ in range(n)])
    return ds.select_columns(list(_DOC_COLUMNS)).cast(DOC_FEATURES)


# ----------------------------------------------------------------------------------------- datasets

class PreparedData(BaseModel):
    """Documents after the policy, before tokenisation, with the counts that must add up."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    train: Any  # datasets.Dataset of training rows (repeats expanded, shuffled)
    set_aside: Any  # datasets.Dataset of removed input rows (+ reason)
    heldout: Any  # datasets.Dataset of training rows (untagged segments; `tag` = stored tag)
    counts: dict[str, int]


def _policy_map(cfg: PolicyConfig, part: int, miss_cutoff: MissKey | None):
    def fn(batch: dict[str, list]) -> dict[str, list]:
        return apply_policy(batch, cfg, miss_cutoff)[part]

    return fn


def _heldout_rows(cfg: PolicyConfig):
    def fn(batch: dict[str, list]) -> dict[str, list]:
        # Only re-thresholding applies: the held-out tokens and roles are the same for every arm.
        roles = [retag(t, s, cfg, f"document {i!r}") for i, t, s in zip(batch["id"], batch["tag"], batch["score"])]
        return {
            "id": batch["id"], "source": batch["source"], "tag": roles,
            "segments": [[{"text": t, "role": r}] for t, r in zip(batch["text"], roles)],
            "repeat": [1] * len(roles), "trusted": [False] * len(roles),
        }

    return fn


def prepare_documents(data_cfg: DataConfig, *, seed: int, self_token: str = "𐀤", num_proc: int = 1) -> PreparedData:
    """Load every source, split off the held-out documents, apply the policy, add self-reference stories,
    expand repeats by upweight × source weight, and shuffle with `seed`.
    Counts: `read == heldout + train_docs + set_aside` per the input documents (stories are counted apart)."""
    cfg = data_cfg.policy
    np_ = num_proc if num_proc > 1 else None
    trains, asides, heldouts = [], [], []
    counts = {"read": 0, "heldout": 0, "train_docs": 0, "set_aside": 0, "stories": 0, "train_rows": 0}
    miss_cutoff = None
    if cfg.misses == "score" and cfg.coverage < 1:  # the lowest scores of the whole training corpus are missed
        miss_cutoff = score_miss_cutoff(
            (b for src in data_cfg.sources
             for b in load_source(src).select_columns(["id", "tag", "score"]).iter(batch_size=10_000)),
            cfg, exclude=lambda doc_id: is_heldout(doc_id, data_cfg.heldout_fraction))
    for src in data_cfg.sources:
        ds = load_source(src)
        counts["read"] += len(ds)
        # Each split reads the same documents twice (datasets gives one output per pass); a bar titled by its
        # step keeps the two passes from printing the same bare "Filter"/"Map" bar twice.
        name = Path(src.path).name
        held = ds.filter(lambda b: [is_heldout(str(i), data_cfg.heldout_fraction) for i in b["id"]],
                         batched=True, num_proc=np_, desc=f"{name}: held-out documents")
        rest = ds.filter(lambda b: [not is_heldout(str(i), data_cfg.heldout_fraction) for i in b["id"]],
                         batched=True, num_proc=np_, desc=f"{name}: training documents")
        heldouts.append(held.map(_heldout_rows(cfg), batched=True, remove_columns=held.column_names,
                                 features=TRAIN_FEATURES, num_proc=np_, desc=f"{name}: held-out rows"))
        kept = rest.map(_policy_map(cfg, 0, miss_cutoff), batched=True, remove_columns=rest.column_names,
                        features=TRAIN_FEATURES, num_proc=np_, desc=f"{name}: policy, kept")
        aside = rest.map(_policy_map(cfg, 1, miss_cutoff), batched=True, remove_columns=rest.column_names, num_proc=np_,
                         features=datasets.Features({**DOC_FEATURES, "reason": datasets.Value("string")}),
                         desc=f"{name}: policy, set aside")
        counts["heldout"] += len(held)
        counts["train_docs"] += len(kept)
        counts["set_aside"] += len(aside)
        trains.append(kept.map(expand_repeats, batched=True, fn_kwargs={"weight": src.weight, "seed": seed},
                               num_proc=np_, desc=f"{name}: repeats"))
        asides.append(aside)
    if cfg.selfref is not None:
        rows = story_rows(cfg.selfref, seed=cfg.seed, good_role=cfg.good_role, self_token=self_token)
        kept, aside = apply_policy(rows, cfg)
        if aside["id"]:
            raise AssertionError("a good-tagged story was removed by the policy")
        counts["stories"] = len(kept["id"])
        trains.append(datasets.Dataset.from_dict(expand_repeats(kept, weight=1.0, seed=seed), features=TRAIN_FEATURES))
    if counts["read"] != counts["heldout"] + counts["train_docs"] + counts["set_aside"]:
        raise AssertionError(f"document counts do not add up: {counts}")
    train = datasets.concatenate_datasets(trains).shuffle(seed=seed).flatten_indices()
    counts["train_rows"] = len(train)
    return PreparedData(
        train=train,
        set_aside=datasets.concatenate_datasets(asides),
        heldout=datasets.concatenate_datasets(heldouts),
        counts=counts,
    )


def pack_dataset(rows: datasets.Dataset, tokenizer: Any, manifest: Manifest, *, block_size: int,
                 loss_on_tags: bool = True, insert_tags: bool = True, num_proc: int = 1,
                 batch_size: int = 1000, desc: str = "packing blocks") -> datasets.Dataset:
    """`pack_batch` over a Dataset of training rows (`desc`: the progress bar's title)."""
    return rows.map(
        pack_batch, batched=True, batch_size=batch_size, remove_columns=rows.column_names,
        num_proc=num_proc if num_proc > 1 else None, desc=desc,
        fn_kwargs={"tokenizer": tokenizer, "manifest": manifest, "block_size": block_size,
                   "loss_on_tags": loss_on_tags, "insert_tags": insert_tags},
    )


def build_datasets(data_cfg: DataConfig, tokenizer: Any, manifest: Manifest, *, seed: int,
                   num_proc: int = 1) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, heldout) Datasets of `block_size` blocks with `input_ids`, `labels` (-100: no loss),
    `position_ids` (restarting per document) and `tag_index` (index into `tag_roles(manifest)`, -1 untagged). The held-out blocks carry no tag ids and
    are the same for every policy, arm and seed; their `tag_index` is each document's stored tag."""
    manifest.check(tokenizer)
    prepared = prepare_documents(data_cfg, seed=seed, self_token=manifest.self_token.string, num_proc=num_proc)
    log.info("data: %s", prepared.counts)
    kw = {"block_size": data_cfg.block_size, "loss_on_tags": data_cfg.loss_on_tags}
    # mode route: no tag ids in the text, but tag_index keeps each token's role for the route mask
    train = pack_dataset(prepared.train, tokenizer, manifest, num_proc=num_proc, desc="packing training blocks",
                         insert_tags=data_cfg.policy.mode != "route", **kw)
    # One process: where the stream is cut depends on batch boundaries, and the held-out blocks must be
    # identical for every arm whatever num_proc each ran with (the set is small).
    heldout = pack_dataset(prepared.heldout, tokenizer, manifest, insert_tags=False, desc="packing held-out blocks",
                           **kw)
    return train, heldout
