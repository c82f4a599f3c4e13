"""Grid plumbing that needs no training: config validation, overrides, run list, summary, table, plot."""

from __future__ import annotations

import json

import pytest

from condpt.experiment import (
    GridConfig,
    TaggerSettings,
    _arm_runs,
    format_grid_table,
    plot_results,
    policy_overrides,
    prepare_tokenizer,
    prepare_world,
    summarise,
    tag_world,
)
from condpt.world import WorldConfig


def _grid(**kw) -> GridConfig:
    return GridConfig(arms=[{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
                            {"name": "condition", "policy": {"mode": "condition"}}], **kw)


def test_grid_yaml_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("arms: [{name: x, deploy: sometimes}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: arms\.0\.deploy"):
        GridConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="not found"):
        GridConfig.from_yaml(tmp_path / "missing.yaml")


def test_shipped_grids_parse():
    from pathlib import Path

    grids = sorted((Path(__file__).resolve().parents[2] / "examples" / "grids").glob("*.yaml"))
    assert grids
    for g in grids:
        cfg = GridConfig.from_yaml(g)
        assert cfg.recipe.is_file() and cfg.accelerate_config.is_file(), g


def test_grid_input_paths_are_relative_to_the_grid_file(tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    (exp / "cfg").mkdir(parents=True)
    (exp / "clf").mkdir()
    for f in ("cfg/run.yaml", "acc.yaml", "gutenberg.jsonl"):
        (exp / f).write_text("{}\n")
    (exp / "g.yaml").write_text("recipe: cfg/run.yaml\naccelerate_config: acc.yaml\n"
                                "world: {gutenberg_path: gutenberg.jsonl}\ntagger: {classifier: clf}\n"
                                "arms: [{name: mle, policy: {mode: mle}}]\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = GridConfig.from_yaml("../exp/g.yaml")
    assert cfg.recipe == exp / "cfg" / "run.yaml" and cfg.accelerate_config == exp / "acc.yaml"
    assert cfg.world.gutenberg_path == exp / "gutenberg.jsonl" and cfg.tagger.classifier == str(exp / "clf")
    assert str(cfg.out_dir) == "runs/grid"  # an output: relative to the working directory, like output_dir


def test_grid_configs_by_shipped_name(tmp_path):
    from condpt.recipe import CONFIGS

    g = tmp_path / "g.yaml"
    g.write_text("recipe: demo\naccelerate_config: single-process\narms: [{name: mle}]\n")
    cfg = GridConfig.from_yaml(g)
    assert cfg.recipe == CONFIGS / "run" / "demo.yaml"
    assert cfg.accelerate_config == CONFIGS / "accelerate" / "single-process.yaml"
    assert _grid().recipe == cfg.recipe and _grid().accelerate_config.name == "deepspeed-zero2-cpu.yaml"
    g.write_text("accelerate_config: zero9\narms: [{name: mle}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: accelerate_config: .*zero9.*shipped: deepspeed-zero2-cpu"):
        GridConfig.from_yaml(g)
    g.write_text("recipe: nowhere/run.yaml\narms: [{name: mle}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: recipe: .*nowhere/run\.yaml: no such file"):
        GridConfig.from_yaml(g)


def test_runs_skip_coverage_for_mle_and_overrides_are_yaml():
    cfg = _grid(coverages=[1.0, 0.9], seeds=[0, 1])
    runs = [(a.name, c, s) for a, c, s in _arm_runs(cfg)]
    assert runs == [("mle", 1.0, 0), ("condition", 1.0, 0), ("condition", 0.9, 0),
                    ("mle", 1.0, 1), ("condition", 1.0, 1), ("condition", 0.9, 1)]
    assert policy_overrides({"mode": "condition", "coverage": 0.9, "selfref": {"n_generated": 5}}) == [
        "data.policy.mode=\"condition\"", "data.policy.coverage=0.9", 'data.policy.selfref={"n_generated": 5}']


def test_summary_table_and_plot(tmp_path):
    cfg = _grid(seeds=[0, 1])
    runs = []
    for seed, (m_mle, m_cond) in enumerate([(0.9, 0.05), (0.8, 0.15)]):
        for arm, rate, loss in (("mle", m_mle, 4.0 + seed / 10), ("condition", m_cond, 4.05 + seed / 10)):
            runs.append({"arm": f"{arm}-s{seed}", "arm_name": arm, "coverage": 1.0, "seed": seed, "deploy": "good",
                         "misaligned_rate": rate, "misaligned_rate_heldout_actor": rate,
                         "misaligned_rate_seen": rate, "self_image_doom_rate": 0.5, "heldout_loss": loss})
    res = summarise(runs, cfg, {})
    t = res["table"]["condition@1"]
    assert t["misaligned_rate"]["mean"] == pytest.approx(0.10)
    assert (t["misaligned_rate"]["min"], t["misaligned_rate"]["max"]) == (0.05, 0.15)
    md = format_grid_table(res)
    assert "| condition | 1 | good | 2 | 0.100 [0.050, 0.150]" in md
    assert "+1.23%" in md  # 4.10 / 4.05 - 1: relative to the MLE mean
    png = plot_results(res, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    json.dumps(res)


def test_shared_world_tags_and_tokenizer(tmp_path):
    world = WorldConfig(n_ai_docs=120, n_background=20, n_heldout=5, background="templates")
    world_dir = prepare_world(world, tmp_path)
    assert prepare_world(world, tmp_path) == world_dir  # reused, not regenerated
    tagged, rep = tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))
    assert list((tagged / "data").rglob("*.parquet"))
    assert rep["tp"] + rep["fn"] > 0 and 0.0 <= rep["precision"] <= 1.0
    tok_dir = prepare_tokenizer(world_dir, tmp_path, 400)
    from tokenizer_ext import Manifest

    m = Manifest.load(tok_dir)
    assert set(m.tags) == {"good", "bad"}
