"""What a finished run leaves: OUTPUT_DIR/final (and final-unablated for mode route), a float32 `save_pretrained`
model whose generation config bans every control id and whose config.json records its tokenizer and manifest
(`tokenizer_ext.binding`), its tokenizer, manifest, run config and trainer state; and
whether this exact config already ran to the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from condpt.routing import router_of, save_routed, split_state_dict
from tokenizer_ext.binding import binding, write_binding

if TYPE_CHECKING:  # at run time the class comes with `cfg`: condpt.config imports this module (via inputs)
    from condpt.config import RunConfig


def protect_plain_generation(model, tokenizer, manifest) -> list[int]:
    """Ban, in the model's generation config (saved as generation_config.json), every control id (tags and the
    self token) and every embedding row the tokenizer has no token for (vocabulary padding). A plain
    `model.generate` then never emits a tag, which fed back as ids would set a condition nobody chose, nor the
    self token, which only curated text may produce: a condition is set only on purpose, by its id in the
    prompt. (`condpt.generate` bans the tags and padding rows itself and lets the self token through.)"""
    from condpt.generate import banned_ids

    banned = sorted(set(banned_ids(manifest, tokenizer, model.config.vocab_size)) | set(manifest.control_ids))
    model.generation_config.suppress_tokens = banned
    return banned


def _retie(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """`state` with every name of a parameter the model shares (tied embeddings) pointing at one tensor.
    `save_pretrained` stores a tied matrix once only when its names alias one tensor, and a gathered state dict
    holds a copy per name: ZeRO-2's (accelerate clones every tensor), the float32 cast of ZeRO-3's 16-bit one."""
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in state:
            state[name] = state[first.setdefault(id(p), name)]
    return state


def export(accelerator, model, tokenizer, manifest, cfg: RunConfig, out: Path, *, unablated: bool = True,
            ablated: bool = True) -> Path:
    """OUTPUT_DIR/final: `save_pretrained` with the gathered state dict (every rank must call
    `get_state_dict`: under ZeRO-3 it gathers the shards) + tokenizer + manifest. Weights are stored as
    float32 so the export loads and runs anywhere, including on CPUs without fast 16-bit math; the generation
    config bans every control id (`protect_plain_generation`). A routed model writes final-unablated/
    (`unablated`) and final/ (`ablated`): both at once, or final-unablated/ before a coherence fine-tune."""
    final = out / "final"
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        unwrapped = accelerator.unwrap_model(model)
        state = _retie(state, unwrapped)
        unwrapped.config.dtype = torch.float32
        protect_plain_generation(unwrapped, tokenizer, manifest)
        # Gradient routing: final/ is the ablated model (the routed units' tensors left out: the original
        # shapes); final-unablated/ adds them beside it. final/ goes last: its trainer_state.json marks the end.
        state, routed = split_state_dict(state)
        router = router_of(unwrapped)
        directories = ([out / "final-unablated"] if router is not None and unablated else []) + ([final] if ablated else [])
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
            # a copy each time: save_pretrained empties the dict it is given
            unwrapped.save_pretrained(str(directory), state_dict=dict(state), safe_serialization=True)
            if directory != final:
                save_routed(directory, routed, router)
            tokenizer.save_pretrained(str(directory))
            manifest.save(directory)
            write_binding(directory, binding(tokenizer, manifest))  # load_run refuses a tokenizer copied from elsewhere
            (directory / "run_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
            (directory / "trainer_state.json").write_text(
                json.dumps({"step": cfg.train.max_steps, "seed": cfg.seed}) + "\n")
    accelerator.wait_for_everyone()
    return final


def exported(final: Path) -> bool:
    """`final` was written to the end: its trainer_state.json, written last (config.json comes first, so a kill
    inside the export leaves one without the weights)."""
    return (final / "trainer_state.json").is_file()


def finished(out: Path, cfg: RunConfig) -> bool:
    """This exact config already ran to the end in `out` (rerunning the command is then a no-op). The stored
    config is read back through RunConfig, not compared as text: a setting added to condpt since (with its
    default) must not make every finished run look unfinished and train again."""
    import yaml
    from pydantic import ValidationError

    final = out / "final"
    try:
        state = json.loads((final / "trainer_state.json").read_text())
        done = type(cfg).model_validate(yaml.safe_load((final / "run_config.yaml").read_text()))
        return state["step"] == cfg.train.max_steps and done == cfg
    except (OSError, ValueError, KeyError, TypeError, ValidationError, yaml.YAMLError):
        return False
