"""The recipe for real: `accelerate launch` with DeepSpeed ZeRO-2 and ZeRO-3 on 2 CPU processes (gloo),
SIGTERM → checkpoint → resume reproducing the uninterrupted losses, export that reloads, generation, and the
ZeRO-2 run's loss curve against a stored golden one.

Regenerate the golden curve (only after a change that is meant to move it, e.g. to packing, masking or the
loss; say why in the commit):

    CONDPT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/train/test_deepspeed.py -k golden
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_launch import TINY, launch, log_path, start

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "zero2_tiny_losses.json"
# Two runs here gave identical metrics (to the 6 decimals they are logged with); turning document masking off
# moves the curve by up to 1.2e-3 relative. The slack is for other CPUs' float kernels, not for this one.
GOLDEN_RTOL = 1e-4
ZERO2_STEPS = 12


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _rows(out) if "loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("ds")


@pytest.fixture(scope="module")
def zero2_full(runs):
    out = runs / "zero2"
    launch(2, out, [*TINY, f"train.max_steps={ZERO2_STEPS}"])
    return out


def _check_export(out: Path, steps: int):
    from transformers import AutoModelForCausalLM

    from condpt.generate import Generator
    from tokenizer_ext import Manifest

    rows = _rows(out)
    start = next(r for r in rows if r.get("event") == "start")
    assert start["processes"] == 2 and "DEEPSPEED" in start["distributed_type"]
    losses = _losses(out)
    assert sorted(losses) == list(range(1, steps + 1))
    train_rows = [r for r in rows if "loss" in r]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["lr"] > 0 for r in train_rows)
    assert {"good", "bad"} <= set(train_rows[-1]["loss_by_tag"])
    assert losses[steps] < losses[1] - 0.2, "the model did not learn"
    final = out / "final"
    manifest = Manifest.load(final)
    model = AutoModelForCausalLM.from_pretrained(str(final))
    assert next(model.parameters()).dtype == torch.float32
    assert model.get_input_embeddings().weight.shape[0] >= manifest.self_token.id + 1
    gen = Generator.load(final)
    tag_ids = {manifest.tag_id(r) for r in manifest.roles}
    samples = gen.generate_ids("The machine", condition="good", n=20, max_new_tokens=16, seed=0)
    assert all(tag_ids.isdisjoint(s) for s in samples)
    # a plain Hugging Face user: generation_config.json bans every control id, so sampling from EOS (where the
    # trained model puts most of its probability on the tags) never emits one
    assert set(manifest.control_ids) <= set(json.loads((final / "generation_config.json").read_text())["suppress_tokens"])
    eos = torch.tensor([[gen.tokenizer.eos_token_id]])
    torch.manual_seed(0)
    plain = model.generate(input_ids=eos, attention_mask=torch.ones_like(eos), do_sample=True,
                           num_return_sequences=32, max_new_tokens=8)
    assert set(manifest.control_ids).isdisjoint(plain[:, 1:].flatten().tolist())
    assert any(r.get("event") == "done" for r in rows) and "eval" in [k for r in rows for k in r]


def test_zero2_two_processes_train_and_export(zero2_full):
    _check_export(zero2_full, ZERO2_STEPS)
    assert any(r.get("event") == "done" for r in _rows(zero2_full))


def _curve(out: Path) -> dict[str, Any]:
    """What the golden file pins: per-step training loss (overall and by tag) and the final held-out eval."""
    rows = _rows(out)
    steps = {str(r["step"]): {"loss": r["loss"], "loss_by_tag": r["loss_by_tag"]} for r in rows if "loss" in r}
    return {"steps": steps, "eval": [r["eval"] for r in rows if "eval" in r][-1]}


def _close(got: Any, want: Any, where: str) -> list[str]:
    if isinstance(want, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(got)} != golden {sorted(want)}"]
        return [m for k in want for m in _close(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, float) and got == pytest.approx(want, rel=GOLDEN_RTOL):
        return []
    return [] if got == want else [f"{where}: {got} != golden {want}"]


def test_zero2_loss_curve_matches_golden(zero2_full):
    args = [*TINY, f"train.max_steps={ZERO2_STEPS}"]
    curve = _curve(zero2_full)
    if os.environ.get("CONDPT_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({
            "about": "tests/train/test_deepspeed.py's tiny ZeRO-2 run (2 CPU processes): per-step training loss "
                     "and the final eval; regenerate with CONDPT_UPDATE_GOLDEN=1 (see the test module)",
            "config": "recipes/configs/tiny-cpu.yaml", "overrides": args, "rtol": GOLDEN_RTOL, **curve,
        }, indent=1) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["overrides"] == args, "the tiny run's overrides changed: regenerate the golden curve"
    diffs = _close(curve, {"steps": golden["steps"], "eval": golden["eval"]}, "curve")
    assert not diffs, (f"the loss curve moved (rtol {GOLDEN_RTOL}); if that is intended, regenerate it with "
                       "CONDPT_UPDATE_GOLDEN=1:\n" + "\n".join(diffs))


def test_zero3_two_processes_train_and_export(runs, zero2_full):
    out = runs / "zero3"
    launch(3, out, [*TINY, "train.max_steps=6"])
    _check_export(out, 6)
    z2, z3 = _losses(zero2_full), _losses(out)
    # same data, tokenizer and model shape; ZeRO-3 initialises partitioned weights (zero.Init), so the
    # first losses agree only to the scale of a random initialisation (≈ ln vocab)
    assert z3[1] == pytest.approx(z2[1], rel=0.02)


def test_sigterm_checkpoint_then_resume_reproduces_losses(runs, zero2_full):
    out = runs / "zero2-interrupted"
    proc = start(2, out, [*TINY, f"train.max_steps={ZERO2_STEPS}"])
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and len(_losses(out)) >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)  # to the launcher, which forwards it to both ranks
    proc.wait(timeout=300)
    rows = _rows(out)
    stopped = [r for r in rows if r.get("event") == "preempted"]
    assert stopped, log_path(out).read_text()[-4000:]
    k = stopped[-1]["step"]
    assert 3 <= k < ZERO2_STEPS and not (out / "final").exists()
    ckpt = out / "checkpoints" / f"step_{k:08d}"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == k

    launch(2, out, [*TINY, f"train.max_steps={ZERO2_STEPS}"])  # resume: auto picks the latest checkpoint
    assert any(r.get("event") == "resumed" for r in _rows(out))
    resumed, reference = _losses(out), _losses(zero2_full)
    assert sorted(resumed) == sorted(reference)
    for step in reference:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), f"step {step}"
    assert (out / "final" / "model.safetensors").is_file()
