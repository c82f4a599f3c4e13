"""Add the control tokens to an existing causal-LM checkpoint: tokenizer, embeddings, output head, manifest.

New rows start at the mean of the old rows (Hewitt 2021): a new token's logit is then the mean of the old logits,
which bounds KL(old || new) on ordinary text by log(1 + k / n) for k new rows and n old ones. `init="text"` starts
each tag at the mean embedding of its description instead (e.g. `<|good|>` from " good").

`resize_model_for_tokens` works on a model in memory, including one whose parameters DeepSpeed ZeRO-3 has
partitioned (their `.shape` reads 0 there, transformers#26112): sizes come from `ds_shape`, and rows are read and
written inside `deepspeed.zero.GatheredParameters`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import torch

from tokenizer_ext import pages, stream
from tokenizer_ext.binding import binding, write_binding
from tokenizer_ext.extend import add_control_tokens, backend_of
from tokenizer_ext.procs import pid_alive
from tokenizer_ext.sample_text import SAMPLE_TEXT
from tokenizer_ext.spec import ControlTokenError, ControlTokens, Manifest
from tokenizer_ext.stream import RowReader
from tokenizer_ext.untrusted import encode_untrusted

Init = Literal["mean", "text"]
REPORT_NAME = "add_tokens_report.json"
TARGET_MEAN_KL = 1e-3


class CheckpointError(ValueError):
    """Bad input to add-tokens: missing or unsuitable checkpoint, output directory in the way, bad options."""


# ---------------------------------------------------------------------------------------------- in-memory resize
def _rows(param: torch.Tensor) -> int:
    """Rows of a (possibly ZeRO-3 partitioned) weight: a partitioned parameter's .shape is torch.Size([0])."""
    shape = getattr(param, "ds_shape", None)
    return int(shape[0]) if shape is not None else int(param.shape[0])


def _gathered(params: Sequence[torch.nn.Parameter], modifier_rank: int | None):
    """Full parameters inside the block when ZeRO-3 partitioned them; a no-op otherwise."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank)


def _param_reader(param: torch.Tensor) -> RowReader:
    return lambda a, b: param[a:b]


def _is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight is model.get_input_embeddings().weight


def _sources(tokenizer, manifest: Manifest, init: Init) -> dict[int, list[int] | None]:
    """id -> old ids whose mean initialises it (None = mean of all old rows)."""
    if init == "mean":
        return {i: None for i in manifest.control_ids}
    if init != "text":
        raise CheckpointError(f"unknown init {init!r}: use 'mean' or 'text'")
    spec = manifest.spec
    pairs = [(manifest.tag_id(t.role), t.description) for t in spec.tags]
    pairs.append((manifest.self_token.id, spec.self_description))
    out = {}
    for i, description in pairs:
        ids = encode_untrusted(tokenizer, [description])[0] if description.strip() else []
        if not ids:
            raise CheckpointError(
                f"--init text needs a non-empty description for {tokenizer.convert_ids_to_tokens(i)!r}"
            )
        out[i] = ids
    return out


def _row_mean(read: RowReader, rows: int, chunk: int = 1024) -> torch.Tensor:
    """Float32 mean of rows [0, rows) given by `read(a, b)`, a chunk at a time (a bf16 matrix is never copied whole
    to float32). The in-memory resize and the streamed rewrite both go through here, so their rows are identical."""
    total = None
    for start in range(0, rows, chunk):
        part = read(start, min(start + chunk, rows)).double().sum(dim=0)
        total = part if total is None else total + part
    return (total / rows).float()


@torch.no_grad()
def _initial_rows(read: RowReader, n_old: int, sources: dict[int, list[int] | None]):
    """(mean of the old rows, {id: its initial row}) computed from the old matrix."""
    mean = _row_mean(read, n_old)
    return mean, {i: mean if src is None else torch.cat([read(j, j + 1) for j in src]).float().mean(dim=0)
                  for i, src in sources.items()}


def _bias_rows(read: RowReader, n_old: int, ids) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """A head bias: every added and re-initialised entry is the mean of the old ones."""
    mean = read(0, n_old).float().mean()
    return mean, {i: mean for i in ids}


def _target_rows(n_old: int, n_tok: int, pad_to_multiple_of: int | None) -> int:
    if n_tok <= n_old:
        return n_old  # the ids already fit (spare rows, or tokens added before)
    mult = pad_to_multiple_of or 1
    return math.ceil(n_tok / mult) * mult


@torch.no_grad()
def _write_rows(weight: torch.Tensor, n_old: int, n_new: int, mean: torch.Tensor, rows: dict) -> None:
    weight[n_old:n_new] = mean.to(weight.dtype)
    for i, row in rows.items():
        weight[i] = row.to(weight.dtype)


@torch.no_grad()
def resize_model_for_tokens(
    model,
    tokenizer,
    manifest: Manifest,
    *,
    init: Init = "mean",
    pad_to_multiple_of: int | None = 64,
    new_ids: Sequence[int] | None = None,
) -> dict:
    """Grow `model`'s input embeddings and (untied) output head to cover `tokenizer` and initialise new rows.

    `new_ids` are the control ids whose rows must be (re)initialised; by default those at or beyond the old
    number of rows (pass them explicitly when the tokenizer had spare rows the ids landed in). Every added padding
    row gets the mean too. Works on a plain model and on one partitioned by ZeRO-3 (`zero.Init`); call it before
    `accelerator.prepare` / `deepspeed.initialize`, since an engine's optimizer would keep the old parameters.
    Returns the sizes before and after.
    """
    if type(model).__name__ in ("DeepSpeedEngine", "PeftModel") or hasattr(model, "optimizer") and hasattr(
        model, "module"
    ):
        raise CheckpointError("resize the model before accelerator.prepare/deepspeed.initialize, not the engine")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise CheckpointError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    emb = model.get_input_embeddings()
    n_old = _rows(emb.weight)
    tied = _is_tied(model)
    head = None if tied else model.get_output_embeddings()
    if head is not None and _rows(head.weight) != n_old:
        raise CheckpointError(f"output head has {_rows(head.weight)} rows but the embeddings {n_old}")
    n_new = _target_rows(n_old, len(tokenizer), pad_to_multiple_of)
    if new_ids is None:
        new_ids = [i for i in manifest.control_ids if i >= n_old]
    sources_all = _sources(tokenizer, manifest, init)
    sources = {i: sources_all[i] for i in new_ids}

    # Initial rows come from the old rows, read before the resize replaces the parameters (gathered under
    # ZeRO-3); transformers' resize copies the old rows itself, so no second copy of a matrix is ever held.
    old_params = [emb.weight] + ([head.weight] if head is not None else [])
    if head is not None and head.bias is not None:
        old_params.append(head.bias)
    with _gathered(old_params, modifier_rank=None):
        in_rows = _initial_rows(_param_reader(emb.weight), n_old, sources)
        out_rows = _initial_rows(_param_reader(head.weight), n_old, sources) if head is not None else None
        bias_rows = (_bias_rows(_param_reader(head.bias), n_old, sources)
                     if head is not None and head.bias is not None else None)

    if n_new != n_old:
        # transformers gathers ZeRO-3 parameters itself when deepspeed's HF integration is active
        model.resize_token_embeddings(n_new, mean_resizing=False)
        emb = model.get_input_embeddings()
        head = None if tied else model.get_output_embeddings()

    new_params = [emb.weight] + ([head.weight] if head is not None else [])
    if bias_rows is not None:
        new_params.append(head.bias)
    with _gathered(new_params, modifier_rank=0):
        _write_rows(emb.weight, n_old, n_new, *in_rows)
        if head is not None:
            _write_rows(head.weight, n_old, n_new, *out_rows)
            if bias_rows is not None:
                _write_rows(head.bias, n_old, n_new, *bias_rows)
    if tied:
        model.tie_weights()
    model.config.get_text_config().vocab_size = n_new
    return {"embedding_rows_before": n_old, "embedding_rows_after": n_new, "tied_embeddings": tied,
            "initialised_ids": sorted(set(sources) | set(range(n_old, n_new)))}


# ---------------------------------------------------------------------------------------------- KL report
def _trim_heap() -> None:
    """Hand freed heap back to the OS. glibc keeps up to twice its (adaptive, up to 32 MB) mmap threshold of free
    heap otherwise, so vocabulary-wide temporaries of one step would stay resident under the next one's peak."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _release_memory() -> None:
    gc.collect()
    _trim_heap()


def _kl_inputs(tokenizer, config, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    max_len = getattr(config.get_text_config(), "max_position_embeddings", None) or getattr(
        config, "n_positions", 1024)
    ids = [i for doc in encode_untrusted(tokenizer, texts) for i in doc][:max_tokens]
    if len(ids) < 2:
        raise CheckpointError("the KL sample text encodes to fewer than 2 tokens")
    seq = min(len(ids), max_len, 16)  # short rows: one row's logits at a time stay small
    rows = [ids[k:k + seq] for k in range(0, len(ids) - seq + 1, seq)]
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def _logits(model, inputs: torch.Tensor):
    """Float32 logits of each row of `inputs`, one row at a time (a generator: the caller decides what to keep)."""
    for row in inputs:
        yield model(input_ids=row[None]).logits[0].float()
        _trim_heap()


def _token_chunks(chunks, size: int = 8):
    """Each (tokens x vocabulary) chunk in slices of `size` tokens: the KL temporaries are vocabulary-wide, so
    their size is set here. Slices are copies, so a slice the consumer still holds does not keep its whole chunk
    alive while the next chunk is computed."""
    for chunk in chunks:
        pieces = [piece.clone() for piece in chunk.split(size)]
        del chunk
        while pieces:
            yield pieces.pop(0)


def _spill(chunks, f) -> list[tuple[int, ...]]:
    """Write float32 tensors to the open binary file `f`; returns their shapes, for `_unspill`."""
    shapes = []
    for t in chunks:
        f.write(t.contiguous().numpy().data)
        shapes.append(tuple(t.shape))
        del t  # not alive while the next one is computed
    return shapes


def _unspill(f, shapes):
    """The tensors `_spill` wrote, one at a time."""
    f.seek(0)
    for shape in shapes:
        buf = bytearray(4 * math.prod(shape))
        f.readinto(buf)
        yield torch.frombuffer(buf, dtype=torch.float32).view(shape)


@torch.no_grad()
def kl_report(old_logits, new_logits) -> dict:
    """KL(old || new) per token (nats) over the old vocabulary, and the largest change of an old-vocab logit.
    Both arguments are iterables of (tokens x vocabulary) chunks, so only one chunk of each is live at a time
    when they are generators (`_logits` split by `_token_chunks`)."""
    kls, max_change = [], 0.0
    for old, new in zip(old_logits, new_logits, strict=True):
        n_old = old.shape[-1]
        logp_old = torch.log_softmax(old, dim=-1)
        logp_new = torch.log_softmax(new, dim=-1)[:, :n_old]
        kls.append((logp_old.exp() * (logp_old - logp_new)).sum(-1).clamp_min(0))
        max_change = max(max_change, float((new[:, :n_old] - old).abs().max()))
        del old, new, logp_old, logp_new  # not alive while the next chunks are computed
    kl = torch.cat(kls)
    return {"tokens": int(kl.numel()), "mean": float(kl.mean()), "max": float(kl.max()),
            "max_abs_old_logit_change": max_change}


# ---------------------------------------------------------------------------------------------- checkpoint
def _check_model_dir(model_dir: Path):
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not model_dir.exists():
        raise CheckpointError(f"{model_dir}: model directory not found")
    if model_dir.suffix.lower() == ".gguf":
        raise CheckpointError(f"{model_dir}: a GGUF file, not a checkpoint directory; convert it first "
                              "(transformers: from_pretrained(its folder, gguf_file=its name), then save_pretrained)")
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: not a directory")
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: no config.json, not a Hugging Face checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001 - any unreadable config is the user's input error
        raise CheckpointError(f"{model_dir}/config.json: cannot be read as a model config: {e}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"{model_dir}/config.json: model_type {config.model_type!r} is not a causal language model "
            "(AutoModelForCausalLM cannot load it)"
        )
    return config


_BIN_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _check_weights(model_dir: Path) -> list[str] | None:
    """The checkpoint's safetensors files (None for a `pytorch_model.bin` one), each header checked against its
    file: a missing, truncated or garbled weights file is an error naming it before anything is written."""
    try:
        shards = stream.shard_names(model_dir)
        if shards is not None:
            stream.headers(model_dir, shards)
    except stream.StreamError as e:
        raise CheckpointError(str(e)) from None
    if shards is None and not any((model_dir / name).is_file() for name in _BIN_FILES):
        raise CheckpointError(f"{model_dir}: no weights file ({', '.join([stream.SINGLE, stream.INDEX, *_BIN_FILES])}"
                              " not found)")
    return shards


def _check_fits(model_dir: Path, config, tokenizer) -> None:
    """Every id of the tokenizer must have a row: a bigger tokenizer belongs to another model (its extra ids would
    index past the matrix, or silently get new mean rows here)."""
    rows = getattr(config.get_text_config(), "vocab_size", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise CheckpointError(
            f"{model_dir}: the tokenizer has {len(tokenizer)} tokens but the model's embedding matrix has {rows} "
            f"rows (config.json vocab_size): ids {rows}..{len(tokenizer) - 1} have no embedding; is the tokenizer "
            "this model's own?")


def _load_model(model_dir: Path):
    from transformers import AutoModelForCausalLM

    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto", output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - weights transformers cannot load are the user's input error
        raise CheckpointError(f"{model_dir}: the model cannot be loaded from its weights: "
                              f"{type(e).__name__}: {e}") from None
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:  # transformers would initialise them at random, with a warning only
        raise CheckpointError(f"{model_dir}: the weights files lack (or mis-shape) {missing[:8]}"
                              f"{' and more' if len(missing) > 8 else ''}: not a complete checkpoint")
    return model.eval()


# ---------------------------------------------------------------------------------------------- temporary dirs
def _temp_prefix(out_dir: Path, kind: str) -> str:
    """Prefix of this process's temporary directories beside OUT: a later run recognises them by OUT's name,
    this host and the pid, and removes them once that process is gone (a SIGKILL runs no cleanup)."""
    return f".{out_dir.name}.{kind}-{socket.gethostname()}-{os.getpid()}-"


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporary directories that runs for `out_dir` on this host left behind when they were killed
    (their pid is dead); returns them. Directories of live processes and names not ours are left alone."""
    own = re.compile(re.escape(f".{out_dir.name}.") + r"(?:tmp|old)-" + re.escape(socket.gethostname())
                     + r"-(\d+)-[^/]+")
    removed = []
    for path in out_dir.parent.iterdir():
        m = own.fullmatch(path.name)
        if m and path.is_dir() and not path.is_symlink() and not pid_alive(int(m[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    if not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        # AutoTokenizer would silently build an empty tokenizer from the model config alone.
        raise CheckpointError(f"{model_dir}: no tokenizer files (tokenizer.json / tokenizer_config.json) "
                              "beside the model; save the tokenizer with save_pretrained into this directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{model_dir}: no loadable tokenizer beside the model: {e}") from None
    try:
        backend_of(tokenizer)
    except ControlTokenError as e:
        raise CheckpointError(f"{model_dir}: {e}") from None
    return tokenizer


def _module_name(model, module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _model_names(meta, checkpoint_keys) -> dict[str, str]:
    """checkpoint key -> the model parameter `from_pretrained` loads it into (its renamings applied: e.g. GPT-NeoX
    stores `embed_out` for `lm_head`, and the base-model prefix may be missing). Keys that a converter (a real
    tensor operation: fusing, splitting) produces are left out: they cannot be grown row-wise in the file."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:  # a transformers without conversion mappings stores keys as named
        return {k: k for k in checkpoint_keys}
    conversions = get_model_conversion_mapping(meta)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    meta_state = meta.state_dict()
    out = {}
    for key in checkpoint_keys:
        name, converted = rename_source_key(key, renamings, converters, meta.base_model_prefix, meta_state)
        if converted is None:
            out[key] = name
    return out


def _vocab_tensors(model_dir: Path, config, shards: list[str]) -> dict[str, str] | None:
    """Checkpoint tensor name -> "weight"/"bias" for the input embedding, the output head (when stored) and its
    bias, found from the parameter names of the model built on the meta device (no weights read). None when a
    required one cannot be matched to the files; the caller then resizes in memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    emb, head = meta.get_input_embeddings(), meta.get_output_embeddings()
    n_old = emb.weight.shape[0]
    wanted = {f"{_module_name(meta, emb)}.weight": ("weight", True)}
    if head is not None:
        wanted[f"{_module_name(meta, head)}.weight"] = ("weight", not _is_tied(meta))
        if getattr(head, "bias", None) is not None:
            wanted[f"{_module_name(meta, head)}.bias"] = ("bias", True)
    found = stream.headers(model_dir, shards)
    names = _model_names(meta, found)
    emb_name = f"{_module_name(meta, emb)}.weight"
    for key, name in names.items():  # transformers would refuse it only after loading, naming no tensor
        if name == emb_name and found[key][1].shape[:1] != (n_old,):
            raise CheckpointError(f"{model_dir / 'config.json'}: vocab_size {n_old} but {key} in "
                                  f"{found[key][0]} has {found[key][1].shape[0]} rows; the config is not this "
                                  "checkpoint's")
    out = {key: wanted[name][0] for key, name in names.items()
           if name in wanted and found[key][1].shape[:1] == (n_old,)}
    required = {name for name, (_, needed) in wanted.items() if needed}
    if not required <= {names[k] for k in out}:
        return None
    return out


def _grow_streamed(model_dir: Path, tmp: Path, config, keys: dict[str, str], sources, n_tok: int,
                   pad_to_multiple_of: int | None, tied: bool) -> dict:
    """Write the grown checkpoint (weights and config) into `tmp` file to file; returns the sizes."""
    found = stream.headers(model_dir, stream.shard_names(model_dir))
    rows = {found[k][1].shape[0] for k in keys}
    if len(rows) != 1:
        raise CheckpointError(f"{model_dir}: the embedding and head tensors {sorted(keys)} differ in rows")
    n_old = rows.pop()
    n_new = _target_rows(n_old, n_tok, pad_to_multiple_of)

    def new_rows(kind):
        if kind == "bias":
            return lambda read, n: _bias_rows(read, n, sources)
        return lambda read, n: _initial_rows(read, n, sources)

    try:
        stream.grow_checkpoint(model_dir, tmp, n_new, {k: new_rows(kind) for k, kind in keys.items()})
    except stream.StreamError as e:
        raise CheckpointError(str(e)) from None
    config.get_text_config().vocab_size = n_new
    config.save_pretrained(tmp)
    if (model_dir / "generation_config.json").is_file():
        shutil.copyfile(model_dir / "generation_config.json", tmp / "generation_config.json")
    return {"embedding_rows_before": n_old, "embedding_rows_after": n_new, "tied_embeddings": tied,
            "initialised_ids": sorted(set(sources) | set(range(n_old, n_new)))}


def add_tokens_to_checkpoint(
    model_dir: str | Path,
    out_dir: str | Path,
    spec: ControlTokens | None = None,
    init: Init = "mean",
    pad_to_multiple_of: int | None = 64,
    overwrite: bool = False,
    kl_texts: Sequence[str] | None = None,
    kl_max_tokens: int = 128,
) -> dict:
    """Add the control tokens to a local causal-LM checkpoint (dtype kept): tokenizer, embeddings and output head
    grown and initialised, saved with `condpt_tokens.json` and `add_tokens_report.json` to `out_dir` (written to a
    temporary directory first, then renamed). Returns the report.

    A safetensors checkpoint is rewritten file to file, a chunk of rows at a time, and the model is in memory only
    to measure the logits before (from `model_dir`) and after (from the new files), never twice at once: the peak
    is about one checkpoint. Other checkpoints (`pytorch_model.bin`, or tensor names that do not match the model's
    modules) are resized in memory with `resize_model_for_tokens` and saved with `save_pretrained`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec = spec or ControlTokens()
    config = _check_request(model_dir, out_dir, init, pad_to_multiple_of, overwrite)
    remove_stale_temporaries(out_dir)
    shards = _check_weights(model_dir)
    keys = _vocab_tensors(model_dir, config, shards) if shards is not None else None  # config against weights
    tokenizer = _load_tokenizer(model_dir)
    _check_fits(model_dir, config, tokenizer)  # then the tokenizer against the config

    # Everything the tokenizer is needed for happens first, so that it is gone before a model is loaded.
    inputs = _kl_inputs(tokenizer, config, kl_texts or SAMPLE_TEXT, kl_max_tokens)
    added = _add_to_tokenizer(tokenizer, spec, init)
    record = binding(tokenizer, added.manifest)  # config.json's record of the tokenizer (tokenizer_ext.binding)

    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir, "tmp"), dir=out_dir.parent))
    # the old logits wait in an unnamed file, not in memory (26 MB for GPT-2's vocabulary and 128 tokens)
    with tempfile.TemporaryFile(dir=out_dir.parent) as spill:
        try:
            tokenizer.save_pretrained(tmp)
            if keys is not None:
                tokenizer = None  # the streamed rewrite needs it no more
                _release_memory()
            grown = _grow_and_compare(model_dir, tmp, config, shards, keys, added, inputs, spill, init=init,
                                      pad_to_multiple_of=pad_to_multiple_of, tokenizer=tokenizer)
            report = _report(model_dir, out_dir, config, spec, init, pad_to_multiple_of, added, grown,
                             streamed=keys is not None)
            _ban_in_generation_config(tmp, config, sorted({*added.manifest.control_ids, *range(
                added.len_after, grown["sizes"]["embedding_rows_after"])}))
            added.manifest.save(tmp)
            write_binding(tmp, record)
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            _replace_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return report


def _ban_in_generation_config(tmp: Path, config, banned: list[int]) -> None:
    """`suppress_tokens` in the saved generation config: the control ids and the padding rows, so a plain
    `model.generate` emits none of them and a condition is set only on purpose, by its id in the prompt."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(tmp)
    except OSError:  # the checkpoint had none
        gen = GenerationConfig.from_model_config(config)
    gen.suppress_tokens = sorted({*(gen.suppress_tokens or []), *banned})
    gen.save_pretrained(tmp)


def _check_request(model_dir: Path, out_dir: Path, init: str, pad_to_multiple_of: int | None, overwrite: bool):
    """Refuse, before anything is loaded, what add-tokens cannot do; the checkpoint's config."""
    if init not in ("mean", "text"):
        raise CheckpointError(f"unknown init {init!r}: use 'mean' or 'text'")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise CheckpointError(f"--pad-to-multiple-of must be >= 1, got {pad_to_multiple_of}")
    config = _check_model_dir(model_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise CheckpointError(f"{out_dir}: the output directory must differ from the model directory")
    if out_dir.resolve() in model_dir.resolve().parents:  # --overwrite would replace, and so delete, the input
        raise CheckpointError(f"{out_dir}: the model directory {model_dir} is inside the output directory, which "
                              "add-tokens replaces; choose another --out")
    if out_dir.exists() and not overwrite:
        raise CheckpointError(f"{out_dir}: output directory exists (pass --overwrite to replace it)")
    if not out_dir.parent.exists():
        raise CheckpointError(f"{out_dir.parent}: parent of the output directory does not exist")
    return config


class _Added(NamedTuple):
    """What adding the control tokens did to the tokenizer: the manifest, the ids it did not have before, the
    rows each new id starts from (`_sources`), and its length before and after."""

    manifest: Manifest
    new_ids: list[int]
    sources: dict[int, list[int] | None]
    len_before: int
    len_after: int


def _add_to_tokenizer(tokenizer, spec: ControlTokens, init: Init) -> _Added:
    len_before = len(tokenizer)
    known = set(tokenizer.get_vocab())
    manifest = add_control_tokens(tokenizer, spec)
    new_ids = [i for s, i in zip(spec.strings(), manifest.control_ids) if s not in known]
    sources = {i: src for i, src in _sources(tokenizer, manifest, init).items() if i in new_ids}
    return _Added(manifest, new_ids, sources, len_before, len(tokenizer))


def _grow_and_compare(model_dir: Path, tmp: Path, config, shards: list[str] | None, keys: dict[str, str] | None,
                      added: _Added, inputs: torch.Tensor, spill, *, init: Init, pad_to_multiple_of: int | None,
                      tokenizer) -> dict:
    """Write the grown weights and config into `tmp` and measure the change: the logits on `inputs` before (spilled
    to `spill`) and after, as `kl_report`. With `keys` (the checkpoint's vocabulary tensors) the files are rewritten
    file to file and the model is loaded only to measure, never twice at once; without, the model is resized in
    memory (`resize_model_for_tokens`, which needs `tokenizer`) and saved. Returns the sizes, the dtype, the
    parameter counts and the KL."""
    from transformers import AutoModelForCausalLM

    model = _load_model(model_dir)
    dtype = model.get_input_embeddings().weight.dtype
    tied = _is_tied(model)
    params_before = sum(p.numel() for p in model.parameters())
    # a module's pages leave the resident set once it ran (tokenizer_ext/pages.py)
    with pages.one_module_resident(model, [model_dir / name for name in shards or []]):
        shapes = _spill(_token_chunks(_logits(model, inputs)), spill)
    if keys is not None:
        del model  # unmaps the checkpoint
        _release_memory()
        sizes = _grow_streamed(model_dir, tmp, config, keys, added.sources, added.len_after, pad_to_multiple_of, tied)
        _release_memory()
        model = AutoModelForCausalLM.from_pretrained(str(tmp), dtype="auto").eval()
    else:
        sizes = resize_model_for_tokens(model, tokenizer, added.manifest, init=init,
                                        pad_to_multiple_of=pad_to_multiple_of, new_ids=added.new_ids)
        model.save_pretrained(tmp)
    # only the freshly loaded, never written model of the streamed path may drop its pages
    files = [tmp / name for name in shards] if keys is not None else []
    with pages.one_module_resident(model, files):
        kl = kl_report(_unspill(spill, shapes), _token_chunks(_logits(model, inputs)))
    params_after = sum(p.numel() for p in model.parameters())
    return {"dtype": dtype, "sizes": sizes, "params_before": params_before, "params_after": params_after, "kl": kl}


def _report(model_dir: Path, out_dir: Path, config, spec: ControlTokens, init: Init, pad_to_multiple_of: int | None,
            added: _Added, grown: dict, *, streamed: bool) -> dict:
    """add_tokens_report.json: what was added, how the checkpoint grew, and what it cost (KL on ordinary text)."""
    manifest, sizes, kl = added.manifest, grown["sizes"], grown["kl"]
    n_old = sizes["embedding_rows_before"]
    k = len(set(sizes["initialised_ids"]))
    report = {
        "model_dir": str(model_dir),
        "out_dir": str(out_dir),
        "model_type": config.model_type,
        "dtype": str(grown["dtype"]).removeprefix("torch."),
        "init": init,
        "rewrite": "streamed" if streamed else "in_memory",
        "tokens": {
            **{t.string: {"role": t.role, "id": manifest.tag_id(t.role)} for t in spec.tags},
            spec.self_token: {"role": "self", "id": manifest.self_token.id},
        },
        "control_ids": manifest.control_ids,
        "new_token_ids": added.new_ids,
        "tokenizer_len_before": added.len_before,
        "tokenizer_len_after": added.len_after,
        "pad_to_multiple_of": pad_to_multiple_of,
        **sizes,
        "params_before": grown["params_before"],
        "params_after": grown["params_after"],
        "kl_old_new": {**kl, "mean_init_bound": math.log1p(k / n_old) if init == "mean" else None},
        "target_mean_kl": TARGET_MEAN_KL,
        "kl_within_target": kl["mean"] <= TARGET_MEAN_KL,
    }
    report["initialised_ids"] = len(sizes["initialised_ids"])  # the count; the list can be long
    return report


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """`tmp` becomes `out_dir`; an existing `out_dir` is moved aside first and removed only after."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir, "old"), dir=out_dir.parent))
        out_dir.rename(old / "x")
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
