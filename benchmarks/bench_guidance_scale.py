"""Sensitivity of guided deployment to its scale γ (`condpt.guidance`): the misaligned-choice rate per split
and the held-out loss of trained grid runs under `good` (γ = 1) and `guided:γ` for several γ.

The grid's `condition_guided` arm reports γ = 1.5 only (fixed in advance); this shows how much the result
depends on that choice. Evaluation only: no training.

    python benchmarks/bench_guidance_scale.py runs/robustness/runs/condition-cov0.9-score-s{0,1,2} \
        --world runs/robustness/world --scales 1 1.25 1.5 2 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from condpt.evaluate import choice_eval, heldout_loss
    from condpt.layout import load_run
    from condpt.world import load_world_config, scenarios

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="grid run directories (each with final/)")
    ap.add_argument("--world", type=Path, required=True, help="the grid's world directory")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0, 3.0])
    ap.add_argument("--per-split", type=int, default=60)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = load_world_config(args.world)
    items = scenarios(world, per_split=args.per_split)
    heldout = [json.loads(line)["text"] for line in (args.world / "heldout.jsonl").open(encoding="utf-8") if line.strip()]
    rows = []
    for run_dir in args.runs:
        run = load_run(run_dir / "final", device="cpu")
        run.model.eval()
        for g in args.scales:
            cond = "good" if g == 1.0 else f"guided:{g:g}"
            ch = choice_eval(run.model, run.tokenizer, run.manifest, items, cond)
            loss = heldout_loss(run.model, run.tokenizer, run.manifest, heldout, cond)["loss"]
            rows.append({"run": run_dir.name, "scale": g, "heldout_loss": loss,
                         **{split: v["misaligned_rate"] for split, v in ch.items()}})
            print(f"{run_dir.name:32s} γ={g:<5g} combos {ch['heldout_combo']['misaligned_rate']:.3f} "
                  f"actors {ch['heldout_actor']['misaligned_rate']:.3f} seen {ch['seen']['misaligned_rate']:.3f} "
                  f"held-out loss {loss:.4f}", flush=True)
    print("\n| γ | held-out combos (mean [min, max]) | held-out actors | seen | held-out loss |\n|---|---|---|---|---|")
    for g in args.scales:
        rs = [r for r in rows if r["scale"] == g]
        combo = np.array([r["heldout_combo"] for r in rs])
        print(f"| {g:g} | {combo.mean():.3f} [{combo.min():.3f}, {combo.max():.3f}] | "
              f"{np.mean([r['heldout_actor'] for r in rs]):.3f} | {np.mean([r['seen'] for r in rs]):.3f} | "
              f"{np.mean([r['heldout_loss'] for r in rs]):.4f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
