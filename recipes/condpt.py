"""Thin entry to the recipe in the package (`condpt.recipe`), for `accelerate launch` from a source checkout:

    accelerate launch --config_file condpt/configs/accelerate/deepspeed-zero2-cpu.yaml recipes/condpt.py \
        --config recipes/configs/tiny-cpu.yaml output_dir=runs/tiny train.max_steps=20
    python recipes/condpt.py --config recipes/configs/tiny-cpu.yaml --dry-run     # print the resolved config

Same as `accelerate launch ... -m condpt.recipe ...` or `condpt train`, which need no checkout. See docs/recipe.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the package: keep its own folder off the import path so `condpt` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from condpt.recipe import main

if __name__ == "__main__":
    sys.exit(main())
