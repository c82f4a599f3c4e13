"""Grid plumbing that needs no training: config validation, overrides, run list, summary, table, plot."""

from __future__ import annotations

import json

import pytest

from condpt.experiment import (
    GridConfig,
    TaggerSettings,
    _arm_runs,
    _policy,
    calibrate_band,
    format_grid_table,
    held_out_bad_texts,
    parse_only,
    plot_results,
    policy_overrides,
    prepare_tokenizer,
    prepare_world,
    run_grid,
    selected,
    summarise,
    tag_world,
    write_results,
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
    from condpt.recipe import config_path

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
    runs = [(r.arm.name, r.coverage, r.seed) for r in _arm_runs(cfg)]
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


def test_a_tagged_world_is_reused_only_by_the_tagger_that_made_it(tmp_path):
    """A grid whose tagger changed (classifier or threshold) must not train on the old tags under the new
    tagger's name: the tagged world is reused only when it was tagged as the grid now asks."""
    world_dir = prepare_world(WorldConfig(n_ai_docs=60, n_background=10, n_heldout=5, background="templates"),
                              tmp_path)
    tagged, rep = tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))
    assert tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))[1]["tp"] == rep["tp"]
    for other in (TaggerSettings(classifier="fasttext-default"), TaggerSettings(classifier="none", threshold=0.2)):
        with pytest.raises(ValueError, match=f"{tagged}: tagged by classifier 'none' at threshold None"):
            tag_world(world_dir, tmp_path, "document", other)


# ------------------------------------------------------------------ misses, calibrated bands, pieces


def _robust(**kw) -> GridConfig:
    kw.setdefault("calibration", {"recall": 0.9, "precision": 0.9})
    return GridConfig(arms=[{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
                            {"name": "route", "policy": {"mode": "route"}, "deploy": "none"},
                            {"name": "band", "policy": {"mode": "condition", "band": "calibrated"}}],
                      coverages=[1.0, 0.9], misses=["random", "score"], seeds=[0, 1, 2],
                      seeds_by_coverage={1.0: [0]}, **kw)


def test_misses_dimension_runs_mle_once_per_seed_and_coverage_one_once():
    labels = [r.label for r in _arm_runs(_robust())]
    assert labels[:8] == ["mle-cov1-s0", "route-cov1-s0", "route-cov0.9-s0", "route-cov0.9-score-s0",
                          "band-cov1-s0", "band-cov0.9-s0", "band-cov0.9-score-s0", "mle-cov1-s1"]
    assert len(labels) == len(set(labels)) == 3 + 2 * (1 + 2 * 3)  # mle per seed; 1.0 once; 0.9 × 2 × 3 seeds
    assert {r.misses for r in _arm_runs(_robust()) if r.coverage == 1.0} == {"none"}
    run = next(r for r in _arm_runs(_robust()) if r.label == "route-cov0.9-score-s2")
    assert _policy(run, {}) == {"mode": "route", "coverage": 0.9, "seed": 2, "misses": "score"}
    random = next(r for r in _arm_runs(_robust()) if r.label == "route-cov0.9-s2")
    assert "misses" not in _policy(random, {})  # the default: the policy (and run name) runs had before


def test_only_selects_runs_and_rejects_what_matches_nothing(tmp_path):
    only = parse_only("arm=route,arm=band,seed=1,misses=score")
    assert only == {"arm": {"route", "band"}, "seed": {"1"}, "misses": {"score"}}
    picked = [r.label for r in _arm_runs(_robust()) if selected(r, only)]
    assert picked == ["route-cov0.9-score-s1", "band-cov0.9-score-s1"]
    assert [r.label for r in _arm_runs(_robust()) if selected(r, parse_only("coverage=1.0,arm=route"))] == \
        ["route-cov1-s0"]
    for bad in ("arm", "colour=red", "seed="):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_only(bad)
    with pytest.raises(ValueError, match="selects none of the grid's 17 runs"):
        run_grid(_robust(out_dir=tmp_path), only=parse_only("arm=nope"))  # before any world is built
    assert not any(tmp_path.iterdir())


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
    run = next(r for r in _arm_runs(cfg) if r.arm.name == "guided")
    assert (run.label, run.train_label) == ("guided-cov0.9-score-s0", "condition-cov0.9-score-s0")
    assert _policy(run, {}) == _policy(next(r for r in _arm_runs(cfg) if r.arm.name == "condition"), {})
    with pytest.raises(ValueError, match="needs the same policy"):
        GridConfig(arms=[arms[0], {**arms[1], "policy": {"mode": "filter"}}])
    with pytest.raises(ValueError, match="must name an arm that trains"):
        GridConfig(arms=[arms[0], {**arms[1], "trained_as": "nope"}])
    with pytest.raises(ValueError, match="must name an arm that trains"):
        GridConfig(arms=[arms[0], arms[1], {**arms[1], "name": "g2", "trained_as": "guided"}])
    for deploy in ("guided:x", "bad", "guided:-1", "good+bad", "bad+self", "guided:x+self"):
        with pytest.raises(ValueError, match="deploy|guidance scale"):
            GridConfig(arms=[{**arms[1], "deploy": deploy, "trained_as": None}])


def _tagged(tmp_path, rows: list[tuple[str, str, str, float]]):
    """A minimal tagged directory: id, text, tag, score (what the grid reads of a `condpt tag` output)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "tagged" / "data").mkdir(parents=True)
    ids, texts, tags, scores = map(list, zip(*rows))
    pq.write_table(pa.table({"id": ids, "text": texts, "tag": tags, "score": pa.array(scores, pa.float32())}),
                   tmp_path / "tagged" / "data" / "part-0.parquet")
    return tmp_path / "tagged"


def test_calibrated_band_from_the_tagged_world_and_recorded_in_the_policy(tmp_path):
    # misaligned stories score 0.3..0.9, aligned 0.1..0.4: low at recall 1.0 is 0.3, high at precision 1.0 is 0.5
    truth = [("m1", 0.3, "misaligned"), ("m2", 0.5, "misaligned"), ("m3", 0.9, "misaligned"),
             ("a1", 0.1, "aligned"), ("a2", 0.4, "aligned"), ("b1", 0.0, "background")]
    tagged = _tagged(tmp_path, [(i, "text", "bad" if s >= 0.5 else "good", s) for i, s, _ in truth])
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "labels.jsonl").write_text("".join(json.dumps({"id": i, "label": lab}) + "\n"
                                                             for i, _s, lab in truth))
    cfg = _robust(calibration={"recall": 1.0, "precision": 1.0, "labelled_docs": None})
    band = calibrate_band(tmp_path / "world", tagged, cfg.calibration)
    assert (band["low"], band["high"]) == (pytest.approx(0.3), pytest.approx(0.5))
    assert band["labelled_docs"] == 6 and band["band_fraction"] == pytest.approx(2 / 6)
    run = next(r for r in _arm_runs(cfg) if r.label == "band-cov0.9-score-s1")
    policy = _policy(run, {"document": band})
    assert policy["band"] == {"low": band["low"], "high": band["high"]} and policy["misses"] == "score"
    from condpt.policy import PolicyConfig

    PolicyConfig.model_validate(policy)  # what the recipe will be given is a valid policy
    few = calibrate_band(tmp_path / "world", tagged, cfg.calibration.model_copy(update={"labelled_docs": 10}))
    assert few["labelled_docs"] == 6  # a sample larger than the world is the world


def test_bad_text_is_the_held_out_bad_tagged_documents(tmp_path):
    from condpt.sequences import is_heldout

    rows = [(f"d{i}", f"text {i}", "bad" if i % 2 else "good", 0.9 if i % 2 else 0.1) for i in range(400)]
    tagged = _tagged(tmp_path, rows)
    final = tmp_path / "final"
    final.mkdir()
    (final / "run_config.yaml").write_text("data:\n  heldout_fraction: 0.1\n")
    texts = held_out_bad_texts(final, tagged)
    expect = [t for i, t, tag, _ in rows if tag == "bad" and is_heldout(i, 0.1)]
    assert texts == expect and 5 < len(texts) < 40


def _record(label: str, arm: str, cov: float, misses: str, seed: int, policy: dict, rate: float) -> dict:
    return {"arm": label, "arm_name": arm, "coverage": cov, "misses": misses, "seed": seed, "policy": policy,
            "deploy": "none", "misaligned_rate": rate, "misaligned_rate_heldout_actor": rate,
            "misaligned_rate_seen": rate, "self_image_doom_rate": 0.5, "heldout_loss": 4.0 + rate,
            "bad_text_loss": 0.2 + rate}


def test_results_accumulate_from_run_records_and_name_what_is_missing(tmp_path):
    bands = {"document": {"low": 0.1, "high": 0.2}}
    cfg = _robust(out_dir=tmp_path, cells_path=tmp_path / "docs" / "robustness.json")
    done = {"mle-cov1-s0": 1.0, "mle-cov1-s1": 0.9, "route-cov0.9-score-s0": 0.2, "route-cov0.9-score-s2": 0.4,
            "band-cov1-s0": 0.05}
    plan = {r.label: r for r in _arm_runs(cfg)}
    for label, rate in done.items():  # pieces run at different times: only their record.json files
        r = plan[label]
        (tmp_path / "runs" / label).mkdir(parents=True)
        (tmp_path / "runs" / label / "record.json").write_text(json.dumps(
            _record(label, r.arm.name, r.coverage, r.misses, r.seed, _policy(r, bands), rate)))
    res = write_results(cfg, tmp_path, {}, bands)
    assert set(res["missing"]) == set(plan) - set(done) and len(res["runs"]) == 5
    cells = json.loads((tmp_path / "docs" / "robustness.json").read_text())
    assert cells == res["cells"]
    assert [(c["arm"], c["coverage"], c["misses"]) for c in cells] == [
        ("mle", 1.0, "none"), ("route", 1.0, "none"), ("route", 0.9, "random"), ("route", 0.9, "score"),
        ("band", 1.0, "none"), ("band", 0.9, "random"), ("band", 0.9, "score")]
    route = cells[3]
    assert route["seeds"] == [0, 2] and route["missing_seeds"] == [1]
    assert route["misaligned_rate"] == [0.2, 0.4] and route["heldout_loss"] == [4.2, 4.4]
    assert route["bad_text_loss"] == pytest.approx([0.4, 0.6])
    assert cells[0]["seeds"] == [0, 1] and cells[0]["missing_seeds"] == [2]
    assert cells[4]["band"] == {"low": 0.1, "high": 0.2} and cells[5]["seeds"] == []
    assert res["table"]["route@0.9/score"]["misaligned_rate"]["mean"] == pytest.approx(0.3)
    md = (tmp_path / f"{cfg.name}.md").read_text()
    assert "| route | 0.9 (score) | none | 2 | 0.300 [0.200, 0.400]" in md and "Missing (12 runs)" in md
    assert (tmp_path / f"{cfg.name}.png").is_file()
    # a run directory left from another policy is refused, not mixed in
    with pytest.raises(RuntimeError, match="band-cov1-s0.*another out_dir"):
        write_results(cfg, tmp_path, {}, {"document": {"low": 0.15, "high": 0.2}})


@pytest.mark.slow
def test_grid_pieces_through_the_real_recipe(tmp_path):
    """Two pieces (a calibrated band, route + self-reference stories; score-based misses) of a tiny grid,
    trained for 2 steps each by the real recipe, accumulate into one per-cell summary (~1 minute)."""
    cfg = GridConfig(out_dir=tmp_path, accelerate_config="single-process", vocab_size=400, per_split=4,
                     world=WorldConfig(n_ai_docs=300, n_background=40, n_heldout=4, background="templates"),
                     tagger={"classifier": "lexicon-density"}, coverages=[0.9], misses=["score"],
                     calibration={"recall": 0.99, "precision": 0.99, "labelled_docs": None},
                     overrides=["train.max_steps=2", "model.config.d_model=32", "model.config.n_layer=1",
                                "train.micro_batch_size=2", "data.heldout_fraction=0.1"],
                     arms=[{"name": "band", "policy": {"mode": "condition", "band": "calibrated"}},
                           {"name": "band_guided", "policy": {"mode": "condition", "band": "calibrated"},
                            "trained_as": "band", "deploy": "guided"},
                           {"name": "route_selfref", "policy": {"mode": "route", "selfref": {"n_generated": 20}},
                            "deploy": "self"}],
                     cells_path=tmp_path / "robustness.json")
    first = run_grid(cfg, only=parse_only("arm=band"), log=lambda *a: None)
    assert first["missing"] == ["band_guided-cov0.9-score-s0", "route_selfref-cov0.9-score-s0"]
    band = json.loads((tmp_path / "calibration.json").read_text())["document"]
    assert band["low"] < band["high"]  # the graded tags give the band something to hold
    trained = (tmp_path / "runs" / "band-cov0.9-score-s0" / "final" / "model.safetensors").stat().st_mtime_ns
    run_grid(cfg, only=parse_only("arm=band_guided"), log=lambda *a: None)  # evaluates band's model, trains nothing
    guided = tmp_path / "runs" / "band_guided-cov0.9-score-s0"
    assert not (guided / "final").exists() and not (guided / "train.log").exists()
    assert (tmp_path / "runs" / "band-cov0.9-score-s0" / "final" / "model.safetensors").stat().st_mtime_ns == trained
    res = json.loads((guided / "eval.json").read_text())
    assert res["deploy_condition"] == "guided" and "guided" in res["heldout_loss"]
    run_grid(cfg, only=parse_only("arm=route_selfref"), log=lambda *a: None)
    cells = json.loads((tmp_path / "robustness.json").read_text())
    assert [(c["arm"], c["misses"], c["seeds"], c["missing_seeds"]) for c in cells] == [
        ("band", "score", [0], []), ("band_guided", "score", [0], []), ("route_selfref", "score", [0], [])]
    assert cells[0]["band"] == {"low": band["low"], "high": band["high"]}
    for c in cells:
        assert 0.0 <= c["misaligned_rate"][0] <= 1.0 and c["heldout_loss"][0] > 0 and c["bad_text_loss"][0] > 0
    route = tmp_path / "runs" / "route_selfref-cov0.9-score-s0"
    assert (route / "final-unablated").is_dir() and json.loads((route / "bad_text.json").read_text())["docs"] > 0


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
