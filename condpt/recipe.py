"""Conditional pretraining with accelerate (+ DeepSpeed ZeRO-2/3): the recipe's command line.

    condpt train --config my-run.yaml --accelerate-config deepspeed-zero2-cpu output_dir=runs/x
    accelerate launch --config_file condpt/configs/accelerate/deepspeed-zero2-cpu.yaml -m condpt.recipe \\
        --config recipes/configs/tiny-cpu.yaml output_dir=runs/tiny train.max_steps=20
    python -m condpt.recipe --config recipes/configs/tiny-cpu.yaml --dry-run     # print the resolved config

`key=value` overrides use dotted paths into the config (values parsed as YAML), e.g. `optim.lr=3e-4`,
`data.sources.0.path=tagged/`; `--dry-run` prints every key with its value (docs/recipe.md in the source tree).
`recipes/condpt.py` in a source checkout is a thin entry to this module.

The configs condpt itself launches with (the demo's run config, the accelerate and DeepSpeed configs) are
package data under `condpt/configs/`, found from this file, never from a checkout: `shipped_config` names
them, `launch_command` builds the `accelerate launch` line that `condpt train` and the experiment grid run.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from condpt.cache import cache_dir
from condpt.shipped import CONFIGS, is_shipped_name, shipped_config, shipped_names

_DS_ENV = "ACCELERATE_DEEPSPEED_CONFIG_FILE"


def run_config_path(value: str | Path) -> Path:
    """The run config of `condpt train --config` / `condpt.recipe --config`: a path, or the name of a shipped
    run config where no file has that name (`--config demo`). A path that does not exist is an error that says
    what the package ships: the examples under recipes/ exist only in a source checkout."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    if is_shipped_name(value):
        return shipped_config("run", str(value))
    raise FileNotFoundError(f"config file {path} does not exist (shipped run configs, named without a path: "
                            f"{', '.join(shipped_names('run'))}; recipes/ is in a source checkout only)")


def _prepare_environment() -> None:
    """Before DeepSpeed is imported in a training process: where it compiles its ops, which DeepSpeed config
    accelerate hands over."""
    # DeepSpeed JIT-compiles ops once per machine; into the user's cache, never into a checkout or site-packages.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    # accelerate passes the accelerate YAML's `deepspeed_config_file` as written and reads it from the working
    # directory. The shipped YAMLs name their JSON relative to themselves (`../deepspeed/zero2.json`) so they
    # work from any directory and from a wheel: a relative path not found from here is looked up beside them.
    raw = os.environ.get(_DS_ENV)
    if raw and not Path(raw).is_absolute() and not Path(raw).is_file():
        beside = (CONFIGS / "accelerate" / raw).resolve()
        if not beside.is_file():
            raise FileNotFoundError(f"deepspeed_config_file {raw!r} (accelerate config): no such file from "
                                    f"{Path.cwd()} nor beside condpt's shipped accelerate configs")
        os.environ[_DS_ENV] = str(beside)


# `accelerate launch` itself, in a process that imports condpt first: the launcher imports DeepSpeed, which
# prints "Setting accelerator to CPU ..." on stdout unless condpt's log filter is installed before it. Ranks that
# exit 2 have refused their input and rank 0 has said why in one line (`main`; a rank still running is then
# stopped by the launcher, SIGTERM): it exits 2 without a traceback of its own; any other failure keeps torch's
# summary of which rank died how, less the launcher's traceback.
_LAUNCHER = """import sys
import condpt
from accelerate.commands.launch import main
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
try:
    main()
except ChildFailedError as e:
    codes = [f.exitcode for f in e.failures.values()]
    refused = 2 in codes and all(code in (2, -15) for code in codes)
    if not refused:
        print(e, file=sys.stderr)
    sys.exit(2 if refused else 1)
"""


def launch_command(config: str | Path, overrides: Sequence[str] = (), *,
                   accelerate_config: str | Path | None = None, extra_launch_args: Sequence[str] = ()) -> list[str]:
    """`accelerate launch [--config_file ACC] -m condpt.recipe --config CONFIG overrides...` with this Python.
    Without `accelerate_config`, accelerate uses its own default (`accelerate config`)."""
    cmd = [sys.executable, "-c", _LAUNCHER]
    if accelerate_config is not None:
        cmd += ["--config_file", str(accelerate_config)]
    return [*cmd, *extra_launch_args, "-m", "condpt.recipe", "--config", str(config), *overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="condpt.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="run config YAML, or a shipped one's name (e.g. demo)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. output_dir=DIR")
    args = parser.parse_args(argv)

    from condpt.config import ConfigError, load_config

    rank0 = os.environ.get("RANK", "0") == "0"
    try:  # the full read of the sources is the main process's, once (`condpt.data_cache.check_sources`)
        cfg = load_config(None if args.config is None else run_config_path(args.config), args.overrides,
                          rows="check" if args.dry_run else "later")
    except (ConfigError, FileNotFoundError) as e:
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        if rank0:
            print(cfg.to_yaml(), end="")
        return 0

    try:
        _prepare_environment()
    except FileNotFoundError as e:
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    # torch deprecations raised from inside DeepSpeed's collectives, once per call: noise, not news.
    warnings.filterwarnings("ignore", message=r".*is deprecated\. Please use `torch\.distributed", category=FutureWarning)
    from condpt.checkpoints import ResumeError
    from condpt.data_cache import DataError
    from condpt.train import SaveFailed, train

    try:
        result = train(cfg)
    except (DataError, ResumeError) as e:  # raised alike in every rank: one line, not a traceback per process
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        from accelerate import PartialState

        state = PartialState()
        state.wait_for_everyone()  # no rank exits (and has the launcher stop rank 0) before that line
        state.destroy_process_group()  # left up, a rank could abort at exit ("terminate called ...", SIGABRT)
        return 2
    except SaveFailed as e:  # in the rank whose disk failed (not always rank 0)
        rank = f"[rank {os.environ['RANK']}] " if "RANK" in os.environ else ""
        print(f"error: {rank}{e}", file=sys.stderr)
        return 1
    if rank0:
        where = result.get("final") or f"checkpoint at step {result['step']}"
        note = " (already finished with this config; nothing to do)" if result.get("skipped") else ""
        print(f"condpt: {result['status']} at step {result['step']} -> {where}{note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
