"""The inputs a run config names, checked on disk when it is loaded, before any process starts.

`RunConfig` validates values; this module validates what they point at, so a missing data source, token
spec, resume checkpoint or model checkpoint, a model config transformers cannot build, or a tokenizer that
does not belong to the checkpoint is an error naming the field at `--dry-run`, not a traceback after the
processes are up (or, worse, a run that trains: a fresh BPE with a checkpoint gives `<|good|>` the id, and
so the embedding row, of an ordinary token of the checkpoint).

`input_problems` returns every problem as `(field, message)`; `condpt.config.load_config` reports them.

Reading every row of a source is the one check that costs a full read of the corpus; it is done once per
content: `checked_rows` skips it where a stamp (OUTPUT_DIR/cache/rows-<key>, keyed like the data cache by each
file's size and modification time) says these very files passed, and `condpt train` or the run's main process
writes that stamp (`condpt.data_cache.check_sources`), so the training processes never read the corpus twice.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from condpt.sequences import _source_files
from condpt.shipped import CONFIGS
from condpt.tagging.finished import unfinished
from condpt.yamlfile import YamlError, read_yaml

if TYPE_CHECKING:
    from condpt.config import RunConfig

Problem = tuple[str, str]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# Size fields of a transformers config (by their canonical names; `attribute_map` gives a model's own).
SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "max_position_embeddings")
# A checkpoint saved without its tokenizer: a tokenizer directory must fill its embedding up to this much
# padding (embeddings are padded to a multiple of 64 or 128); a larger gap means another vocabulary.
MAX_PADDING_ROWS = 128


def input_problems(cfg: RunConfig, rows: str = "check") -> list[Problem]:
    """Everything the run would read that is missing or does not fit, as (field, message) pairs. `rows`:
    `check` every row of the sources (unless stamped), `stamp` also record a pass, `later` leave the rows to
    the run's main process (`condpt.data_cache.check_sources`)."""
    problems = _data_problems(cfg) + _run_dir_problems(cfg)
    spec, spec_problems = _control_tokens(cfg)
    if cfg.model.checkpoint is not None:
        model_problems, hf = _checkpoint_problems(cfg.model.checkpoint)
    else:
        model_problems, hf = _model_config_problems(cfg.model.config)
    problems += spec_problems + model_problems
    if spec is not None:
        problems += _role_problems(cfg, spec)
    if not model_problems:
        problems += _route_problems(cfg, hf)
    if hf is not None:
        from condpt.layout import context_length

        positions = context_length(hf)
        if positions is not None and cfg.data.block_size > positions:
            where = "model.checkpoint" if cfg.model.checkpoint is not None else "model.config"
            problems.append(("data.block_size", f"{cfg.data.block_size} exceeds the {positions} positions of {where}"))
    if not spec_problems and not model_problems:
        embedding = getattr(hf.get_text_config(), "vocab_size", None) if cfg.model.checkpoint is not None else None
        problems += _tokenizer_problems(cfg, spec, embedding if isinstance(embedding, int) else None)
    if rows != "later":  # last: the one full read, stamped only when nothing else is wrong
        problems += checked_rows(cfg, problems, stamp=rows == "stamp")
    return problems


def _data_problems(cfg: RunConfig) -> list[Problem]:
    problems = []
    for i, src in enumerate(cfg.data.sources):
        try:
            fmt, files = _source_files(src.path)
            missing = unfinished(src.path) if src.path.is_dir() else None
            missing = missing or _missing_column(fmt, [Path(f) for f in files], src.columns)
        except (OSError, ValueError) as e:
            missing = str(e)
        if missing and src.path.resolve().is_relative_to(CONFIGS):  # `--config demo` as it ships
            missing += (f"; the shipped config names no data of its own (the demo and the grids give theirs): "
                        f"add data.sources.{i}.path=YOUR_TAGGED_DATA")
        if missing:
            problems.append((f"data.sources.{i}.path", missing))
    selfref = cfg.data.policy.selfref
    if selfref is not None and selfref.stories_path is not None:
        problems += [("data.policy.selfref.stories_path", msg) for msg in stories_problems(selfref)]
    return problems


def stories_problems(selfref) -> list[str]:
    """A curated stories file the run can read, with at least one story (read whole: it is small)."""
    from condpt.stories import read_stories

    path = selfref.stories_path
    if not path.exists():
        return [f"{path}: stories file not found"]
    if not path.is_file():
        return [f"{path}: not a file"]
    try:
        stories = read_stories(path, selfref.text_field)
    except (OSError, ValueError) as e:
        return [_one_line(e)]
    return [] if stories else [f"{path}: no stories (every line is blank)"]


def _missing_column(fmt: str, files: list[Path], columns: tuple[str, ...]) -> str | None:
    """The first file lacking one of `columns` (every parquet schema; each JSONL file's first record), or JSONL
    files without a single record among them (datasets' "corresponds to no data", a traceback at the first read)."""
    records = fmt == "parquet"
    for f in files:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                have = set(pq.read_schema(f).names)
            except Exception as e:  # noqa: BLE001 - pyarrow's errors for a file that is not parquet vary
                return f"{f}: not a readable parquet file ({_one_line(e)})"
        else:
            first = _first_json_record(f)
            if first is None:
                continue
            records, have = True, set(first)
        for column in columns:
            if column not in have:
                return f"{f}: missing column {column!r} (columns: {sorted(have)})"
    if not records:
        return f"{', '.join(map(str, files[:3]))}: no record (every line is blank)"
    return None


# Raised when `_row_problems` checks more: a pass stamped by an older check is not trusted.
ROW_CHECK_VERSION = 1


def checked_rows(cfg: RunConfig, found: list[Problem] = (), *, stamp: bool = False) -> list[Problem]:
    """`_row_problems` of the sources (less those in `found`), or [] at once where a stamp says these files
    passed this very check; with `stamp`, a pass is stamped when `found` is empty too (a config that cannot run
    leaves nothing in its output_dir). Only a pass is ever stamped: a problem (perhaps a permission fixed since,
    which leaves the modification time alone) is looked for again on the next run."""
    spec = _control_tokens(cfg)[0]  # None: the spec's own problem is reported, the rows checked without roles
    policy = cfg.data.policy  # a threshold or band re-tags from the scores: then a stored tag needs no role
    uses_tags = spec is not None and policy.threshold is None and policy.band is None
    roles = [t.role for t in spec.tags] if uses_tags else None
    path = rows_stamp(cfg, roles)  # the files' sizes and times before the read: an edit during it is not stamped
    if path is not None and path.is_file():
        return []
    problems = _row_problems(cfg, roles, list(found))
    if stamp and path is not None and not problems and not found:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:  # a cache: a directory that cannot take it only costs the next run a read
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("ok\n")
            tmp.replace(path)  # whole or absent: a stamp cut short by a full disk is never trusted
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return problems


def rows_stamp(cfg: RunConfig, roles: list[str] | None) -> Path | None:
    """Where a pass of `_row_problems` over the sources as they are now is stamped (None: a source cannot be
    listed, which the other checks report). Keyed by what the check reads: each source's settings, the roles,
    and each file's path, size and modification time (as the data cache sees a file, docs/recipe.md)."""
    h = hashlib.sha256(json.dumps([ROW_CHECK_VERSION, roles]).encode())
    try:
        for src in cfg.data.sources:
            h.update(src.model_dump_json().encode())
            for f in _source_files(src.path)[1]:
                st = os.stat(f)
                h.update(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    except (OSError, ValueError):
        return None
    return Path(cfg.output_dir) / "cache" / f"rows-{h.hexdigest()[:16]}"


def _row_problems(cfg: RunConfig, roles: list[str] | None, found: list[Problem]) -> list[Problem]:
    """The first row of each source (not already reported in `found`) that the data path would coerce, mistag
    or fail on late: datasets' JSON reader turns a list into its text and mixed-type tags into JSON strings, and
    a tag that is no role passes a filter as good text. JSONL: every line (read once, here); Parquet: the
    column types, and every tag and score."""
    problems = []
    for i, src in enumerate(cfg.data.sources):
        field = f"data.sources.{i}.path"
        if any(f == field for f, _ in found):
            continue
        try:
            fmt, files = _source_files(src.path)
            check = _parquet_row_problem if fmt == "parquet" else _jsonl_row_problem
            why = next(filter(None, (check(Path(f), src.text_field, roles) for f in files)), None)
        except (OSError, ValueError) as e:
            why = _one_line(e)
        if why:
            problems.append((field, why))
    return problems


def _jsonl_row_problem(path: Path, text_field: str, roles: list[str] | None) -> str | None:
    import gzip
    import json

    from condpt.tagged import row_problem

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8-sig" if n == 1 else "utf-8"))
            except UnicodeDecodeError as e:
                return f"{path}: line {n}: not UTF-8 (byte {e.start})"
            except (ValueError, RecursionError) as e:
                return f"{path}: line {n}: not JSON ({_one_line(e)})"
            if not isinstance(row, dict):
                return f"{path}: line {n}: not a JSON object (got {type(row).__name__})"
            why = row_problem(row, text_field, roles)
            if why:
                return f"{path}: line {n}: {why}"
    return None


def _parquet_row_problem(path: Path, text_field: str, roles: list[str] | None) -> str | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow.types as pt

    from condpt.corpus.ids import id_problem
    from condpt.tagged import score_problem, tag_problem

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    kinds = {text_field: ("strings", (pt.is_string, pt.is_large_string)),
             "id": ("strings or integers", (pt.is_string, pt.is_large_string, pt.is_integer)),
             "tag": ("strings", (pt.is_string, pt.is_large_string, pt.is_null)),
             "score": ("numbers", (pt.is_floating, pt.is_integer, pt.is_null))}
    for name, (want, oks) in kinds.items():
        if name in schema.names and not any(ok(schema.field(name).type) for ok in oks):
            return f"{path}: field {name!r} is {schema.field(name).type}, not {want}"
    cols = [c for c in (text_field, "id", "tag", "score") if c in schema.names]
    row = 0
    for batch in pf.iter_batches(batch_size=65536, columns=cols) if cols else ():
        checks = []
        if text_field in cols and batch.column(text_field).null_count:
            checks.append((text_field, lambda v: None if isinstance(v, str) else "null is not a string"))
        if "id" in cols and _any_blank_or_null(batch.column("id")):  # the one id rule, as for a JSONL row
            checks.append(("id", id_problem))
        if "tag" in cols and any(tag_problem(t, roles) for t in pc.unique(batch.column("tag")).to_pylist()):
            checks.append(("tag", lambda v: tag_problem(v, roles)))
        if "score" in cols and any(score_problem(s) for s in pc.unique(batch.column("score")).to_pylist()):
            checks.append(("score", score_problem))
        for name, problem in checks:  # only a batch holding a bad value is read row by row
            for k, value in enumerate(batch.column(name).to_pylist(), row + 1):
                if problem(value):
                    return f"{path}: row {k}: field {name!r}: {problem(value)}"
        row += batch.num_rows
    return None


def _any_blank_or_null(column) -> bool:
    """Whether an id column holds a null, or a string that is empty or only whitespace (Arrow strings are valid
    UTF-8: no lone surrogate to look for)."""
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if column.null_count:
        return True
    if not (pt.is_string(column.type) or pt.is_large_string(column.type)):
        return False
    return pc.any(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)).as_py() or False


def _first_json_record(path: Path) -> dict | None:
    import gzip
    import json

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:  # bytes: a bad byte on a later line is that line's problem (_row_problems)
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):  # e.g. a .json file holding one array: not JSON lines
                        raise ValueError(f"not a JSON object but {type(record).__name__}; a source holds JSON lines, "
                                         "one object a line")
                    return record
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: cannot read its first record ({_one_line(e)})") from None
    return None


def _role_problems(cfg: RunConfig, spec) -> list[Problem]:
    """Modes condition and route write the policy's roles into the rows (`tag_index`): each needs a tag of
    the control-token spec, or the run stops at its first document."""
    policy = cfg.data.policy
    if policy.mode not in ("condition", "route"):
        return []
    tags = [t.role for t in spec.tags]
    roles = {"data.policy.good_role": policy.good_role, "data.policy.bad_role": policy.bad_role}
    if policy.band is not None and policy.band.uncertain_role is not None:
        roles["data.policy.band.uncertain_role"] = policy.band.uncertain_role
    return [(field, f"{role!r} has no control token (the tags: {', '.join(tags)}; tokenizer.control_tokens)")
            for field, role in roles.items() if role not in tags]


def _route_problems(cfg: RunConfig, hf) -> list[Problem]:
    """`route.layers` names blocks the model has (each once, counting negatives from the end)."""
    route = cfg.data.policy.route
    if route is None or route.layers is None:
        return []
    if hf is not None:
        n_blocks = getattr(hf.get_text_config(), "num_hidden_layers", None)
    else:  # a tiny spec, or an HF config dict transformers refused (reported by _model_config_problems)
        tiny = cfg.model.tiny_spec()
        n_blocks = tiny.n_layer if tiny is not None else None
    if not isinstance(n_blocks, int):
        return []
    from condpt.routing import resolve_layers

    try:
        resolve_layers(route.layers, n_blocks)
    except ValueError as e:
        return [("data.policy.route.layers", str(e).removeprefix("data.policy.route.layers: "))]
    return []


def _overlap_problems(cfg: RunConfig) -> list[Problem]:
    """An output_dir that is (or is inside) a source directory or model.checkpoint: the run's metrics.jsonl,
    cache/ and checkpoints/ would land among the files it reads; a model.checkpoint in the final/ (or
    final-unablated/) that the run's export replaces."""
    out = cfg.output_dir.resolve()
    inputs = [(f"data.sources.{i}.path", src.path) for i, src in enumerate(cfg.data.sources) if src.path.is_dir()]
    ckpt = cfg.model.checkpoint
    if ckpt is not None:
        inputs.append(("model.checkpoint", ckpt))
    problems = []
    for field, path in inputs:
        if out.is_relative_to(path.resolve()):
            why = f"inside {field} ({path}): the run would write among the files it reads"
            problems.append(("output_dir", f"{cfg.output_dir}: {why}; use a directory of its own"))
    if ckpt is not None and any(ckpt.resolve().is_relative_to(out / name) for name in ("final", "final-unablated")):
        why = f"model.checkpoint ({ckpt}) is the export this run replaces"
        problems.append(("output_dir", f"{cfg.output_dir}: {why}; continue it in another output_dir"))
    return problems


def _run_dir_problems(cfg: RunConfig) -> list[Problem]:
    import os

    problems = []
    out = cfg.output_dir
    existing = next((p for p in [out, *out.absolute().parents] if p.exists() or p.is_symlink()), None)
    if out.exists() and not out.is_dir():
        problems.append(("output_dir", f"{out}: exists and is not a directory"))
    elif existing is not None and not existing.exists():
        problems.append(("output_dir", f"{out}: {existing} is a broken link"))
    elif existing is not None and not existing.is_dir():
        problems.append(("output_dir", f"{out}: {existing} is a file, not a directory"))
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problems.append(("output_dir", f"{out}: {existing} is not writable"))
    problems += _overlap_problems(cfg)
    known = _trackers()
    for i, name in enumerate(cfg.train.report_to):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (accelerate's: {', '.join(known)})"
            problems.append((f"train.report_to.{i}", f"{name!r} is not an accelerate tracker{hint}"))
    from condpt.checkpoints import not_a_checkpoint, resume_mismatch, resume_point

    why = not_a_checkpoint(Path(cfg.train.resume)) if cfg.train.resume not in ("auto", "never") else None
    if why:
        problems.append(("train.resume", why))
    if not problems:
        from condpt.export import finished

        ckpt = resume_point(cfg.train.resume, out)  # auto: a finished run of this config is a no-op, not a resume
        why = None if ckpt is None or finished(out, cfg) else resume_mismatch(cfg, ckpt)
        if why:
            auto = " (auto: the newest checkpoint in output_dir)" if cfg.train.resume == "auto" else ""
            problems.append(("train.resume", f"{why}{auto}"))
    return problems


def _control_tokens(cfg: RunConfig):
    from tokenizer_ext import ControlTokens

    path = cfg.tokenizer.control_tokens
    if path is None:
        return ControlTokens(), []
    try:
        data = read_yaml(path, "token spec file")
        return ControlTokens.model_validate(data or {}), []
    except YamlError as e:
        return None, [("tokenizer.control_tokens", str(e))]
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg'].removeprefix('Value error, ')}"
                         for err in e.errors())
        return None, [("tokenizer.control_tokens", f"{path}: {msgs}")]


def _trackers() -> list[str]:
    from accelerate.utils import LoggerType

    return [t.value for t in LoggerType]


# ------------------------------------------------------------------------------------------------ model

def _causal_lm_types() -> dict[str, str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _not_causal(model_type: str) -> str:
    close = difflib.get_close_matches(model_type, list(_causal_lm_types()), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (e.g. gpt2, llama, gpt_neox, qwen2)"
    return f"{model_type!r} is not a causal LM type of transformers{hint}"


def _one_line(e: Exception) -> str:
    return " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())[:300]


def _model_config_problems(spec: dict[str, Any] | None) -> tuple[list[Problem], Any]:
    """A Hugging Face `model.config` dict transformers can build (tiny specs are `TinySpec`'s job), and the
    config it builds (None if it cannot)."""
    if spec is None or "model_type" not in spec:
        return [], None
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    spec = dict(spec)
    model_type = spec.pop("model_type")
    if model_type not in _causal_lm_types():
        return [("model.config.model_type", _not_causal(model_type))], None
    config_class = CONFIG_MAPPING[model_type]
    known = sorted(set(config_class().to_dict()) | set(config_class.attribute_map))
    problems = []
    for key in spec:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((f"model.config.{key}", f"not a field of {config_class.__name__}{hint}"))
    if problems:
        return problems, None
    try:
        hf = AutoConfig.for_model(model_type, **spec)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds (ValueError, TypeError, dataclass errors)
        return [("model.config", f"transformers cannot build this {model_type} config: {_one_line(e)}")], None
    own = hf.attribute_map
    for name in SIZE_FIELDS:
        value = getattr(hf, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append((f"model.config.{own.get(name, name)}", f"must be a positive integer (got {value!r})"))
    hidden, heads = getattr(hf, "hidden_size", None), getattr(hf, "num_attention_heads", None)
    if not problems and isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        names = own.get("hidden_size", "hidden_size"), own.get("num_attention_heads", "num_attention_heads")
        problems.append(("model.config", f"{names[0]} ({hidden}) must be a multiple of {names[1]} ({heads})"))
    if problems:
        return problems, None
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):  # builds every module, allocates nothing: any size, in a second or two
            AutoModelForCausalLM.from_config(hf)
    except Exception as e:  # noqa: BLE001 - whatever the model's constructor raises (negative dims, unknown act)
        return [("model.config", f"transformers cannot build a {model_type} model from it: {_one_line(e)}")], None
    return [], hf


def _is_gguf(path: Path) -> bool:
    """A llama.cpp file (by its magic): a checkpoint people have at hand, but not one transformers trains."""
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _checkpoint_problems(ckpt: Path) -> tuple[list[Problem], Any]:
    """A save_pretrained causal LM directory, and its config (None if it is not one)."""
    if not ckpt.is_dir():
        why = "not found" if not ckpt.exists() else "a GGUF file" if _is_gguf(ckpt) else "not a directory"
        return [("model.checkpoint", f"{ckpt}: {why} (expected a save_pretrained directory)")], None
    if not (ckpt / "config.json").is_file():
        ggufs = sorted(p.name for p in ckpt.glob("*.gguf"))
        held = f"; it holds GGUF ({', '.join(ggufs[:3])}), which condpt does not read" if ggufs else ""
        return [("model.checkpoint", f"{ckpt}: no config.json (expected a save_pretrained directory){held}")], None
    if not any((ckpt / name).is_file() for name in WEIGHT_FILES):
        return [("model.checkpoint", f"{ckpt}: no weights ({', '.join(WEIGHT_FILES)})")], None
    from tokenizer_ext.stream import read_header, shard_names

    try:  # headers only (add-tokens' reader): a garbled or truncated safetensors file is named here
        for name in shard_names(ckpt) or []:
            if not (ckpt / name).is_file():
                return [("model.checkpoint", f"{ckpt / name}: listed in the weight index but missing")], None
            read_header(ckpt / name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [("model.checkpoint", f"{ckpt}: unreadable weights: {_one_line(e)}")], None
    from transformers import AutoConfig

    try:
        hf = AutoConfig.from_pretrained(str(ckpt))
    except Exception as e:  # noqa: BLE001 - a config.json transformers cannot read: JSON, unknown model_type, ...
        return [("model.checkpoint", f"{ckpt}/config.json: {_one_line(e)}")], None
    if hf.model_type not in _causal_lm_types():
        return [("model.checkpoint", f"{ckpt}: {_not_causal(hf.model_type)}")], None
    return [], hf


# -------------------------------------------------------------------------------------------- tokenizer

def _load_tokenizer(directory: Path):
    """The tokenizer saved in `directory`, or None when it holds no tokenizer files."""
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _tokenizer_problems(cfg: RunConfig, spec, rows: int | None) -> list[Problem]:
    """The tokenizer loads, takes the control tokens, and (with a checkpoint) is the checkpoint's own."""
    src, ckpt = cfg.tokenizer.source, cfg.model.checkpoint
    if src == "train-bpe":
        return []
    if src == "gpt2-bpe":
        from condpt.tiny import gpt2_tokenizer

        try:
            tok = gpt2_tokenizer()
        except (RuntimeError, OSError) as e:
            return [("tokenizer.source", f"gpt2-bpe: {e}")]
    else:
        directory = ckpt if src == "checkpoint" else Path(src)
        if not directory.is_dir():
            what = "not a directory" if directory.exists() else "not found"
            return [("tokenizer.source", f"{src}: {what} (use checkpoint, gpt2-bpe, train-bpe or a tokenizer directory)")]
        try:
            tok = _load_tokenizer(directory)
        except Exception as e:  # noqa: BLE001 - transformers' errors for a broken tokenizer directory vary
            return [("tokenizer.source", f"{directory}: cannot load the tokenizer: {_one_line(e)}")]
    if tok is None:
        if src == "checkpoint":
            return [("tokenizer.source", (f"model.checkpoint {ckpt} has no tokenizer; set tokenizer.source to the "
                                          "directory of the tokenizer it was trained with"))]
        return [("tokenizer.source", f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")]
    from tokenizer_ext import ControlTokenError, add_control_tokens

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re-registering an added token: train.py warns when it does it
            manifest = add_control_tokens(tok, spec)
    except ControlTokenError as e:
        return [("tokenizer.source", f"{src}: {e}")]
    if ckpt is None or rows is None:
        return []
    reference = None
    if src != "checkpoint":
        try:
            reference = _load_tokenizer(ckpt)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint tokenizer: fall back to the embedding check
            reference = None
    return [("tokenizer.source", msg) for msg in checkpoint_fit(tok, manifest, rows, reference, str(src), ckpt)]


def checkpoint_fit(tok, manifest, rows: int, reference, src: str, ckpt: Path) -> list[str]:
    """Why `tok` (control tokens added, `manifest`) cannot train the checkpoint `ckpt` of `rows` embedding
    rows, given the checkpoint's own tokenizer `reference` (None if it has none); [] if it can.

    Every ordinary token must keep the id (so the embedding row) it had in the checkpoint, and no control
    token may take an id that is an ordinary token of the checkpoint: it would start from that token's
    trained row and plain text of the checkpoint's data would be read as the condition.
    """
    vocab = tok.get_vocab()
    controls = {entry.string: entry.id for entry in [*manifest.tags.values(), manifest.self_token]}
    ordinary = [i for s, i in vocab.items() if s not in controls]
    n_ordinary = max(ordinary) + 1 if ordinary else 0
    problems = []
    if n_ordinary > rows:
        problems.append(f"{src} has ordinary ids up to {n_ordinary - 1}, but model.checkpoint ({ckpt}) has only "
                        f"{rows} embedding rows")
    if reference is not None:
        ref_vocab = reference.get_vocab()
        differ = [(s, i, vocab.get(s)) for s, i in ref_vocab.items() if vocab.get(s) != i]
        if differ:
            s, i, j = differ[0]
            here = "absent here" if j is None else f"{j} here"
            return [*problems, (
                f"{src} does not match model.checkpoint's tokenizer ({ckpt}): {len(differ)} of its {len(ref_vocab)} "
                f"tokens differ (e.g. {s!r}: id {i} there, {here}); use tokenizer.source: checkpoint "
                "or a tokenizer directory saved from it")]
        ref_ids = set(ref_vocab.values())
        special = {i for i, t in reference.added_tokens_decoder.items() if t.special}
        for s, i in controls.items():
            if i in ref_ids and i not in special:
                problems.append(f"{s!r} is id {i}, an ordinary token of model.checkpoint's tokenizer ({ckpt})")
        return problems
    for s, i in controls.items():
        if i < rows and rows - n_ordinary >= MAX_PADDING_ROWS:
            problems.append(
                f"{s!r} would be id {i}, an ordinary row of model.checkpoint's {rows}-row embedding ({ckpt}): {src} "
                f"has {n_ordinary} ordinary ids, so it is not the checkpoint's vocabulary; save the checkpoint's "
                "tokenizer with it (tokenizer.source: checkpoint) or use that tokenizer's directory")
            break
    return problems
