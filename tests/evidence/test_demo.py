"""`make demo`'s driver on a tiny setting: world → tags → two recipe runs → eval → results.json + PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    from condpt.demo import format_demo, run_demo
    from condpt.world import WorldConfig

    res = run_demo(tmp_path, steps=2, world=WorldConfig(n_ai_docs=150, n_background=20, n_heldout=4,
                                                        background="templates"),
                   per_split=4, vocab_size=400, accelerate_config=REPO / "recipes/accelerate/single-process.yaml",
                   extra_overrides=["model.config.d_model=32", "model.config.n_layer=1", "train.micro_batch_size=2"],
                   log=lambda *a: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(res))
    for arm in ("mle", "condition"):
        assert 0.0 <= saved["arms"][arm]["misaligned_rate"] <= 1.0
        assert saved["arms"][arm]["heldout_loss"] > 0
    assert saved["arms"]["mle"]["deploy"] == "none" and saved["arms"]["condition"]["deploy"] == "good"
    assert saved["settings"]["steps"] == 2 and "tagging" in saved
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "conditioned / MLE" in format_demo(saved)
