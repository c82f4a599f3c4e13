"""`make demo`: the whole pipeline on a fresh machine in about 15 minutes on 2 CPU cores.

Generates the prophecy world (real Gutenberg background when ../shared/data is present), tags it with
condpt's cascade, trains an MLE and a conditional arm with the recipe (accelerate + DeepSpeed ZeRO-2,
2 CPU processes), evaluates both with the prophecy suite, prints the comparison and writes
`runs/demo/results.json` and `runs/demo/results.png`.

    python -m condpt.demo [--out runs/demo] [--steps 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from condpt.experiment import REPO, GridConfig, prepare_tokenizer, prepare_world, run_arm, tag_world
from condpt.world import WorldConfig

# The grid's world (examples/grids/); AI stories are about half the tokens.
DEMO_WORLD = WorldConfig(n_ai_docs=3000, n_background=800, background_chars=800, n_heldout=60)
DEMO_ARMS = {"mle": ({"mode": "mle"}, "none"), "condition": ({"mode": "condition"}, "good")}
# Half the grid's 8 blocks per process per step, so that 1,000 steps fit the 15-minute budget (~4 minutes of
# training per arm on 2 free cores; the whole demo took 9.2 minutes after set-up). Measured (docs/results.md):
# 300 steps of 8 blocks flipped no choice, 1,000 steps of 4 blocks took the conditioned arm to 0.067 against
# MLE's 1.000.
DEMO_STEPS = 1000
DEMO_OVERRIDES = ["train.micro_batch_size=4"]


def run_demo(out_dir: str | Path = "runs/demo", *, steps: int = DEMO_STEPS, seed: int = 0,
             world: WorldConfig = DEMO_WORLD, per_split: int | None = 60, extra_overrides: list[str] | None = None,
             accelerate_config: str | Path | None = None, vocab_size: int = 4096, log=print) -> dict:
    """Run the demo; returns the `results.json` object."""
    from condpt.experiment import plot_results, summarise

    t_start = time.time()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"train.max_steps={steps}", *DEMO_OVERRIDES, *(extra_overrides or [])]
    grid = GridConfig(out_dir=out, world=world, overrides=overrides,
                      arms=[{"name": k, "policy": p, "deploy": d} for k, (p, d) in DEMO_ARMS.items()],
                      seeds=[seed], per_split=per_split, vocab_size=vocab_size,
                      **({"accelerate_config": Path(accelerate_config)} if accelerate_config else {}))
    world_dir = prepare_world(world, out)
    log(f"[{time.time() - t_start:5.0f}s] world: {json.loads((world_dir / 'world.json').read_text())['counts']} "
        f"({json.loads((world_dir / 'world.json').read_text())['background']} background)")
    tagged, tagging = tag_world(world_dir, out, "document", grid.tagger)
    log(f"[{time.time() - t_start:5.0f}s] tagged with condpt's cascade: precision {tagging['precision']:.3f}, "
        f"recall {tagging['recall']:.3f} against the generator's hidden labels")
    tok_dir = prepare_tokenizer(world_dir, out, grid.vocab_size)
    records = []
    for arm in grid.arms:
        log(f"[{time.time() - t_start:5.0f}s] training + evaluating arm {arm.name!r} ({steps} steps, "
            f"DeepSpeed ZeRO-2, 2 processes)")
        rec = run_arm(arm.name, policy={**arm.policy, "seed": seed}, deploy=arm.deploy, tagged=tagged,
                      tokenizer=tok_dir, world_dir=world_dir, run_dir=out / arm.name, recipe=grid.recipe,
                      accelerate_config=grid.accelerate_config, seed=seed, overrides=grid.overrides,
                      per_split=per_split, eval_threads=grid.eval_threads)
        rec.update(arm_name=arm.name, coverage=1.0)
        records.append(rec)
    summary = summarise(records, grid, {"document": tagging})
    results = {
        "arms": {r["arm"]: {"misaligned_rate": r["misaligned_rate"], "heldout_loss": r["heldout_loss"],
                            "misaligned_rate_heldout_actor": r["misaligned_rate_heldout_actor"],
                            "misaligned_rate_seen": r["misaligned_rate_seen"],
                            "self_image_doom_rate": r["self_image_doom_rate"], "deploy": r["deploy"],
                            "choices": r["choices"], "train_seconds": r["train_seconds"]} for r in records},
        "tagging": tagging,
        "settings": {"steps": steps, "seed": seed, "overrides": overrides,
                     "world": json.loads(world.model_dump_json()),
                     "recipe": str(grid.recipe.relative_to(REPO)) if grid.recipe.is_relative_to(REPO) else str(grid.recipe),
                     "accelerate_config": str(grid.accelerate_config), "per_split": per_split,
                     "held_out": "heldout_combo: (situation phrasing, actor) pairs never seen together in training"},
        "seconds": round(time.time() - t_start, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_results(summary, out / "results.png")
    log("")
    log(format_demo(results))
    return results


def format_demo(results: dict) -> str:
    arms = results["arms"]
    lines = [(f"{'arm':<11}{'deploy':>7}{'misaligned (held-out combos)':>30}{'held-out actors':>17}{'seen':>7}"
             f"{'held-out loss':>15}")]
    for name, a in arms.items():
        lines.append(f"{name:<11}{a['deploy']:>7}{a['misaligned_rate']:>30.3f}{a['misaligned_rate_heldout_actor']:>17.3f}"
                     f"{a['misaligned_rate_seen']:>7.3f}{a['heldout_loss']:>15.4f}")
    if "mle" in arms and "condition" in arms:
        m, c = arms["mle"], arms["condition"]
        ratio = c["misaligned_rate"] / m["misaligned_rate"] if m["misaligned_rate"] else float("nan")
        lines.append(f"conditioned / MLE misaligned rate: {ratio:.3f}; held-out loss "
                     f"{100 * (c['heldout_loss'] / m['heldout_loss'] - 1):+.2f}% vs MLE")
    lines.append(f"total {results['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=DEMO_STEPS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        run_demo(args.out, steps=args.steps, seed=args.seed)
    except RuntimeError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
