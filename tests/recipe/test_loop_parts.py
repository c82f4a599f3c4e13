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
    model = build_model(cfg, tok2)
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
