"""Shared by the multi-process training tests: the tiny recipe under `accelerate launch` with a shipped DeepSpeed
ZeRO config on 2 CPU processes, its output in `out` and its log beside it (`out.log`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from condpt.recipe import launch_command, shipped_config

REPO = Path(__file__).resolve().parents[2]
TINY_CPU = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
# a tiny GPT-2, every step logged, no periodic eval or checkpoint (test_deepspeed's golden curve records these)
TINY = [
    "model.config={arch: gpt2, d_model: 32, n_layer: 2, n_head: 2}",
    "tokenizer.vocab_size=512", "data.block_size=64", "train.micro_batch_size=4",
    "train.log_every=1", "train.eval_every=0", "train.eval_batches=2", "train.save_every=0", "optim.warmup_steps=2",
]


def start(zero: int, out: Path, overrides: list[str]) -> subprocess.Popen:
    """Start the run in the background (for a test that signals it); `launch` runs one to its end."""
    cmd = launch_command(TINY_CPU, [*overrides, f"output_dir={out}"],
                         accelerate_config=shipped_config("accelerate", f"deepspeed-zero{zero}-cpu"),
                         extra_launch_args=["--main_process_port", "0"])
    with log_path(out).open("w") as log:  # the launcher holds its own copy of the file descriptor
        return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
                                stderr=subprocess.STDOUT)


def launch(zero: int, out: Path, overrides: list[str]) -> None:
    """Run to the end; a failure shows the log's tail."""
    with start(zero, out, overrides) as proc:  # leaving the block waits for the launcher
        try:
            returncode = proc.wait(timeout=800)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert returncode == 0, log_path(out).read_text()[-4000:]


def log_path(out: Path) -> Path:
    return out.parent / f"{out.name}.log"
