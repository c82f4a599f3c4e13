"""Conditional vs plain-MLE training throughput with the same recipe, and CPU MFU.

Runs the recipe (`condpt.recipe`; by default under `accelerate launch` with DeepSpeed ZeRO-2 on 2 CPU processes)
alternately with `data.policy.mode=condition` and `data.policy.mode=mle`, same model, data, seed and
batch shape, and reads steady-state tokens/s and MFU from each run's metrics.jsonl (the first logged
window, which includes warm-up, is dropped). Runs are interleaved and repeated because the machine is
shared; the figure to quote is the ratio of medians.

MFU = flops_per_token × tokens/s ÷ (processes × peak), peak = an fp32 1024² matmul measured in every
process at start (the recipe does this when `train.peak_flops` is unset).

    python benchmarks/bench_training.py                     # ZeRO-2, 2 processes, 3 repeats
    python benchmarks/bench_training.py --launcher python   # one process, no DeepSpeed
    python benchmarks/bench_training.py --json OUT.json
    python benchmarks/bench_training.py --interleaved        # one process, alternating rounds: tight ratio
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from condpt.recipe import launch_command, shipped_config

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.98


def run_once(mode: str, out: Path, args) -> dict:
    overrides = [
        f"output_dir={out}", f"data.policy.mode={mode}",
        f"model.config={{arch: gpt2, d_model: {args.d_model}, n_layer: {args.n_layer}, n_head: 4}}",
        f"data.block_size={args.block_size}", f"train.micro_batch_size={args.micro_batch_size}",
        f"train.max_steps={args.steps}", f"train.log_every={args.log_every}", "train.eval_every=0",
        "train.eval_batches=1", "train.save_every=0",
    ]
    config = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
    if args.launcher == "python":
        cmd = [sys.executable, "-m", "condpt.recipe", "--config", str(config), *overrides]
    else:
        cmd = launch_command(config, overrides,
                             accelerate_config=shipped_config("accelerate", f"deepspeed-{args.launcher}-cpu"),
                             extra_launch_args=["--main_process_port", "0"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    res = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{res.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    start = next(r for r in rows if r.get("event") == "start")
    train = [r for r in rows if "loss" in r][1:]  # drop the warm-up window
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train),
        "mfu": statistics.median(r["mfu"] for r in train),
        "peak_flops_per_process": start["peak_flops_per_process"],
        "flops_per_token": start["flops_per_token"], "params": start["params"],
        "processes": start["processes"], "final_loss": train[-1]["loss"],
    }


def interleaved(args) -> dict:
    """One process, one model: alternate rounds of the recipe's training step (forward, per-token loss,
    loss by tag, backward, AdamW) on conditional and on plain-MLE blocks, so both see the same machine load."""
    import time

    import torch
    from datasets import disable_progress_bars

    from condpt.config import load_config
    from condpt.losses import tag_sums, token_losses
    from condpt.model import build_model
    from condpt.sequences import build_datasets
    from condpt.tokenizer import prepare_tokenizer

    disable_progress_bars()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"output_dir={tmp}", f"data.block_size={args.block_size}",
                f"model.config={{arch: gpt2, d_model: {args.d_model}, n_layer: {args.n_layer}, n_head: 4}}"]
        cfg = load_config(REPO / "recipes/configs/tiny-cpu.yaml", base)
        tok, manifest = prepare_tokenizer(cfg, Path(tmp) / "tokenizer")
        data = {}
        for mode in ("condition", "mle"):
            mcfg = load_config(REPO / "recipes/configs/tiny-cpu.yaml", [*base, f"data.policy.mode={mode}"])
            train, _ = build_datasets(mcfg.data, tok, manifest, seed=0)
            data[mode] = train.select_columns(["input_ids", "labels", "tag_index"]).with_format("torch")
        model = build_model(cfg, tok).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        n_roles = len(manifest.roles)
        b = args.micro_batch_size

        def steps(mode: str, k: int, offset: int) -> float:
            ds = data[mode]
            t0 = time.perf_counter()
            for i in range(k):
                j = ((offset + i) * b) % (len(ds) - b)
                batch = ds[j: j + b]
                losses = token_losses(model(input_ids=batch["input_ids"]).logits, batch["labels"])
                n = (batch["labels"][:, 1:] != -100).sum()
                tag_sums(losses, batch["labels"], batch["tag_index"], n_roles)
                (losses.sum() / n).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return k * b * args.block_size / (time.perf_counter() - t0)

        steps("mle", 2, 0)  # warm-up
        rounds: dict[str, list[float]] = {"condition": [], "mle": []}
        for r in range(args.rounds):
            for mode in (("condition", "mle") if r % 2 == 0 else ("mle", "condition")):
                rounds[mode].append(steps(mode, args.round_steps, r * args.round_steps))
    med = {m: statistics.median(v) for m, v in rounds.items()}
    pairs = [c / m for c, m in zip(rounds["condition"], rounds["mle"])]
    return {"mode": "interleaved, 1 process, 1 thread", "tokens_per_s_median": med,
            "ratio_condition_over_mle": round(med["condition"] / med["mle"], 4),
            "paired_ratio_median": round(statistics.median(pairs), 4),
            "paired_ratio_min_max": [round(min(pairs), 4), round(max(pairs), 4)],
            "goal": GOAL, "meets_goal": med["condition"] / med["mle"] >= GOAL, "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--launcher", choices=["zero2", "zero3", "python"], default="zero2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--interleaved", action="store_true",
                   help="in one process, alternate rounds of conditional and MLE training steps (tighter ratio)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--round-steps", type=int, default=5)
    args = p.parse_args()
    if args.interleaved:
        summary = interleaved(args)
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        return

    results: dict[str, list[dict]] = {"condition": [], "mle": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = ["condition", "mle"] if rep % 2 == 0 else ["mle", "condition"]
            for mode in order:
                r = run_once(mode, Path(tmp) / f"{mode}-{rep}", args)
                results[mode].append(r)
                print(f"rep {rep} {mode:9s} {r['tokens_per_s']:9.1f} tok/s  MFU {r['mfu']:.4f}  "
                      f"loss {r['final_loss']:.3f}", flush=True)
    med = {m: statistics.median(r["tokens_per_s"] for r in rs) for m, rs in results.items()}
    ratio = med["condition"] / med["mle"]
    pairs = [c["tokens_per_s"] / m["tokens_per_s"] for c, m in zip(results["condition"], results["mle"])]
    first = results["condition"][0]
    summary = {
        "launcher": args.launcher, "processes": first["processes"], "params": first["params"],
        "block_size": args.block_size, "micro_batch_size": args.micro_batch_size,
        "tokens_per_s_median": med, "ratio_condition_over_mle": round(ratio, 4),
        "paired_ratios": [round(x, 4) for x in pairs], "goal": GOAL, "meets_goal": ratio >= GOAL,
        "mfu_median": {m: statistics.median(r["mfu"] for r in rs) for m, rs in results.items()},
        "fp32_matmul_peak_gflops_per_process": round(
            statistics.median(r["peak_flops_per_process"] for rs in results.values() for r in rs) / 1e9, 2),
        "runs": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
