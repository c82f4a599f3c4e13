"""Which checkpoint a run resumes from (`train.resume`), and whether it may: a checkpoint keeps the config it
was trained under (run_config.yaml, written before trainer_state.json marks it complete), and a run resumes
only a checkpoint of its own model, tokenizer, data, seed and batch shape. Anything else failed late with a
page of tensor shape mismatches, or (the same shapes, other token ids or data) trained on without a word."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time the class comes with `cfg`: condpt.config imports this module (via inputs)
    from condpt.config import RunConfig

# What a resumed run must share with its checkpoint; the rest (steps, logging, saving, the optimizer's settings,
# output_dir) may change between the two.
MUST_MATCH = ("seed", "model", "tokenizer", "data", "train.micro_batch_size", "train.grad_accum",
              "train.preprocess_num_proc")


class ResumeError(ValueError):
    """A checkpoint this run cannot resume, found as every rank loads it: one line, not a traceback per rank."""


def load_checkpoint(accelerator, ckpt: Path) -> None:
    """`accelerator.load_state(ckpt)`; a checkpoint of another model's shapes (one saved before checkpoints kept
    their config, so not refused at load: `resume_mismatch`) is a `ResumeError`, not a page of size mismatches."""
    try:
        accelerator.load_state(str(ckpt))
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise ResumeError(f"train.resume: {ckpt} holds a model of other shapes than this config's ({first}); use "
                          "train.resume=never or another output_dir to start over") from None


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (trainer_state.json is written only after every rank saved)."""
    done = [p.parent for p in (out / "checkpoints").glob("step_*/trainer_state.json")]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def resume_point(resume: str, out: Path) -> Path | None:
    """The checkpoint `train.resume` names: the newest complete one (auto), none (never), or a directory."""
    if resume == "auto":
        return latest_checkpoint(out)
    if resume == "never":
        return None
    ckpt = Path(resume)
    why = not_a_checkpoint(ckpt)
    if why:
        raise FileNotFoundError(f"train.resume: {why}")
    return ckpt


def not_a_checkpoint(path: Path) -> str | None:
    """Why `train.resume: PATH` is not a training checkpoint (saying what it is and what to use), or None."""
    if not path.exists():
        return f"{path}: not found (use auto, never or a checkpoint directory)"
    if (path / "config.json").is_file():  # save_state writes no config.json; save_pretrained (final/) does
        return (f"{path}: an exported model (save_pretrained), not a training checkpoint; to train it further use "
                f"model.checkpoint={path}")
    if not (path / "trainer_state.json").is_file():
        newest = latest_checkpoint(path)
        if newest is not None:
            return f"{path}: a run directory, not a checkpoint; its newest is {newest} (or run with output_dir={path})"
        return f"{path}: not a complete checkpoint (no trainer_state.json)"
    return None


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def resume_mismatch(cfg: RunConfig, ckpt: Path) -> str | None:
    """Why `cfg` cannot resume `ckpt` (the settings of `MUST_MATCH` that differ), or None. A checkpoint saved
    before checkpoints kept their config (no run_config.yaml) is not checked."""
    import yaml
    from pydantic import ValidationError

    stored = ckpt / "run_config.yaml"
    if not stored.is_file():
        return None
    try:
        then = type(cfg).model_validate(yaml.safe_load(stored.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError, yaml.YAMLError) as e:
        return f"{stored}: unreadable ({' '.join(str(e).split())[:200]})"
    old, new = then.model_dump(mode="json"), cfg.model_dump(mode="json")
    differ = []
    for name in MUST_MATCH:
        a, b = old, new
        for part in name.split("."):
            a, b = a.get(part), b.get(part)
        before, now = _flat(a, name), _flat(b, name)
        differ += [(key, before.get(key), now.get(key)) for key in sorted(before.keys() | now.keys())
                   if before.get(key) != now.get(key)]
    if not differ:
        return None
    shown = "; ".join(f"{key}: {a!r} there, {b!r} here" for key, a, b in differ[:3])
    more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
    return (f"{ckpt} was trained under another config ({shown}{more}); a run resumes only its own model, tokenizer, "
            "data, seed and batch shape: use train.resume=never or another output_dir to start over, or "
            "model.checkpoint=<a final/ directory> to continue that model under this config")
