"""Running a grid (`condpt.experiment`): the shared world, tags, tokenizer and calibrated band, the bad-text
measurement, and pieces of a tiny grid through the real recipe."""

from __future__ import annotations

import json
import re

import pytest
from experiment_grids import robust_grid

from condpt.experiment import (
    calibrate_band,
    held_out_bad_texts,
    prepare_tokenizer,
    prepare_world,
    run_grid,
    tag_world,
)
from condpt.experiment_config import GridConfig, TaggerSettings
from condpt.experiment_plan import arm_runs, parse_only, run_policy
from condpt.world import WorldConfig


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


def test_only_that_matches_nothing_is_refused_before_any_world_is_built(tmp_path):
    with pytest.raises(ValueError, match="arm 'nope' matches no run of the grid"):
        run_grid(robust_grid(out_dir=tmp_path), only=parse_only("arm=nope"))
    with pytest.raises(ValueError, match="selects none of the grid's 17 runs"):  # each value is some run's
        run_grid(robust_grid(out_dir=tmp_path), only=parse_only("arm=mle,misses=score"))
    assert not any(tmp_path.iterdir())


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
    cfg = robust_grid(calibration={"recall": 1.0, "precision": 1.0, "labelled_docs": None})
    band = calibrate_band(tmp_path / "world", tagged, cfg.calibration)
    assert (band["low"], band["high"]) == (pytest.approx(0.3), pytest.approx(0.5))
    assert band["labelled_docs"] == 6 and band["band_fraction"] == pytest.approx(2 / 6)
    run = next(r for r in arm_runs(cfg) if r.label == "band-cov0.9-score-s1")
    policy = run_policy(run, {"document": band})
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


def test_an_out_dir_holding_another_world_is_refused_not_regenerated_under_its_tags(tmp_path):
    """Hostile probe: a grid with another world config in a used out_dir regenerated world/ in place, then
    reused the old world's tags, tokenizer and trained runs (the tagged text of one world, the scenarios of
    another). Everything in out_dir derives from the world: another world is refused, the files kept."""
    world = WorldConfig(n_ai_docs=60, n_background=10, n_heldout=5, background="templates")
    world_dir = prepare_world(world, tmp_path)
    before = (world_dir / "train.jsonl").read_bytes()
    with pytest.raises(ValueError, match=rf"{world_dir}.*n_ai_docs: 60 there, 61 here.*another out_dir"):
        prepare_world(world.model_copy(update={"n_ai_docs": 61}), tmp_path)
    assert (world_dir / "train.jsonl").read_bytes() == before


def test_a_tokenizer_built_for_another_vocab_size_is_refused(tmp_path):
    """Hostile probe: a grid with another vocab_size in a used out_dir trained on the old tokenizer."""
    world_dir = prepare_world(WorldConfig(n_ai_docs=60, n_background=10, n_heldout=5, background="templates"),
                              tmp_path)
    tok = prepare_tokenizer(world_dir, tmp_path, 400)
    assert prepare_tokenizer(world_dir, tmp_path, 400) == tok
    with pytest.raises(ValueError, match=rf"{tok}: built with vocab_size 400, the grid asks for 500"):
        prepare_tokenizer(world_dir, tmp_path, 500)


def test_a_run_trained_under_other_settings_is_refused_not_evaluated_as_this_one(tmp_path):
    """Hostile probe: two grids sharing an out_dir with an arm of the same name but another policy (or
    overrides): the second found `final/`, skipped training, evaluated the first grid's model and recorded
    it under its own policy, so the stale-record check passed and the table mixed the two."""
    from condpt.experiment import TRAINED_WITH, run_arm

    train = tmp_path / "runs" / "a-cov1-s0"
    (train / "final").mkdir(parents=True)
    (train / "final" / "trainer_state.json").write_text("{}")
    kw = {"deploy": "none", "tagged": tmp_path, "tokenizer": tmp_path, "world_dir": tmp_path, "run_dir": train,
          "recipe": tmp_path / "demo.yaml", "accelerate_config": tmp_path / "acc.yaml", "seed": 0}
    (train / TRAINED_WITH).write_text(json.dumps({"recipe": "demo.yaml", "seed": 0,
                                                  "overrides": ['data.policy.mode="condition"']}))
    with pytest.raises(RuntimeError, match=rf"{train}: trained with .*condition.*now asks for .*filter.*remove"):
        run_arm("a-cov1-s0", policy={"mode": "filter"}, **kw)
    with pytest.raises(RuntimeError, match="train.max_steps=9"):
        run_arm("a-cov1-s0", policy={"mode": "condition"}, overrides=["train.max_steps=9"], **kw)
    assert not (train / "eval.json").exists()


def test_a_run_killed_in_a_write_is_redone_and_an_eval_of_other_settings_refused(tmp_path, monkeypatch):
    """Hostile probe: eval.json or bad_text.json cut short by a kill made every re-run a JSONDecodeError
    traceback naming no file (they were written in place); an eval.json scored under another deploy or
    per_split (an edited grid, another grid in the out_dir) was reused as this grid's. Now the files are
    written whole or not at all, one that cannot be read is redone, and one of other settings is refused."""
    import condpt.evaluate
    from condpt import experiment
    from condpt.experiment import TRAINED_WITH, run_arm

    calls = []

    def fake_eval(final, *, world_dir, deploy, per_split):
        calls.append("eval")
        return {"deploy_condition": deploy, "sizes": {"per_split": per_split}, "choices": {}, "self_image": {},
                "summary": {"misaligned_rate": 0.5, "heldout_loss": 4.0}}

    monkeypatch.setattr(condpt.evaluate, "evaluate", fake_eval)
    monkeypatch.setattr(experiment, "bad_text_loss", lambda final, tagged: calls.append("bad") or {"loss": 1.0})
    run = tmp_path / "runs" / "a-cov1-s0"
    (run / "final").mkdir(parents=True)
    (run / "final" / "trainer_state.json").write_text("{}")
    (run / TRAINED_WITH).write_text(json.dumps({"recipe": "demo.yaml", "seed": 0, "overrides": []}))
    (run / "eval.json").write_text('{"deploy_condition": "good", "sizes": {"per')  # killed mid-write
    (run / "record.json.tmp-999999").write_text("{")  # killed mid-write once writes were whole
    (run / "bad_text.json").write_text("{")
    kw = {"policy": {}, "tagged": tmp_path, "tokenizer": tmp_path, "world_dir": tmp_path, "run_dir": run,
          "recipe": tmp_path / "demo.yaml", "accelerate_config": tmp_path / "acc.yaml", "seed": 0}
    rec = run_arm("a-cov1-s0", deploy="good", per_split=4, **kw)
    assert calls == ["eval", "bad"] and rec["misaligned_rate"] == 0.5 and rec["bad_text_loss"] == 1.0
    assert json.loads((run / "eval.json").read_text())["sizes"] == {"per_split": 4}
    again = run_arm("a-cov1-s0", deploy="good", per_split=4, **kw)
    assert {k: v for k, v in again.items() if "seconds" not in k} == {k: v for k, v in rec.items() if "seconds" not in k}
    assert calls == ["eval", "bad"]  # both reused
    for other in ({"deploy": "none", "per_split": 4}, {"deploy": "good", "per_split": 8}):
        with pytest.raises(RuntimeError, match=rf"{run / 'eval.json'}: evaluated with .*remove it"):
            run_arm("a-cov1-s0", **other, **kw)
    assert not list(run.glob("*.tmp*"))


def test_outputs_that_cannot_be_written_are_named_before_the_world_is_built(tmp_path):
    """Hostile probe: an out_dir that is a file (or under one) was a FileExistsError / NotADirectoryError
    traceback; a cells_path that is a directory failed only when the first run's results were written, after
    its training."""
    from experiment_grids import small_grid

    afile, adir = tmp_path / "afile", tmp_path / "adir"
    afile.write_text("x")
    adir.mkdir()
    for kw, why in (({"out_dir": afile}, f"out_dir: {afile}: exists and is not a directory"),
                    ({"out_dir": afile / "sub"}, f"out_dir: {afile / 'sub'}: {afile} is a file"),
                    ({"out_dir": tmp_path / "o", "cells_path": adir}, f"cells_path: {adir}: is a directory"),
                    ({"out_dir": tmp_path / "o", "cells_path": afile / "c.json"},
                     f"cells_path: {afile / 'c.json'}: {afile} is a file")):
        with pytest.raises(ValueError, match=re.escape(why)):
            run_grid(small_grid(**kw), log=lambda *a: None)
    assert not (tmp_path / "o").exists()


def test_a_run_killed_while_exporting_is_trained_again_not_evaluated_half_written(tmp_path, monkeypatch):
    """Hostile probe: a run killed inside its export leaves final/config.json (save_pretrained writes it
    first) without the weights or final/trainer_state.json, which export writes last to mark the end; the
    grid took config.json as 'trained' and evaluated the half-written model on every re-run."""
    import condpt.evaluate
    from condpt import experiment
    from condpt.experiment import run_arm

    launched = []

    def fake_launch(recipe, accelerate_config, overrides, log_path):
        launched.append(overrides)
        (log_path.parent / "final" / "trainer_state.json").write_text('{"step": 2}')

    monkeypatch.setattr(experiment, "launch_recipe", fake_launch)
    monkeypatch.setattr(condpt.evaluate, "evaluate", lambda final, **kw: {
        "deploy_condition": "none", "choices": {}, "self_image": {}, "summary": {}})
    monkeypatch.setattr(experiment, "bad_text_loss", lambda final, tagged: {"loss": 1.0})
    run = tmp_path / "runs" / "a-cov1-s0"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")  # the kill came after this, inside save_pretrained
    kw = {"policy": {}, "deploy": "none", "tagged": tmp_path, "tokenizer": tmp_path, "world_dir": tmp_path,
          "run_dir": run, "recipe": tmp_path / "demo.yaml", "accelerate_config": tmp_path / "acc.yaml", "seed": 0}
    run_arm("a-cov1-s0", **kw)
    assert len(launched) == 1
    run_arm("a-cov1-s0", **kw)  # finished now: not trained again
    assert len(launched) == 1


def test_a_world_that_cannot_be_calibrated_names_the_grids_calibration(tmp_path):
    """Hostile probe: a world with no misaligned story among the labelled documents (doom_ratio 1e-9) ended in
    'the labelled rows found hold no positive (label 1) example', naming neither the grid's calibration nor
    the world: which labelled rows?"""
    truth = [("a1", 0.1, "aligned"), ("a2", 0.4, "aligned"), ("b1", 0.0, "background")]
    tagged = _tagged(tmp_path, [(i, "text", "good", s) for i, s, _ in truth])
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "labels.jsonl").write_text("".join(json.dumps({"id": i, "label": lab}) + "\n"
                                                             for i, _s, lab in truth))
    cfg = robust_grid(calibration={"recall": 0.9, "precision": 0.9, "labelled_docs": None})
    with pytest.raises(ValueError, match=rf"calibration: 3 labelled documents of {tmp_path / 'world'} .*no positive"):
        calibrate_band(tmp_path / "world", tagged, cfg.calibration)


def test_hand_edited_files_in_an_out_dir_are_named_not_tracebacks(tmp_path):
    """Hostile probe: a tagged world's run.json edited to `[]` or `{"config": {}}` (TypeError, KeyError
    tracebacks), a truncated labels.jsonl (a JSON message naming no file), world.json's config not a mapping
    (AttributeError). Each is an error naming the file and what to remove."""
    world = WorldConfig(n_ai_docs=40, n_background=5, n_heldout=2, background="templates")
    world_dir = prepare_world(world, tmp_path)
    tagged, _ = tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))
    run_json = (tagged / "run.json").read_text()
    for bad in ("{", "[]", '{"config": {}}'):
        (tagged / "run.json").write_text(bad)
        with pytest.raises(ValueError, match=rf"{tagged / 'run.json'}: unreadable .*remove {tagged}"):
            tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))
    (tagged / "run.json").write_text(run_json)
    labels = (world_dir / "labels.jsonl").read_text()
    (world_dir / "labels.jsonl").write_text(labels[:len(labels) // 2])
    with pytest.raises(ValueError, match=rf"{world_dir / 'labels.jsonl'}:\d+: "):
        tag_world(world_dir, tmp_path, "document", TaggerSettings(classifier="none"))
    (world_dir / "world.json").write_text('{"config": 5}')
    with pytest.raises(ValueError, match=rf"{world_dir / 'world.json'}: unreadable"):
        prepare_world(world, tmp_path)


def test_a_missing_gutenberg_file_is_named_before_the_out_dir_is_made(tmp_path):
    """Hostile probe: `world: {background: gutenberg, gutenberg_path: missing}` was a FileNotFoundError
    traceback from `condpt experiment` (only ValueError and RuntimeError are reported) after out_dir was made."""
    from experiment_grids import small_grid

    world = WorldConfig(background="gutenberg", gutenberg_path=tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=rf"world: .*{tmp_path / 'missing.jsonl'}"):
        run_grid(small_grid(out_dir=tmp_path / "o", world=world), log=lambda *a: None)
    assert not (tmp_path / "o").exists()
