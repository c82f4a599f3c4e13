"""condpt CLI commands (tokens): `condpt add-tokens`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from condpt.cli import app
from condpt.cli.common import fail as _fail


@app.command("add-tokens")
def add_tokens_cmd(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL_DIR", help="Local causal-LM checkpoint directory (model + tokenizer).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", file_okay=False,
                                      help="Directory to write (must not exist unless --overwrite).")],
    tokens: Annotated[Path | None, typer.Option(
        "--tokens", help="Control-token spec YAML (default: <|good|>, <|bad|>, self token U+10024).")] = None,
    init: Annotated[str, typer.Option(
        "--init", help="mean: new rows = mean of old rows; text: a tag starts at the mean embedding of its "
                       "description.")] = "mean",
    pad_to_multiple_of: Annotated[int, typer.Option(
        "--pad-to-multiple-of", help="Round the vocabulary up to a multiple of N (1 = no padding).")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Add the control tokens to a checkpoint: tokenizer, embeddings, head, condpt_tokens.json, and a report
    (add_tokens_report.json, also printed) with ids, parameter counts and KL(old||new) on ordinary text."""
    from tokenizer_ext import ControlTokenError, ControlTokens
    from tokenizer_ext.resize import CheckpointError, add_tokens_to_checkpoint

    if init not in ("mean", "text"):
        _fail(f"--init must be 'mean' or 'text', got {init!r}")
    try:
        spec = ControlTokens.from_yaml(tokens) if tokens else ControlTokens()
        report = add_tokens_to_checkpoint(model_dir, out, spec=spec, init=init,
                                          pad_to_multiple_of=pad_to_multiple_of, overwrite=overwrite)
    except (CheckpointError, ControlTokenError, OSError) as e:  # OSError: writing OUT (disk full, permissions)
        _fail(str(e))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    kl = report["kl_old_new"]
    verdict = "within" if report["kl_within_target"] else "ABOVE"
    print(f"added {report['control_ids']} -> {out}; mean KL(old||new) {kl['mean']:.2e} nats/token "
          f"({verdict} target {report['target_mean_kl']:g}), max {kl['max']:.2e}", file=sys.stderr)
