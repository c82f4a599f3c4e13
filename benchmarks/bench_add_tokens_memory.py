"""Peak memory of `add_tokens_to_checkpoint` against the checkpoint size (goal: <= 1.3x).

    .venv/bin/python benchmarks/bench_add_tokens_memory.py [--layers 4] [--d-model 768] [--untied] [--workdir DIR]
    .venv/bin/python benchmarks/bench_add_tokens_memory.py --smollm2

Builds a float32 GPT-2-shaped checkpoint (real GPT-2 tokenizer, 50,257 ids) of a few hundred MB from a config (or,
with --smollm2, takes the real SmolLM2-135M checkpoint from `condpt.smollm2`), then runs add-tokens in a fresh
subprocess. Reported: the subprocess's peak RSS minus its RSS after importing
torch/transformers/tokenizer_ext (the library baseline), divided by the size of the weights on disk (`VmHWM`, i.e. including the
checkpoint's memory-mapped file pages, which transformers 5 reads weights through); the same for anonymous memory
only (sampled every 2 ms); add-tokens' wall time; and, for scale, both figures for a bare
`AutoModelForCausalLM.from_pretrained` and for `from_pretrained` followed by one 32-token forward pass (which makes
every page of the checkpoint resident).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, threading, time
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0])
    return out
peak_anon = [0]
def sample():  # the kernel keeps no high-water mark of anonymous memory alone
    while True:
        peak_anon[0] = max(peak_anon[0], status()["RssAnon"])
        time.sleep(0.002)
import torch, transformers
from transformers import AutoModelForCausalLM
from tokenizer_ext.resize import add_tokens_to_checkpoint
base = status()
threading.Thread(target=sample, daemon=True).start()
mode, src, out = sys.argv[1:4]
t0 = time.perf_counter()
if mode == "add":
    add_tokens_to_checkpoint(src, out)
else:
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    if mode == "forward":
        with torch.no_grad():
            model(input_ids=torch.arange(32)[None])
wall = time.perf_counter() - t0
end = status()
# VmHWM: this process's own peak RSS (ru_maxrss would inherit the parent's across fork+exec)
print(json.dumps({"baseline_kb": base["VmRSS"], "peak_kb": end["VmHWM"], "wall_s": wall,
                  "baseline_anon_kb": base["RssAnon"], "peak_anon_kb": max(peak_anon[0], end["RssAnon"])}))
"""


def weights_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def run_child(mode: str, src: Path, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--smollm2", action="store_true",
                    help="measure on SmolLM2-135M-Instruct (condpt.smollm2: a real checkpoint, built once and cached)")
    args = ap.parse_args()

    from condpt.tiny import gpt2_tokenizer, tiny_causal_lm

    work = Path(tempfile.mkdtemp(dir=args.workdir))
    try:
        if args.smollm2:
            from condpt.smollm2 import smollm2_checkpoint

            src = smollm2_checkpoint()  # the shared cache: only read here
            label, n_params = "SmolLM2-135M-Instruct (llama) tied fp32", None
        else:
            src = work / "src"
            tok = gpt2_tokenizer()
            model = tiny_causal_lm("gpt2", len(tok), d_model=args.d_model, n_layer=args.layers, n_head=12,
                                   max_positions=1024, tie_word_embeddings=not args.untied, eos_token_id=50256)
            n_params = sum(p.numel() for p in model.parameters())
            model.save_pretrained(src)
            tok.save_pretrained(src)
            del model
            label = f"gpt2 d={args.d_model} layers={args.layers} {'untied' if args.untied else 'tied'} fp32"
        size = weights_bytes(src)
        load = run_child("load", src, work / "unused")
        forward = run_child("forward", src, work / "unused")
        add = run_child("add", src, work / "out")
        report = json.loads((work / "out" / "add_tokens_report.json").read_text(encoding="utf-8"))
        mb = 1024 * 1024
        delta = lambda r: (r["peak_kb"] - r["baseline_kb"]) * 1024
        anon = lambda r: (r["peak_anon_kb"] - r["baseline_anon_kb"]) * 1024
        print(json.dumps({
            "checkpoint": label,
            "params": n_params or report["params_before"],
            "kl_mean_nats_per_token": report["kl_old_new"]["mean"],
            "kl_tokens": report["kl_old_new"]["tokens"],
            "checkpoint_MB": round(size / mb, 1),
            "import_baseline_MB": round(add["baseline_kb"] / 1024, 1),
            "add_tokens_peak_MB": round(add["peak_kb"] / 1024, 1),
            "add_tokens_peak_over_baseline_MB": round(delta(add) / mb, 1),
            "add_tokens_ratio": round(delta(add) / size, 3),
            "add_tokens_anon_ratio": round(anon(add) / size, 3),
            "add_tokens_wall_s": round(add["wall_s"], 1),
            "from_pretrained_only_ratio": round(delta(load) / size, 3),
            "from_pretrained_only_anon_ratio": round(anon(load) / size, 3),
            "from_pretrained_and_forward_ratio": round(delta(forward) / size, 3),
            "from_pretrained_and_forward_anon_ratio": round(anon(forward) / size, 3),
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
