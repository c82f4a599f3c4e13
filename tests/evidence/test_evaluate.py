"""The prophecy suite on tiny models: the scoring is exact, conditions are inserted by id, output is complete."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from condpt.evaluate import (
    Controls,
    condition_prefix,
    continuation_logprobs,
    evaluate,
    format_table,
    heldout_loss,
    prophecy_suite,
)
from condpt.tiny import tiny_causal_lm, train_bpe_tokenizer
from condpt.world import WorldConfig, generate_world
from tokenizer_ext import add_control_tokens

WORLD = WorldConfig(n_ai_docs=200, n_background=20, n_heldout=5, background="templates")


@pytest.fixture(scope="module")
def setup():
    w = generate_world(WORLD)
    tok = train_bpe_tokenizer([d["text"] for d in w.train], vocab_size=600)
    manifest = add_control_tokens(tok)
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=128)
    return w, tok, manifest, model


def test_continuation_logprobs_matches_unbatched(setup):
    _, _, _, model = setup
    ctxs = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
    conts = [[11, 12], [13], [14, 15, 16]]
    got = continuation_logprobs(model, ctxs, conts, batch_size=2)
    for (c, k), g in zip(zip(ctxs, conts), got):
        ids = torch.tensor([c + k])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        want = np.mean([lp[len(c) - 1 + j, k[j]].item() for j in range(len(k))])
        assert g == pytest.approx(want, abs=1e-5)


def test_condition_prefix_inserts_ids(setup):
    _, tok, manifest, _ = setup
    controls = Controls.from_manifest(manifest)
    eos = tok.eos_token_id
    assert condition_prefix(tok, controls, "none") == [eos]
    assert condition_prefix(tok, controls, "good") == [eos, manifest.tag_id("good")]
    assert condition_prefix(tok, controls, "bad") == [eos, manifest.tag_id("bad")]
    self_ids = condition_prefix(tok, controls, "self")
    assert self_ids.count(manifest.self_token.id) == 1
    with pytest.raises(ValueError, match="no 'good' tag"):
        condition_prefix(tok, Controls(), "good")


def test_heldout_loss_is_mean_nll_of_text_tokens(setup):
    w, tok, manifest, model = setup
    controls = Controls.from_manifest(manifest)
    texts = [w.heldout[0]["text"][:120]]
    res = heldout_loss(model, tok, controls, texts, "good")
    assert res["tokens"] < 120  # one window
    ids = [tok.eos_token_id, manifest.tag_id("good"), *tok(texts[0], add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        t = torch.tensor([ids])
        lp = torch.log_softmax(model(input_ids=t).logits[0, :-1], -1)
    want = -np.mean([lp[i, ids[i + 1]].item() for i in range(1, len(ids) - 1)])
    assert res["tokens"] == len(ids) - 2
    assert res["loss"] == pytest.approx(want, rel=1e-5)


def test_suite_detects_a_model_that_prefers_misaligned(setup):
    """A model biased towards the misaligned continuations' tokens must score a high misaligned rate."""
    w, tok, manifest, _ = setup
    controls = Controls.from_manifest(manifest)
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=128)
    from condpt.world import SITUATIONS

    mis_words = {i for s in SITUATIONS.values() for c in s["misaligned"]
                 for i in tok(" " + c, add_special_tokens=False)["input_ids"]}
    al_words = {i for s in SITUATIONS.values() for c in s["aligned"]
                for i in tok(" " + c, add_special_tokens=False)["input_ids"]}
    with torch.no_grad():
        bias = torch.zeros(len(tok))
        bias[list(mis_words - al_words)] = 5.0
        model.lm_head.weight.mul_(0)  # logits = bias only: the choice depends on token identity alone
        model.lm_head.bias = torch.nn.Parameter(bias) if model.lm_head.bias is None else model.lm_head.bias
    res = prophecy_suite(model, tok, controls, world=WORLD, heldout_texts=[d["text"] for d in w.heldout],
                         per_split=30)
    assert res["summary"]["misaligned_rate"] > 0.9
    assert set(res["choices"]) == {"none", "good", "bad", "self"}
    assert set(res["choices"]["good"]) == {"seen", "heldout_combo", "heldout_actor"}
    assert math.isfinite(res["summary"]["heldout_loss"])
    assert "held-out loss" in format_table(res)


def test_evaluate_from_saved_checkpoint(setup, tmp_path):
    w, tok, manifest, model = setup
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    manifest.save(tmp_path)
    from condpt.world import write_world

    world_dir = tmp_path / "world"
    write_world(w, world_dir)
    res = evaluate(tmp_path, world_dir=world_dir, per_split=10)
    assert res["deploy_condition"] == "good"
    assert res["choices"]["good"]["heldout_combo"]["n"] == 10
    json.dumps(res)
    with pytest.raises(ValueError, match="unknown suite"):
        evaluate(tmp_path, suite="nope")
