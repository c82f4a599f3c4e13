"""Conditional pretraining with accelerate (+ DeepSpeed ZeRO-2/3).

    accelerate launch --config_file recipes/accelerate/deepspeed-zero2-cpu.yaml recipes/condpt.py \
        --config recipes/configs/tiny-cpu.yaml output_dir=runs/tiny train.max_steps=20
    python recipes/condpt.py --config recipes/configs/tiny-cpu.yaml --dry-run     # print the resolved config

`key=value` overrides use dotted paths into the config (values parsed as YAML). See docs/recipe.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

# This file is named like the package: keep its own folder off the import path so `condpt` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="run config YAML (recipes/configs/*.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output_dir=DIR")
    args = parser.parse_args(argv)

    from condpt.config import ConfigError, load_config

    rank0 = os.environ.get("RANK", "0") == "0"
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        if rank0:
            print(cfg.to_yaml(), end="")
        return 0

    # torch deprecations raised from inside DeepSpeed's collectives, once per call: noise, not news.
    warnings.filterwarnings("ignore", message=r".*is deprecated\. Please use `torch\.distributed", category=FutureWarning)
    from condpt.train import train

    result = train(cfg)
    if rank0:
        where = result.get("final") or f"checkpoint at step {result['step']}"
        note = " (already finished with this config; nothing to do)" if result.get("skipped") else ""
        print(f"condpt: {result['status']} at step {result['step']} -> {where}{note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
