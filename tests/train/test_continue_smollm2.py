"""Continued conditional pretraining of a real checkpoint with the shipped config
recipes/configs/smollm2-135m-condition.yaml: SmolLM2-135M (`condpt.smollm2`) on 2 CPU processes under DeepSpeed
ZeRO-2, a few steps of 128-token blocks of the tiny tagged corpus; the export reloads with AutoModelForCausalLM and
generates, with the control tokens' rows as tokenizer_ext's resize made them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "recipes" / "configs" / "smollm2-135m-condition.yaml"
STEPS = 3


@pytest.fixture(scope="module")
def run(smollm2_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smollm2-run") / "run"
    # The one multi-process test launching the checkout entry `recipes/condpt.py` (as docs/recipe.md shows);
    # the others launch `condpt.recipe.launch_command`.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "condpt" / "configs" / "accelerate" / "deepspeed-zero2-cpu.yaml"), "--main_process_port", "0",
           str(REPO / "recipes" / "condpt.py"), "--config", str(CONFIG), f"model.checkpoint={smollm2_dir}",
           f"output_dir={out}", "data.block_size=128", f"train.max_steps={STEPS}", "train.micro_batch_size=1",
           "train.grad_accum=1", "train.log_every=1", "train.eval_every=0", "train.eval_batches=1",
           "train.save_every=0", "train.peak_flops=1.0e11", "optim.warmup_steps=1"]
    log = out.parent / "run.log"
    with log.open("w") as f:
        res = subprocess.run(cmd, check=False, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=f,
                             stderr=subprocess.STDOUT, timeout=900)
    assert res.returncode == 0, log.read_text()[-4000:]
    return out


def test_two_processes_zero2_train_and_export(run, smollm2_dir):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    start = next(r for r in rows if r.get("event") == "start")
    assert start["processes"] == 2 and "DEEPSPEED" in start["distributed_type"]
    assert start["params"] > 134_000_000
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sorted(losses) == list(range(1, STEPS + 1))
    # a model that knows language: the untagged loss starts where SmolLM2 is on ordinary text, not at ln(49,216)
    assert all(0 < v < 7 for v in losses.values()), losses
    assert any(r.get("event") == "done" for r in rows)


def test_export_reloads_and_generates(run, smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from condpt.generate import Generator
    from tokenizer_ext import Manifest

    final = run / "final"
    manifest = Manifest.load(final)
    model = AutoModelForCausalLM.from_pretrained(str(final)).eval()
    assert next(model.parameters()).dtype == torch.float32
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == 49_216 and manifest.control_ids == [49_152, 49_153, 49_154]  # padded to a multiple of 64
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied
    tok = AutoTokenizer.from_pretrained(str(final))
    ids = torch.tensor([tok("The capital of France is")["input_ids"]])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8)
    assert set(manifest.control_ids).isdisjoint(out[0].tolist())
    assert tok.decode(out[0, ids.shape[1]:]).strip(), "no continuation"
    gen = Generator(model, tok, manifest)  # as Generator.load(final), without loading the model again
    samples = gen.generate_ids("The old ferryman", condition="good", n=4, max_new_tokens=12, seed=0)
    tags = {manifest.tag_id(r) for r in manifest.roles}
    assert any(samples) and all(tags.isdisjoint(s) for s in samples)
