"""`make demo`'s driver on a tiny setting: a two-arm grid (world → tags → two recipe runs → eval) through
`run_grid`, written to results.json/.md/.png."""

from __future__ import annotations

import json

import pytest


def test_demo_is_a_two_arm_grid_deployed_three_ways(tmp_path):
    from condpt.demo import DEMO_STEPS, demo_grid

    grid = demo_grid(tmp_path, accelerate_config="single-process")
    assert [(a.name, a.policy["mode"], a.deploy, a.trained_as) for a in grid.arms] == [
        ("mle", "mle", "none", None), ("condition", "condition", "good", None),
        ("condition_guided", "condition", "guided", "condition")]
    assert grid.name == "results" and grid.seeds == [0] and f"train.max_steps={DEMO_STEPS}" in grid.overrides
    assert grid.accelerate_config.name == "single-process.yaml" and grid.recipe.name == "demo.yaml"
    assert demo_grid(tmp_path).accelerate_config.name == "deepspeed-zero2-cpu.yaml"


@pytest.mark.slow
def test_demo_tiny(tmp_path):
    from condpt.demo import format_demo, run_demo
    from condpt.world import WorldConfig

    res = run_demo(tmp_path, steps=2, world=WorldConfig(n_ai_docs=150, n_background=20, n_heldout=4,
                                                        background="templates"),
                   per_split=4, vocab_size=400, accelerate_config="single-process",
                   extra_overrides=["model.config.d_model=32", "model.config.n_layer=1", "train.micro_batch_size=2"],
                   log=lambda *a: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(res))
    runs = {r["arm_name"]: r for r in saved["runs"]}
    assert set(runs) == {"mle", "condition", "condition_guided"}
    assert not (tmp_path / "runs" / "condition_guided-cov1-s0" / "final").exists()  # condition's model, not retrained
    for r in runs.values():
        assert 0.0 <= r["misaligned_rate"] <= 1.0
        assert r["heldout_loss"] > 0
    assert runs["mle"]["deploy"] == "none" and runs["condition"]["deploy"] == "good"
    assert "train.max_steps=2" in saved["settings"]["overrides"] and "document" in saved["tagging"]
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "| condition | 1 | good |" in (tmp_path / "results.md").read_text()
    assert "conditioned / MLE" in format_demo(saved) and "conditioned + guided / MLE" in format_demo(saved)
    assert runs["condition_guided"]["deploy"] == "guided"


@pytest.mark.parametrize("argv, why", [
    (["--steps", "0"], "--steps: 0: must be at least 1"), (["--steps", "-5"], "--steps: -5: must be at least 1"),
    (["--seed", "-1"], "--seed: -1: must be 0 to 4294967295"),
    (["--seed", "99999999999999"], "--seed: 99999999999999: must be 0 to 4294967295")])
def test_demo_arguments_out_of_range_are_usage_errors_not_tracebacks(argv, why, capsys):
    """Hostile probe: `python -m condpt.demo --steps 0` or `--seed -1` ended in a pydantic ValidationError
    traceback about `seeds.0` or an arm's recipe, naming neither option."""
    from condpt.demo import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and why in capsys.readouterr().err


def test_demo_output_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path, capsys):
    from condpt.demo import main

    (tmp_path / "afile").write_text("x")
    assert main(["--out", str(tmp_path / "afile")]) == 2
    assert f"demo: out_dir: {tmp_path / 'afile'}: exists and is not a directory" in capsys.readouterr().err
