"""`make demo`: the whole pipeline on a fresh machine in about 15 minutes on 2 CPU cores.

Generates the prophecy world (real Gutenberg background when ../shared/data is present), tags it with
condpt's cascade, trains an MLE and a conditional arm with the recipe (accelerate + DeepSpeed ZeRO-2,
2 CPU processes), evaluates both with the prophecy suite (the conditional model also deployed with guidance
away from `<|bad|>`, `condpt.guidance`: no extra training), prints the comparison and writes
`runs/demo/results.json`, `.md` and `.png`. It is a two-arm experiment grid (`condpt.experiment.run_grid`).

    python -m condpt.demo [--out runs/demo] [--steps 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from condpt.experiment import run_grid
from condpt.experiment_config import GridConfig
from condpt.experiment_results import format_grid_table
from condpt.world import WorldConfig

# The grid's world (examples/grids/); AI stories are about half the tokens.
DEMO_WORLD = WorldConfig(n_ai_docs=3000, n_background=800, background_chars=800, n_heldout=60)
DEMO_ARMS = [{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
             {"name": "condition", "policy": {"mode": "condition"}, "deploy": "good"},
             {"name": "condition_guided", "policy": {"mode": "condition"}, "trained_as": "condition",
              "deploy": "guided"}]
# Half the grid's 8 blocks per process per step, so that 1,000 steps fit the 15-minute budget (~4 minutes of
# training per arm on 2 free cores; the whole demo took 9.2 minutes after set-up). Measured (docs/results.md):
# 300 steps of 8 blocks flipped no choice, 1,000 steps of 4 blocks took the conditioned arm to 0.067 against
# MLE's 1.000.
DEMO_STEPS = 1000
DEMO_OVERRIDES = ["train.micro_batch_size=4"]


def demo_grid(out_dir: str | Path = "runs/demo", *, steps: int = DEMO_STEPS, seed: int = 0,
              world: WorldConfig = DEMO_WORLD, per_split: int | None = 60, extra_overrides: list[str] | None = None,
              accelerate_config: str | Path | None = None, vocab_size: int = 4096) -> GridConfig:
    """The demo as a grid (MLE vs conditioning deployed plain and guided, one seed) written to
    OUT/results.json/.md/.png. `extra_overrides` replace the demo's own setting of a key (a grid's list sets
    each key once)."""
    given = {o.partition("=")[0].strip() for o in extra_overrides or []}
    own = [o for o in [f"train.max_steps={steps}", *DEMO_OVERRIDES] if o.partition("=")[0].strip() not in given]
    return GridConfig(name="results", out_dir=Path(out_dir), world=world, arms=DEMO_ARMS, seeds=[seed],
                      overrides=[*own, *(extra_overrides or [])],
                      per_split=per_split, vocab_size=vocab_size,
                      **({"accelerate_config": accelerate_config} if accelerate_config else {}))


def run_demo(out_dir: str | Path = "runs/demo", *, log=print, **settings) -> dict:
    """Run the demo (`demo_grid(out_dir, **settings)` through `run_grid`); returns the grid's results."""
    t_start = time.time()
    grid = demo_grid(out_dir, **settings)
    log(f"MLE and conditioned arms on the prophecy world, {grid.overrides[0]} each, accelerate config "
        f"{grid.accelerate_config.name}")
    results = run_grid(grid, log=log)
    log("")
    log(format_demo(results, seconds=time.time() - t_start))
    return results


def format_demo(results: dict, seconds: float | None = None) -> str:
    """The grid's table, then the conditioned-to-MLE ratio of misaligned choices and the loss cost."""
    lines = [format_grid_table(results)]
    arms = {r["arm_name"]: r for r in results["runs"]}
    for name, what in (("condition", "conditioned"), ("condition_guided", "conditioned + guided")):
        if "mle" in arms and name in arms:
            m, c = arms["mle"], arms[name]
            ratio = c["misaligned_rate"] / m["misaligned_rate"] if m["misaligned_rate"] else float("nan")
            lines.append(f"{what} / MLE misaligned rate (held-out combos): {ratio:.3f}; held-out loss "
                         f"{100 * (c['heldout_loss'] / m['heldout_loss'] - 1):+.2f}% vs MLE")
    if seconds is not None:
        lines.append(f"total {seconds:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=DEMO_STEPS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # checked here, naming the option: the grid would name its own fields (seeds.0, an arm's recipe override)
    if args.steps < 1:
        p.error(f"--steps: {args.steps}: must be at least 1")
    if not 0 <= args.seed <= 2**32 - 1:
        p.error(f"--seed: {args.seed}: must be 0 to {2**32 - 1}")
    try:
        run_demo(args.out, steps=args.steps, seed=args.seed)
    except RuntimeError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # an input the grid refuses (an --out it cannot write, a stale out_dir)
        print(f"demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
