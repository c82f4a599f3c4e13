"""The grid YAML (`condpt.experiment_config`): paths relative to the file, shipped names, and everything that
cannot run refused at load, naming the file and field."""

from __future__ import annotations

import json

import pytest
from experiment_grids import small_grid
from pydantic import ValidationError

from condpt.experiment_config import GridConfig
from condpt.experiment_plan import arm_runs, run_policy
from condpt.world import WorldConfig


def test_grid_yaml_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("arms: [{name: x, deploy: sometimes}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: arms\.0\.deploy"):
        GridConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="not found"):
        GridConfig.from_yaml(tmp_path / "missing.yaml")



def test_shipped_grids_parse():
    from pathlib import Path

    grids = sorted((Path(__file__).resolve().parents[1] / "examples" / "grids").glob("*.yaml"))
    assert grids
    for g in grids:
        cfg = GridConfig.from_yaml(g)
        assert cfg.recipe.is_file() and cfg.accelerate_config.is_file(), g



def test_grid_input_paths_are_relative_to_the_grid_file(tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    (exp / "cfg").mkdir(parents=True)
    (exp / "clf").mkdir()
    for f in ("acc.yaml", "gutenberg.jsonl"):
        (exp / f).write_text("{}\n")
    from condpt.shipped import config_path

    (exp / "cfg" / "run.yaml").write_bytes(config_path("demo", "run").read_bytes())  # the grid checks its values
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
    from condpt.shipped import CONFIGS

    g = tmp_path / "g.yaml"
    g.write_text("recipe: demo\naccelerate_config: single-process\narms: [{name: mle}]\n")
    cfg = GridConfig.from_yaml(g)
    assert cfg.recipe == CONFIGS / "run" / "demo.yaml"
    assert cfg.accelerate_config == CONFIGS / "accelerate" / "single-process.yaml"
    assert small_grid().recipe == cfg.recipe and small_grid().accelerate_config.name == "deepspeed-zero2-cpu.yaml"
    g.write_text("accelerate_config: zero9\narms: [{name: mle}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: accelerate_config: .*zero9.*shipped: deepspeed-zero2-cpu"):
        GridConfig.from_yaml(g)
    g.write_text("recipe: nowhere/run.yaml\narms: [{name: mle}]\n")
    with pytest.raises(ValueError, match=r"g\.yaml: recipe: .*nowhere/run\.yaml: no such file"):
        GridConfig.from_yaml(g)



def test_calibrated_band_needs_targets_and_condition():
    arms = [{"name": "b", "policy": {"mode": "condition", "band": "calibrated"}}]
    with pytest.raises(ValueError, match="needs the grid's calibration"):
        GridConfig(arms=arms)
    with pytest.raises(ValueError, match="only mode condition uses"):
        GridConfig(arms=[{"name": "b", "policy": {"mode": "route", "band": "calibrated"}}],
                   calibration={"recall": 0.9, "precision": 0.9})
    with pytest.raises(ValueError, match="'guess'"):
        GridConfig(arms=[{"name": "b", "policy": {"band": "guess"}}])
    with pytest.raises(ValueError, match="distinct"):
        GridConfig(arms=[{"name": "b"}, {"name": "b"}])
    with pytest.raises(ValueError, match=r"distinct.*case.*\['A', 'a'\]"):  # one directory on macOS and Windows
        GridConfig(arms=[{"name": "a"}, {"name": "A"}])
    with pytest.raises(ValueError, match=r"\['misses'\], which the grid sets per run"):
        GridConfig(arms=[{"name": "b", "policy": {"misses": "score"}}])
    with pytest.raises(ValueError, match=r"seeds_by_coverage: \[0.8\] not among coverages"):
        GridConfig(arms=[{"name": "b"}], seeds_by_coverage={0.8: [1]})



def test_an_arm_trained_as_another_shares_its_models_and_deploys_its_own_way():
    arms = [{"name": "condition", "policy": {"mode": "condition"}},
            {"name": "guided", "policy": {"mode": "condition"}, "trained_as": "condition", "deploy": "guided:2"}]
    cfg = GridConfig(arms=arms, coverages=[0.9], misses=["score"])
    for deploy in ("none", "good", "self", "guided", "guided:2", "good+self", "guided:2+self"):
        GridConfig(arms=[{**arms[1], "deploy": deploy, "trained_as": None}])
    run = next(r for r in arm_runs(cfg) if r.arm.name == "guided")
    assert (run.label, run.train_label) == ("guided-cov0.9-score-s0", "condition-cov0.9-score-s0")
    assert run_policy(run, {}) == run_policy(next(r for r in arm_runs(cfg) if r.arm.name == "condition"), {})
    with pytest.raises(ValueError, match="needs the same policy"):
        GridConfig(arms=[arms[0], {**arms[1], "policy": {"mode": "filter"}}])
    with pytest.raises(ValueError, match="must name an arm that trains"):
        GridConfig(arms=[arms[0], {**arms[1], "trained_as": "nope"}])
    with pytest.raises(ValueError, match="must name an arm that trains"):
        GridConfig(arms=[arms[0], arms[1], {**arms[1], "name": "g2", "trained_as": "guided"}])
    for deploy in ("guided:x", "bad", "guided:-1", "good+bad", "bad+self", "guided:x+self"):
        with pytest.raises(ValueError, match="deploy|guidance scale"):
            GridConfig(arms=[{**arms[1], "deploy": deploy, "trained_as": None}])



@pytest.mark.parametrize(("extra", "field", "why"), [
    ({"coverages": [1.5]}, "coverages.0", "less than or equal to 1"),
    ({"coverages": [float("nan")]}, "coverages.0", "finite"),
    ({"coverages": [True]}, "coverages.0", "valid number"),
    ({"coverages": [0.5, 0.5]}, "coverages", "twice"),
    ({"coverages": []}, "coverages", "at least 1"),
    ({"seeds": [-1]}, "seeds.0", "greater than or equal to 0"),
    ({"seeds": [True]}, "seeds.0", "valid integer"),
    ({"seeds": [10**26]}, "seeds.0", "less than or equal to"),
    ({"seeds": [0, 0]}, "seeds", "twice"),
    ({"seeds": []}, "seeds", "at least 1"),
    ({"misses": ["score", "score"]}, "misses", "twice"),
    ({"coverages": [1.0, 0.5], "seeds_by_coverage": {0.5: [-1]}}, "seeds_by_coverage.0.5.0", "greater than or equal to 0"),
    ({"arms": [{"name": ""}]}, "arms.0.name", "at least 1 character"),
    ({"arms": [{"name": "../x"}]}, "arms.0.name", "plain file or directory name"),
    ({"arms": [{"name": "a", "policy": {"mode": "bogus"}}]}, "arms.0.policy: mode", "'mle'"),
    ({"arms": [{"name": "a", "policy": {"modee": "mle"}}]}, "arms.0.policy: modee", "Extra inputs"),
    ({"arms": [{"name": "a", "policy": {"band": {"low": 0.9, "high": 0.1}}}]}, "arms.0.policy: band", "must not exceed"),
    ({"arms": [{"name": "a", "policy": {"mode": "route", "route": {"width": 0}}}]}, "arms.0.policy: route.width",
     "greater than or equal to 1"),
    ({"arms": [{"name": "a", "policy": {"mode": "route", "route": {"coherence": {"steps": True}}}}]},
     "arms.0.policy: route.coherence.steps", "valid integer"),
    ({"arms": [{"name": "a", "policy": {"mode": "route", "route": {"coherence": {"lr_scale": float("nan")}}}}]},
     "arms.0.policy: route.coherence.lr_scale", "finite"),
    ({"arms": [{"name": "a", "policy": {"mode": "mle", "upweight_good": float("inf")}}]},
     "arms.0.policy: upweight_good", "finite"),
    ({"arms": [{"name": "a", "policy": {"mode": "mle"}, "deploy": "guided"}]}, "arm 'a'", "deploy 'guided' uses a tag"),
    ({"arms": [{"name": "a", "policy": {"mode": "route"}, "deploy": "good"}]}, "arm 'a'", "deploy 'good' uses a tag"),
    ({"arms": [{"name": "a", "policy": {"selfref": {"stories_path": "/absent.jsonl"}}}]},
     "arms.0.policy: selfref.stories_path", "not found"),
    ({"arms": [{"name": "a", "overrides": ["optim.lr"]}]}, "arms.0.overrides.0", "key=value"),
    ({"overrides": ["train.max_steps"]}, "overrides.0", "key=value"),
    ({"overrides": ["train.max_steps=true"]}, "train.max_steps (override)", "valid integer"),
    ({"arms": [{"name": "a", "overrides": ["optim.lr=.inf"]}]}, "optim.lr (override)", "finite"),
    ({"overrides": ["optim.lrr=1"]}, "optim.lrr (override)", "did you mean optim.lr"),
    ({"tagger": {"classifier": "nosuch"}}, "tagger.classifier", "no such directory"),
    ({"tagger": {"classifier": "none", "threshold": float("nan")}}, "tagger.threshold", "finite"),
    ({"tagger": {"classifier": "none", "threshold": 2}}, "tagger.threshold", "less than or equal to 1"),
    ({"per_split": 0}, "per_split", "greater than or equal to 1"),
    ({"eval_threads": True}, "eval_threads", "valid integer"),
    ({"vocab_size": True}, "vocab_size", "valid integer"),
    ({"out_dir": ""}, "out_dir", "must not be empty"),
    ({"name": ""}, "name", "at least 1 character"),
    ({"name": "../../x"}, "name", "plain file or directory name"),
    ({"world": {"n_ai_docs": True}}, "world.n_ai_docs", "valid integer"),
    ({"world": {"doom_ratio": float("inf")}}, "world.doom_ratio", "finite"),
    ({"world": {"seed": "1"}}, "world.seed", "valid integer"),
    ({"arms": [{"name": "a", "policy": {"bad_role": "toxic"}}]}, "arm 'a': policy.bad_role",  # hostile probes:
     "'toxic' has no control token in the grid's tokenizer (its tags: good, bad)"),  # each failed at the
    ({"arms": [{"name": "a", "policy": {"band": {"low": 0.1, "high": 0.9, "uncertain_role": "unsure"}}}]},
     "arm 'a': policy.band.uncertain_role", "'unsure' has no control token"),  # recipe's start, minutes in
    ({"arms": [{"name": "a", "policy": {"mode": "route", "route": {"layers": [10**9]}}, "deploy": "none"}]},
     "arm 'a': data.policy.route.layers", "block 1000000000 does not exist (the model has 3 blocks)"),
    ({"overrides": ["train.max_steps=5", "optim.lr=1e-3", "train.max_steps=50"]}, "overrides",  # hostile probe:
     "train.max_steps is set twice (train.max_steps=5, train.max_steps=50)"),  # the last won without a word
    ({"arms": [{"name": "a", "overrides": ["optim.lr=1e-3", " optim.lr =2e-3"]}]}, "arms.0.overrides", "set twice"),
    ({"world": {"n_ai_docs": 0}}, "world.n_ai_docs", "no misaligned stories"),  # hostile probes: a grid
    ({"world": {"n_heldout": 0}}, "world.n_heldout", "NaN"),  # of NaN losses, or of nothing to act on
])
def test_grid_refuses_what_cannot_run(tmp_path, extra, field, why):
    """Issue 9's probes on the grid YAML: strict types, finite numbers, ranges, each arm's policy validated
    as the recipe will, deploy conditions the arm's training gives a meaning: refused at load, naming the
    file and field, before a world is generated."""
    import yaml

    raw = {"tagger": {"classifier": "none"}, "arms": [{"name": "condition", "policy": {"mode": "condition"}}],
           **extra}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as e:
        GridConfig.from_yaml(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and f"{field}: " in msg and why in msg, msg



def test_a_world_config_round_trips_through_json():
    """world.json stores the config as JSON (a list for the commentary pair, a string for the path): the
    strict config still reads it back."""
    cfg = WorldConfig(n_ai_docs=10, gutenberg_path="g.jsonl", commentary=[0, 2])
    assert WorldConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg



def test_a_grid_file_name_that_is_not_utf8_still_names_the_results(tmp_path):
    """The default results stem comes from the file name; one that is not UTF-8 was refused with pydantic's
    'unable to parse raw data as a unicode string' (issue 9's probes: non-UTF-8 paths)."""
    import os

    path = tmp_path / os.fsdecode(b"g\xff.yaml")
    path.write_text("tagger: {classifier: none}\narms: [{name: a}]\n")
    assert GridConfig.from_yaml(path).name == "results-g\ufffd"


def test_a_grid_that_makes_no_runs_is_refused_at_load(tmp_path):
    """Hostile probe: every coverage's seeds emptied (`seeds_by_coverage: {0.5: []}`) loaded as a grid of 0
    runs, which run_grid then blamed on an --only the user never gave."""
    path = tmp_path / "g.yaml"
    path.write_text("tagger: {classifier: none}\narms: [{name: a}]\ncoverages: [0.5]\nseeds_by_coverage: {0.5: []}\n")
    with pytest.raises(ValueError, match=rf"^{path}: .*makes no runs"):
        GridConfig.from_yaml(path)


def test_coverages_that_share_a_run_label_are_refused(tmp_path):
    """Hostile probe: coverages 0.1234567 and 0.1234568 both label their runs cov0.123457, so the second
    reused the first's run directory (its model, its record) as its own."""
    path = tmp_path / "g.yaml"
    path.write_text("tagger: {classifier: none}\narms: [{name: a}]\ncoverages: [0.1234567, 0.1234568]\n")
    with pytest.raises(ValueError, match=rf"^{path}: coverages: .*0.1234567.*0.1234568.*cov0.123457"):
        GridConfig.from_yaml(path)


def test_a_grid_of_more_runs_than_anyone_can_train_is_refused_at_load_saying_how_many(tmp_path):
    """Hostile probe: 10 arms × 100 coverages × 1,000 seeds loaded as a grid of 1,000,000 runs (minutes each)
    and went on to build the world and start training. Refused at load, with the count."""
    cfg = {"tagger": {"classifier": "none"}, "arms": [{"name": f"a{i}"} for i in range(3)],
           "coverages": [round(0.01 * i, 2) for i in range(1, 101)], "seeds": list(range(34))}
    with pytest.raises(ValidationError, match=r"makes 10,200 runs .*at most 10,000"):
        GridConfig.model_validate(cfg)


def test_a_run_label_too_long_for_a_file_name_is_refused_at_load():
    """Hostile probe: a 250-character arm name loaded, built the world and tagged it, then failed with
    'File name too long' making the run directory (its label adds -cov1-s0)."""
    with pytest.raises(ValidationError, match=r"arm 'aaa.*-cov1-s0.*258 bytes.*255"):
        GridConfig.model_validate({"tagger": {"classifier": "none"}, "arms": [{"name": "a" * 250}]})
    with pytest.raises(ValidationError, match=r"name: .*260 bytes"):
        GridConfig.model_validate({"tagger": {"classifier": "none"}, "arms": [{"name": "a"}], "name": "r" * 255})
