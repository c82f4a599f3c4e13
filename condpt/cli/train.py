"""condpt CLI commands: `generate` (conditioned generation) and `train` (a shortcut to `accelerate launch`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from condpt.cli import app
from condpt.cli.common import fail as _fail
from condpt.shipped import shipped_names


@app.command("generate")
def generate_cmd(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL_DIR", help="a save_pretrained directory with condpt_tokens.json (OUTPUT_DIR/final)")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="prompt text (untrusted: control strings stay text)")],
    condition: Annotated[str, typer.Option("--condition", "-c", help="a tag role (good, bad, ...), none, or guided[:SCALE] (good, guided away from bad)")] = "good",
    system: Annotated[str | None, typer.Option("--system", help="trusted system text before the prompt; may use 𐀤")] = None,
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="number of samples")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="tokens to generate per sample")] = 64,
    seed: Annotated[int | None, typer.Option("--seed", help="sampling seed (reproducible output)")] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="sampling temperature (0: greedy)")] = 1.0,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="nucleus sampling: keep the smallest set of tokens with this much probability")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="sample among the k most likely tokens")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="greedy decoding instead of sampling")] = False,
) -> None:
    """Generate from MODEL_DIR conditioned on a tag, with every tag id banned from the output."""
    from transformers.utils import logging as hf_logging

    from condpt.generate import Generator
    from condpt.guidance import GUIDED, parse_guided
    from tokenizer_ext import ControlTokenError

    hf_logging.disable_progress_bar()

    try:
        gen = Generator.load(model_dir)
    except (FileNotFoundError, OSError, ControlTokenError, ValueError) as e:
        _fail(f"{model_dir}: cannot load model: {e}")
    try:
        guided = parse_guided(condition)
    except ValueError as e:
        _fail(f"--condition: {e}")
    if (GUIDED if guided else condition) not in gen.conditions:
        _fail(f"--condition {condition!r}: this model has {', '.join(gen.conditions)}")
    if greedy and n > 1:
        _fail("--greedy gives one answer; drop -n or --greedy")
    try:
        texts = gen.generate(prompt, condition=condition, system=system, n=n, max_new_tokens=max_new_tokens,
                             seed=seed, do_sample=not greedy and temperature > 0, temperature=temperature or 1.0,
                             top_p=top_p, top_k=top_k)
    except ValueError as e:  # settings this model cannot run (positions, seed, temperature)
        _fail(str(e))
    typer.echo(gen.echo(prompt, texts, condition=condition, system=system))  # never prompt + text as one string


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             options_metavar="[OPTIONS] [key=value ...]")
def train_cmd(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", help="run config YAML: a path or a shipped name "
                                                       f"({', '.join(shipped_names('run'))})")],
    accelerate_config: Annotated[Path | None, typer.Option(
        "--accelerate-config", help="accelerate config: a YAML path or a shipped name "
                                    f"({', '.join(shipped_names('accelerate'))})")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the resolved config and exit")] = False,
) -> None:
    """`accelerate launch [--config_file A] -m condpt.recipe --config C [key=value ...]`; extra
    arguments are config overrides."""
    from condpt.config import ConfigError, load_config
    from condpt.recipe import launch_command, run_config_path
    from condpt.shipped import config_path

    acc = None
    if accelerate_config is not None and not dry_run:
        try:
            acc = config_path(accelerate_config, "accelerate")
        except FileNotFoundError as e:
            _fail(f"--accelerate-config: {e}")
        if not acc.is_file():
            _fail(f"--accelerate-config {accelerate_config}: no such file")
    try:  # fail fast here, before any process starts; the one full read of the sources, stamped for the run
        config = run_config_path(config)  # (a dry run leaves that read to the recipe's own --dry-run)
        load_config(config, list(ctx.args), rows="later" if dry_run else "stamp")
    except (ConfigError, FileNotFoundError) as e:
        _fail(str(e))
    if dry_run:
        cmd = [sys.executable, "-m", "condpt.recipe", "--config", str(config), *ctx.args, "--dry-run"]
    else:
        cmd = launch_command(config, list(ctx.args), accelerate_config=acc)
    raise typer.Exit(code=subprocess.call(cmd, env=os.environ.copy()))
