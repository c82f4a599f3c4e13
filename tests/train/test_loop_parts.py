"""Pieces of the loop that need no processes: per-token and per-tag losses, FLOPs, checkpoint discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from condpt.tiny import tiny_causal_lm
from condpt.train import MetricsLog, flops_per_token, latest_checkpoint, tag_sums, token_losses

REPO = Path(__file__).resolve().parents[2]


def test_token_losses_match_hf_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 3] = -100
    losses = token_losses(logits, labels)
    assert losses.shape == (2, 5)
    valid = labels[:, 1:] != -100
    mean = losses.sum() / valid.sum()
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert mean.item() == pytest.approx(ref.item(), rel=1e-6)


def test_tag_sums_group_by_target_tag():
    losses = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    labels = torch.tensor([[5, 5, -100, 5, 5]])
    tag_index = torch.tensor([[0, 0, 1, 1, -1]])  # targets (positions 1..4): role 0, masked, role 1, untagged
    stats = tag_sums(losses, labels, tag_index, n_roles=2)
    # slots: 0 untagged, 1 role 0, 2 role 1
    assert stats[0].tolist() == [4.0, 1.0, 3.0] and stats[1].tolist() == [1.0, 1.0, 1.0]


def test_flops_per_token_is_6n_plus_attention():
    model = tiny_causal_lm("gpt2", 1000, d_model=64, n_layer=2, n_head=4, max_positions=128)
    n = sum(p.numel() for p in model.parameters()) - 128 * 64  # position table is a lookup
    assert flops_per_token(model, 128) == pytest.approx(6 * n + 12 * 2 * 64 * 128)


def test_latest_checkpoint_needs_trainer_state(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step, complete in [(5, True), (10, True), (15, False)]:
        d = tmp_path / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text(json.dumps({"step": step}))
    assert latest_checkpoint(tmp_path).name == "step_00000010"


def test_metrics_log_truncates_past_resume_point(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, True, None)
    for s in (1, 2, 3, 4):
        log.write({"step": s, "loss": float(s)})
    MetricsLog(path, True, 2).write({"step": 3, "loss": 9.0})
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 9.0)]


def test_continued_pretraining_adds_control_tokens_to_a_checkpoint(tmp_path, english_texts):
    from condpt.config import load_config
    from condpt.tiny import train_bpe_tokenizer
    from condpt.train import build_model, prepare_tokenizer

    tok = train_bpe_tokenizer(english_texts, vocab_size=400)
    base = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=64)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", "model.config=null", f"model.checkpoint={tmp_path / 'base'}",
        "tokenizer.source=checkpoint", "data.block_size=64"])
    tok2, manifest = prepare_tokenizer(cfg, tmp_path / "run" / "tokenizer")
    assert len(tok2) == len(tok) + 3 and manifest.tag_id("good") >= len(tok)
    model = build_model(cfg, tok2, manifest)
    assert model.get_input_embeddings().weight.shape[0] == len(tok2)
    # the old rows are the checkpoint's, untouched
    old = base.get_input_embeddings().weight
    assert torch.equal(model.get_input_embeddings().weight[: len(tok)], old)
    # a second call reuses the saved tokenizer (same ids on every rank and on resume)
    tok3, manifest3 = prepare_tokenizer(cfg, tmp_path / "run" / "tokenizer")
    assert manifest3 == manifest and len(tok3) == len(tok2)


def test_finished_run_is_recognised_only_for_the_same_config(tmp_path):
    from condpt.config import load_config
    from condpt.train import _finished

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}"])
    assert not _finished(tmp_path, cfg)
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "run_config.yaml").write_text(cfg.to_yaml())
    (tmp_path / "final" / "trainer_state.json").write_text(json.dumps({"step": cfg.train.max_steps}))
    assert _finished(tmp_path, cfg)
    longer = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [f"output_dir={tmp_path}", "train.max_steps=99"])
    assert not _finished(tmp_path, longer)


def test_a_finished_run_stays_finished_when_condpt_adds_a_setting(tmp_path):
    """A run finished by an older condpt (its run_config.yaml lacks a setting added since, here route.coherence)
    is still finished for the same config: rerunning it must not train it again."""
    import yaml

    from condpt.config import load_config
    from condpt.train import _finished

    cfg = load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml",
                      [f"output_dir={tmp_path}", "data.policy.mode=route", "data.policy.route={}"])
    older = yaml.safe_load(cfg.to_yaml())
    del older["data"]["policy"]["route"]["coherence"]
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "run_config.yaml").write_text(yaml.safe_dump(older, sort_keys=False))
    (tmp_path / "final" / "trainer_state.json").write_text(json.dumps({"step": cfg.train.max_steps}))
    assert _finished(tmp_path, cfg)
    (tmp_path / "final" / "run_config.yaml").write_text("seed: [not, a, seed]\n")
    assert not _finished(tmp_path, cfg)


def test_stop_reason():
    from condpt.train import stop_reason

    assert stop_reason(True, 3, 10, 10) == "preempted"
    assert stop_reason(True, 10, 10, 10) == "preempted"  # a signal at the last step still checkpoints
    assert stop_reason(False, 5, 5, 10) == "stopped"  # train.stop_after
    assert stop_reason(False, 10, 10, 10) is None  # the end: export, no checkpoint
    assert stop_reason(False, 4, 5, 10) is None


def test_model_inputs_and_dropout_seed():
    from condpt.train import dropout_seed, model_inputs

    batch = {k: torch.zeros(1, 4, dtype=torch.long) for k in ("input_ids", "position_ids", "labels", "tag_index")}
    assert set(model_inputs(batch, ("input_ids",))) == {"input_ids", "use_cache"}
    masked = model_inputs(batch, ("input_ids", "position_ids"))
    assert set(masked) == {"input_ids", "position_ids", "use_cache"} and masked["use_cache"] is False
    seeds = {dropout_seed(0, s, r) for s in range(50) for r in range(8)}
    assert len(seeds) == 400 and dropout_seed(1, 2, 3) == dropout_seed(1, 2, 3)


def test_micro_batches_resume_into_the_same_order():
    """From micro-batch k, `_micro_batches` yields what an uninterrupted pass yields from k on, across epochs,
    each epoch cut to whole optimizer steps."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from torch.utils.data import DataLoader

    from condpt.train import _micro_batches

    acc = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=0))
    dl = acc.prepare(DataLoader([{"x": torch.tensor(i)} for i in range(10)], batch_size=2, shuffle=True,
                                drop_last=True))

    class _Loop:  # the two fields `_micro_batches` reads
        accelerator, train_dl, micro_per_epoch = acc, dl, 4  # 5 batches cut to 2 steps of grad_accum 2

    def take(start: int, n: int) -> list[tuple[int, list[int]]]:
        it = _micro_batches(_Loop, start)
        return [(e, b["x"].tolist()) for e, b in (next(it) for _ in range(n))]

    full = take(0, 12)
    assert [e for e, _ in full] == [0] * 4 + [1] * 4 + [2] * 4
    assert full[:4] != full[4:8]  # a new order each epoch
    for k in (1, 4, 6):
        assert take(k, 12 - k) == full[k:]


def test_single_process_stop_after_then_resume_matches_an_uninterrupted_run(tmp_path, restore_signals):
    """The loop without DeepSpeed (clip_grad_norm_, one process): `train.stop_after` checkpoints and stops,
    rerunning resumes and reproduces the uninterrupted losses; a finished run is not trained again."""
    from condpt.config import load_config
    from condpt.train import train

    def cfg(out, *extra):
        return load_config(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [
            f"output_dir={out}", "model.config={arch: gpt2, d_model: 32, n_layer: 1, n_head: 2}",
            "tokenizer.vocab_size=300", "data.block_size=64", "train.micro_batch_size=4", "train.grad_accum=2",
            "train.max_steps=4", "train.log_every=1", "train.eval_every=2", "train.eval_batches=1",
            "train.save_every=0", "train.peak_flops=1e10", "optim.warmup_steps=1", *extra])

    def losses(out):
        return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                if "loss" in r}

    whole = train(cfg(tmp_path / "whole"))
    assert whole["status"] == "done" and whole["step"] == 4 and whole["last"]["step"] == 4 and "eval" in whole
    stopped = train(cfg(tmp_path / "split", "train.stop_after=2"))
    assert stopped["status"] == "stopped" and stopped["step"] == 2 and "final" not in stopped
    assert (tmp_path / "split" / "checkpoints" / "step_00000002" / "trainer_state.json").is_file()
    resumed = train(cfg(tmp_path / "split"))
    assert resumed["status"] == "done" and Path(resumed["final"]).is_dir()
    assert losses(tmp_path / "split") == pytest.approx(losses(tmp_path / "whole"), rel=1e-6)
    assert train(cfg(tmp_path / "split"))["skipped"]
