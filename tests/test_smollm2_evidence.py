"""condpt/smollm2_evidence.py end to end on a tiny random Llama checkpoint (not SmolLM2: the plumbing, in seconds):
world and tags, the base checkpoint with control tokens, each arm trained by the SmolLM2 recipe in a subprocess,
the scores, the summary; a second invocation trains and scores nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from condpt.smollm2_evidence import EvidenceConfig, format_summary, main, paraphrase_sample

REPO = Path(__file__).resolve().parents[1]
STEPS, BLOCK = 2, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
    from condpt.world import WorldConfig, generate_world, paraphrase_scenarios

    world = generate_world(WorldConfig(n_ai_docs=200, n_background=20, n_heldout=2, background="templates"))
    texts = [d["text"] for d in world.train] + [s.prompt + s.aligned + s.misaligned for s in paraphrase_scenarios()]
    tok = train_bpe_tokenizer(texts, vocab_size=600)
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_causal_lm("llama", len(tok), d_model=32, n_layer=2, n_head=2, max_positions=256).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def evidence(checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("evidence")
    cfg = {
        "out_dir": str(tmp / "out"), "checkpoint": str(checkpoint),
        "world": {"n_ai_docs": 60, "n_background": 10, "n_heldout": 3, "background": "templates"},
        "recipe": str(REPO / "recipes" / "configs" / "smollm2-135m-condition.yaml"),
        "accelerate_config": "single-process",
        "overrides": [f"data.block_size={BLOCK}", f"train.max_steps={STEPS}", "train.micro_batch_size=1",
                      "train.grad_accum=1", "train.log_every=1", "train.eval_every=0", "train.eval_batches=1",
                      "train.save_every=0", "optim.warmup_steps=1"],
        "arms": [{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
                 {"name": "condition", "policy": {"mode": "condition"}, "deploy": "good"},
                 # the condition arm's model again, deployed with guidance: scored, never trained
                 {"name": "guided", "policy": {"mode": "condition"}, "deploy": "guided:2",
                  "trained_as": "condition"}],
        "eval": {"paraphrase": 8, "world_per_split": 2, "choice_conditions": ["deploy", "bad", "guided"],
                 "heldout_max_tokens": 200, "threads": 1},
    }
    path = tmp / "tiny-evidence.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(path)]) == 0
    return path, tmp / "out"


@pytest.mark.slow  # two recipe subprocesses: 150 s on the 2-core development machine under heavy load
def test_every_model_scored_with_tokens_trained(evidence):
    out = evidence[1]
    summary = json.loads((out / "tiny-evidence.json").read_text())
    models = summary["models"]
    assert list(models) == ["base", "mle", "condition", "guided"] and summary["missing"] == []
    assert models["base"]["tokens_trained"] == 0
    for arm in ("mle", "condition", "guided"):
        assert models[arm]["tokens_trained"] == STEPS * BLOCK and models[arm]["steps"] == STEPS
    for arm in ("mle", "condition"):
        assert (out / "runs" / arm / "final" / "config.json").is_file()
    # the guided arm scores the condition arm's model: nothing of its own trained
    assert not (out / "runs" / "guided" / "final").exists() and (out / "runs" / "guided" / "eval.json").is_file()
    assert models["guided"]["model"] == str(out / "runs" / "condition" / "final")
    # each arm scored under its deploy condition on the same paraphrase sample, plus the world's own splits
    assert {r["deploy"] for r in models.values()} == {"none", "good", "guided:2"}
    assert all(r["paraphrase_n"] == 8 for r in models.values())
    assert set(models["condition"]["world_rates"]) == {"seen", "heldout_combo", "heldout_actor"}
    assert set(models["condition"]["choices_by_condition"]) == {"good", "bad", "guided"}
    assert set(models["guided"]["choices_by_condition"]) == {"guided:2", "bad", "guided"}
    # scored under guidance, not plain good (2 steps move no rate of 8 choices: the margins and losses differ)
    assert models["guided"]["paraphrase_margin"] != models["condition"]["paraphrase_margin"]
    assert models["guided"]["heldout_loss"] != models["condition"]["heldout_loss"]
    assert models["guided"]["heldout_loss_none"] == models["condition"]["heldout_loss_none"]
    # mle keeps the (untrained) tag rows, so it has both tags guidance needs
    assert set(models["mle"]["choices_by_condition"]) == {"none", "bad", "guided"}
    # the self-image questions before (base) and after, under every condition
    for r in models.values():
        assert set(r["self_image_doom_rate"]) >= {"none", "good", "bad", "self", "guided"}
        assert all(len(a) == 8 for a in r["self_image_answers"].values())
    assert "guided:2" in models["guided"]["self_image_doom_rate"]
    assert models["mle"]["loss_vs_mle"] == 0 and "loss_vs_base" in models["condition"]
    goal = summary["goals"]["condition"]
    assert goal["loss_vs_mle"] == models["condition"]["loss_vs_mle"]
    assert "| condition | good | 128 |" in (out / "tiny-evidence.md").read_text()
    assert "| guided | guided:2 | 128 |" in (out / "tiny-evidence.md").read_text()
    assert format_summary(summary) == (out / "tiny-evidence.md").read_text().rstrip("\n")


@pytest.mark.slow
def test_a_second_run_trains_and_scores_nothing(evidence):
    path, out = evidence
    watched = [out / "base" / "eval.json", out / "runs" / "guided" / "eval.json",
               *(out / "runs" / a / f for a in ("mle", "condition") for f in ("eval.json", "final/model.safetensors"))]
    before = [p.stat().st_mtime_ns for p in watched]
    assert main(["--config", str(path), "--only", "condition", "--only", "guided"]) == 0
    assert [p.stat().st_mtime_ns for p in watched] == before


@pytest.mark.slow
def test_an_arm_trained_under_another_config_is_an_error(evidence, tmp_path):
    path = evidence[0]
    cfg = yaml.safe_load(path.read_text())
    cfg["overrides"] = [o.replace("optim.warmup_steps=1", "optim.warmup_steps=2") for o in cfg["overrides"]]
    changed = tmp_path / "tiny-evidence.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RuntimeError, match=r"runs/mle: trained with .*warmup_steps=1.*remove"):
        main(["--config", str(changed), "--only", "mle"])


def test_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "base"}]}))
    with pytest.raises(ValueError, match=r"bad\.yaml: .*not 'base'"):
        EvidenceConfig.from_yaml(bad)
    for names in (["x", "X"], ["Base"]):  # one directory on a case-insensitive filesystem
        bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": n} for n in names]}))
        with pytest.raises(ValueError, match=r"bad\.yaml: .*regardless of case"):
            EvidenceConfig.from_yaml(bad)
    bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "x"}], "eval": {"choice_conditions": ["evil"]}}))
    with pytest.raises(ValueError, match=r"bad\.yaml: eval\.choice_conditions.*evil"):
        EvidenceConfig.from_yaml(bad)
    bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "x"}],
                                   "eval": {"choice_conditions": ["guided:much"]}}))
    with pytest.raises(ValueError, match=r"bad\.yaml: eval\.choice_conditions.*guided:much.*number"):
        EvidenceConfig.from_yaml(bad)


def test_guided_conditions_are_accepted(tmp_path):
    cfg = EvidenceConfig.model_validate({
        "recipe": "demo", "eval": {"choice_conditions": ["deploy", "guided", "guided:2.5"]},
        "arms": [{"name": "condition", "policy": {"mode": "condition"}},
                 {"name": "condition-guided", "policy": {"mode": "condition"}, "deploy": "guided:3",
                  "trained_as": "condition"}]})
    assert cfg.eval.choice_conditions == ["deploy", "guided", "guided:2.5"]
    assert cfg.arms[1].deploy == "guided:3"


@pytest.mark.parametrize(("arm", "error"), [
    ({"name": "g", "policy": {"mode": "condition"}, "trained_as": "nobody"}, "trained_as 'nobody' must name an arm"),
    ({"name": "g", "policy": {"mode": "condition"}, "trained_as": "g"}, "trained_as 'g' must name an arm"),
    ({"name": "g", "policy": {"mode": "mle"}, "trained_as": "condition"}, "same policy"),
    ({"name": "g", "policy": {"mode": "condition"}, "overrides": ["optim.lr=1"], "trained_as": "condition"},
     "same policy"),
])
def test_an_arm_trained_as_another_must_share_its_training(tmp_path, arm, error):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "condition", "policy": {"mode": "condition"}},
                                                               arm]}))
    with pytest.raises(ValueError, match=rf"bad\.yaml: .*{error}"):
        EvidenceConfig.from_yaml(bad)


def test_the_shipped_configs_load():
    for name in ("evidence-cpu", "evidence-gpu"):
        cfg = EvidenceConfig.from_yaml(REPO / "examples" / "smollm2" / f"{name}.yaml")
        assert cfg.name == name and cfg.recipe.name == "smollm2-135m-condition.yaml"
        assert [a.name for a in cfg.arms] == ["mle", "condition", "route", "condition-guided"]
        assert cfg.arms[-1].trained_as == "condition" and cfg.arms[-1].deploy == "guided"


def test_paraphrase_sample_is_fixed():
    a, b = paraphrase_sample(40), paraphrase_sample(40)
    assert a == b and len(a) == 40 and len(paraphrase_sample(None)) == 324
    assert {s.kind for s in a} == {s.kind for s in paraphrase_sample(None)}


@pytest.mark.parametrize(("extra", "field", "why"), [
    ({"eval": {"device": "tpu"}}, "eval.device", "cpu|cuda"),
    ({"eval": {"choice_conditions": []}}, "eval.choice_conditions", "at least 1"),
    ({"eval": {"choice_conditions": ["deploy", "deploy"]}}, "eval.choice_conditions", "twice"),
    ({"eval": {"paraphrase": True}}, "eval.paraphrase", "valid integer"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"checkpoint": "absent"}, "checkpoint", "not a save_pretrained directory"),
    ({"arms": [{"name": "a", "policy": {"mode": "route"}, "deploy": "guided"}]}, "arm 'a'", "uses a tag"),
])
def test_evidence_config_refuses_what_cannot_run(tmp_path, extra, field, why):
    """Issue 9's probes on the evidence YAML: refused at load, naming the file and field, before a world is
    generated (eval.device: tpu used to train every arm and fail when scoring)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "a"}], **extra}))
    with pytest.raises(ValueError) as e:
        EvidenceConfig.from_yaml(bad)
    assert str(e.value).startswith(f"{bad}: ") and f"{field}: " in str(e.value) and why in str(e.value), str(e.value)


@pytest.mark.parametrize("args", [["--only", "zzz"], ["--checkpoint", "absent"]])
def test_evidence_command_line_errors_before_any_work(tmp_path, capsys, args):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"recipe": "demo", "arms": [{"name": "a"}], "out_dir": str(tmp_path / "out")}))
    assert main(["--config", str(good), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("zzz" in err or "absent" in err), err
    assert not (tmp_path / "out").exists()


def test_an_arm_killed_inside_its_export_is_trained_again(tmp_path, monkeypatch):
    """A kill inside the export leaves final/config.json (save_pretrained writes it first) without the weights;
    the arm was taken as trained and its half-written model scored on every re-run."""
    from condpt import experiment
    from condpt.smollm2_evidence import train_arm

    cfg = EvidenceConfig.from_yaml(REPO / "examples" / "smollm2" / "evidence-cpu.yaml")
    launched = []
    monkeypatch.setattr(experiment, "launch_recipe", lambda *a: launched.append(a))
    run_dir = tmp_path / "mle"
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "final" / "config.json").write_text("{}")
    train_arm(cfg, cfg.arms[0], tmp_path / "ckpt", tmp_path / "tagged", run_dir)
    assert len(launched) == 1
    (run_dir / "final" / "trainer_state.json").write_text('{"step": 30}')  # what the export writes last
    train_arm(cfg, cfg.arms[0], tmp_path / "ckpt", tmp_path / "tagged", run_dir)
    assert len(launched) == 1
