"""Confidence-aware conditioning (`data.policy.band`) in the real recipe: `accelerate launch` with DeepSpeed
ZeRO-2 and ZeRO-3 on 2 CPU processes. The band splits the tiny corpus into confident-good (`<|good|>`),
confident-bad (`<|bad|>`) and an uncertain band trained without a tag; the run logs a loss for each, the
export reloads and generates under `<|good|>` without emitting a control token."""

from __future__ import annotations

import json

import pytest
from tiny_launch import TINY, launch

pytestmark = pytest.mark.slow

STEPS = 8
# recipes/data/tiny-tagged.jsonl: scores 0.03-0.99; about half below 0.18, a tenth from 0.96 on
BAND = "{low: 0.18, high: 0.96}"
OVERRIDES = [*TINY, f"train.max_steps={STEPS}", f"data.policy.band={BAND}"]


@pytest.mark.parametrize("zero", [2, 3])
def test_band_trains_and_exports(zero, tmp_path):
    from condpt.generate import Generator
    from tokenizer_ext import Manifest

    out = tmp_path / f"band-zero{zero}"
    launch(zero, out, OVERRIDES)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    start = next(r for r in rows if r.get("event") == "start")
    assert start["processes"] == 2 and "DEEPSPEED" in start["distributed_type"]
    train_rows = [r for r in rows if "loss" in r]
    assert len(train_rows) == STEPS and train_rows[-1]["loss"] < train_rows[0]["loss"]
    # all three places a document can land are trained on
    seen = set().union(*(r["loss_by_tag"] for r in train_rows))
    assert {"good", "bad", "untagged"} <= seen, seen
    final = out / "final"
    manifest = Manifest.load(final)
    gen = Generator.load(final)
    samples = gen.generate_ids("The machine", condition="good", n=4, max_new_tokens=8, seed=0)
    assert all(set(manifest.control_ids).isdisjoint(s) for s in samples)
