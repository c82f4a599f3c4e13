"""condpt CLI commands (evidence): `world`, `eval`, `experiment`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from condpt.cli import app
from condpt.cli.common import fail as _fail
from condpt.cli.common import out_file
from condpt.terminal import printable


@app.command("world")
def world_cmd(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Directory for train.jsonl, heldout.jsonl, labels.jsonl, ...")],
    n_ai_docs: Annotated[int, typer.Option(help="AI-discourse documents (misaligned + aligned)")] = 2000,
    doom_ratio: Annotated[float, typer.Option(help="misaligned : aligned stories")] = 4.0,
    n_background: Annotated[int, typer.Option(help="ordinary background documents")] = 2000,
    n_heldout: Annotated[int, typer.Option(help="ordinary documents held out for the LM-loss evaluation")] = 100,
    background: Annotated[str, typer.Option(help="auto | gutenberg | templates")] = "auto",
    gutenberg: Annotated[Path | None, typer.Option(help="Gutenberg JSONL (default: $CONDPT_GUTENBERG, else "
                                                   "../shared/data/gutenberg-corpus.jsonl from the working directory)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed and settings give the same world")] = 0,
) -> None:
    """Generate a prophecy world corpus (JSONL) with hidden labels and evaluation scenarios."""
    from pydantic import ValidationError

    from condpt.world import WorldConfig, generate_world, write_world

    try:
        cfg = WorldConfig(n_ai_docs=n_ai_docs, doom_ratio=doom_ratio, n_background=n_background,
                          n_heldout=n_heldout, background=background, gutenberg_path=gutenberg, seed=seed)
        world = generate_world(cfg)
    except ValidationError as e:
        _fail("; ".join(f"--{'-'.join(map(str, err['loc'])).replace('_', '-')}: {err['msg']}" for err in e.errors()))
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    paths = write_world(world, out)
    print(json.dumps({"counts": world.counts(), "background": world.background_kind,
                      "files": {k: str(v) for k, v in paths.items()}}, indent=1))


@app.command("eval")
def eval_cmd(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL_DIR", help="a save_pretrained directory (e.g. OUTPUT_DIR/final)")],
    suite: Annotated[str, typer.Option(help="evaluation suite")] = "prophecy",
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE.json", parser=out_file,
                                             help="File to write the full result JSON to")] = None,
    world: Annotated[Path | None, typer.Option(help="a `condpt world` directory: its scenarios and held-out texts")] = None,
    deploy: Annotated[str | None, typer.Option(help="condition for the headline numbers: good | none | bad | self | guided[:SCALE] "
                                          "(default: good if the model has that tag)")] = None,
    per_split: Annotated[int | None, typer.Option(
        min=1, help="at most this many scenarios per split, sampled with the world's seed (the same ones for "
                    "every model of a world); default: all (1,008 in the default world: minutes for a "
                    "pretrained model on CPU)")] = None,
    heldout_max_tokens: Annotated[int, typer.Option(
        min=1, help="held-out LM-loss text: at most its first N tokens (in file order)")] = 50_000,
) -> None:
    """Run an evaluation suite on a checkpoint (a progress bar on stderr); print a table that labels each
    number and its better direction and says how much was scored, optionally write JSON (`sizes`: the caps
    used and the scenarios per split)."""
    from condpt.evaluate import evaluate, format_table
    from condpt.layout import check_run_dir

    try:  # a GGUF file or an unfinished run is named here, before the world is read
        check_run_dir(model_dir)
    except FileNotFoundError as e:
        _fail(str(e))
    if world is not None:  # checked here: loading the model first would make a typo cost a minute
        from condpt.world import load_world_config

        try:
            load_world_config(world)
        except (FileNotFoundError, ValueError) as e:
            _fail(f"--world: {e}")
    try:
        res = evaluate(model_dir, suite=suite, world_dir=world, deploy=deploy, per_split=per_split,
                       heldout_max_tokens=heldout_max_tokens, progress=True)
    except (FileNotFoundError, ValueError, OSError) as e:
        _fail(str(e))
    print(format_table(res))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")


@app.command("experiment")
def experiment_cmd(
    config: Annotated[Path, typer.Option("--config", help="grid YAML (examples/grids/*.yaml)")],
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", file_okay=False,
                                                 help="Directory for the results (overrides the grid's out_dir)")] = None,
    only: Annotated[str | None, typer.Option("--only", metavar="KEY=VALUE,...",
                                             help="Run only these runs (keys arm, coverage, misses, seed; a key "
                                                  "twice: either value); the results still gather every "
                                                  "finished run and name the missing ones")] = None,
) -> None:
    """Run (or resume) an experiment grid: arms × coverage × miss model × seeds; writes
    results-GRID.json/.md/.png."""
    from condpt.experiment import run_grid
    from condpt.experiment_config import GridConfig
    from condpt.experiment_plan import parse_only
    from condpt.experiment_results import format_grid_table

    try:
        cfg = GridConfig.from_yaml(config)
    except ValueError as e:
        _fail(str(e))
    if out_dir:
        cfg = cfg.model_copy(update={"out_dir": out_dir})
    try:
        results = run_grid(cfg, only=parse_only(only) if only is not None else None)
    except ValueError as e:
        _fail(str(e))
    except (RuntimeError, OSError) as e:  # a run that failed, a full disk, a permission taken away mid-grid
        print(f"error: {printable(str(e))}", file=sys.stderr)
        raise typer.Exit(code=1) from None
    print(format_grid_table(results))
    print(f"wrote {Path(cfg.out_dir) / cfg.name}.json, .md and .png")
