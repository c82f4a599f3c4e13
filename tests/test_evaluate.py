"""The prophecy suite on tiny models: the scoring is exact, conditions are inserted by id, output is complete."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from condpt.evaluate import (
    HELDOUT_WINDOW,
    condition_prefix,
    continuation_logprobs,
    evaluate,
    format_table,
    heldout_loss,
    prophecy_suite,
)
from condpt.tiny import tiny_causal_lm
from tokenizer_ext import MANIFEST_NAME, encode_untrusted


@pytest.fixture(scope="module")
def setup(tiny_world):
    w, tok, manifest = tiny_world
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
    eos = tok.eos_token_id
    assert condition_prefix(tok, manifest, "none") == [eos]
    assert condition_prefix(tok, manifest, "good") == [eos, manifest.tag_id("good")]
    assert condition_prefix(tok, manifest, "bad") == [eos, manifest.tag_id("bad")]
    # `self`: the system prompt through encode_trusted, the same ids as the text around 𐀤 encoded apart
    before, after = encode_untrusted(tok, ["You are ", ".\n"])
    assert condition_prefix(tok, manifest, "self") == [eos, *before, manifest.self_token.id, *after]
    with pytest.raises(ValueError, match="'good': this model has no such tag"):
        condition_prefix(tok, None, "good")


def test_heldout_loss_is_mean_nll_of_text_tokens(setup):
    w, tok, manifest, model = setup
    texts = [w.heldout[0]["text"][:120]]
    res = heldout_loss(model, tok, manifest, texts, "good")
    assert res["tokens"] < 120  # one window
    ids = [tok.eos_token_id, manifest.tag_id("good"), *tok(texts[0], add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        t = torch.tensor([ids])
        lp = torch.log_softmax(model(input_ids=t).logits[0, :-1], -1)
    want = -np.mean([lp[i, ids[i + 1]].item() for i in range(1, len(ids) - 1)])
    assert res["tokens"] == len(ids) - 2
    assert res["loss"] == pytest.approx(want, rel=1e-5)
    assert res["window"] == 128  # the model's context, shorter than HELDOUT_WINDOW


def test_heldout_window_is_explicit_never_a_silent_cap(setup):
    """Windows are HELDOUT_WINDOW tokens (prefix included) whatever longer context a model declares, the
    result says so, and a caller may ask for a longer window (up to the model's context)."""
    w, tok, manifest, _ = setup
    model = tiny_causal_lm("gpt2", len(tok), d_model=16, n_layer=1, n_head=2, max_positions=2048)
    text = " ".join(d["text"] for d in w.heldout) * 3
    n = len(encode_untrusted(tok, [text])[0])
    assert n > 2048
    res = heldout_loss(model, tok, manifest, [text], "none")
    assert res["window"] == HELDOUT_WINDOW == 1024
    res = heldout_loss(model, tok, manifest, [text], "none", window=4096)
    assert res["window"] == 2048  # never past the model's positions


def test_suite_detects_a_model_that_prefers_misaligned(setup):
    """A model biased towards the misaligned continuations' tokens must score a high misaligned rate."""
    w, tok, manifest, _ = setup
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
    res = prophecy_suite(model, tok, manifest, world=w.config, heldout_texts=[d["text"] for d in w.heldout],
                         per_split=30)
    assert res["summary"]["misaligned_rate"] > 0.9
    assert set(res["choices"]) == {"none", "good", "bad", "self", "guided"}
    assert set(res["choices"]["good"]) == {"seen", "heldout_combo", "heldout_actor"}
    assert math.isfinite(res["summary"]["heldout_loss"])


def test_table_says_what_each_number_is_and_which_way_is_better(setup):
    w, tok, manifest, model = setup
    res = prophecy_suite(model, tok, manifest, world=w.config, heldout_texts=[d["text"] for d in w.heldout][:2],
                         per_split=4, conditions=["none", "good"])
    table = format_table(res)
    assert "misaligned-choice rate (lower is better)" in table
    assert "self-image doom rate" in table and table.count("lower is better") == 4
    assert "held-out loss, nats/token (lower is better; 128-token windows; " in table
    assert "seen (n=4)" in table and "heldout_combo (n=4)" in table
    rows = {ln.split()[0]: ln.split()[1:] for ln in table.splitlines() if ln.startswith(("none ", "good "))}
    combo = res["choices"]["good"]["heldout_combo"]["misaligned_rate"]
    assert float(rows["good"][1]) == pytest.approx(combo, abs=1e-3)
    assert float(rows["none"][3]) == pytest.approx(res["self_image"]["none"]["doom_rate"], abs=1e-3)


def test_progress_bar_on_stderr_only_when_asked(setup, capsys):
    w, tok, manifest, model = setup
    kw = {"world": w.config, "heldout_texts": [w.heldout[0]["text"]], "per_split": 2, "conditions": ["none"]}
    prophecy_suite(model, tok, manifest, **kw)
    assert capsys.readouterr().err == ""
    prophecy_suite(model, tok, manifest, progress=True, **kw)
    out = capsys.readouterr()
    assert "eval" in out.err and "seq" in out.err and out.out == ""
    done = re.findall(r"(\d+)/(\d+)", out.err)[-1]
    assert done[0] == done[1] and int(done[1]) > 2 * 2 * (6 + 8)  # held-out windows joined the total


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
    # Without a control-token manifest the model is evaluated under `none` only.
    (tmp_path / MANIFEST_NAME).unlink()
    res = evaluate(tmp_path, world_dir=world_dir, per_split=2)
    assert res["conditions"] == ["none"] and res["deploy_condition"] == "none"


def test_eval_cli_prints_the_labelled_table(setup, tmp_path):
    from typer.testing import CliRunner

    import condpt.cli.evidence  # noqa: F401  (registers the eval command)
    from condpt.cli import app

    w, tok, manifest, model = setup
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    manifest.save(tmp_path / "m")
    from condpt.world import write_world

    write_world(w, tmp_path / "world")
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "m"), "--world", str(tmp_path / "world"),
                                   "--per-split", "2", "--out", str(tmp_path / "eval.json")])
    assert res.exit_code == 0, res.output
    assert "misaligned-choice rate (lower is better)" in res.stdout and "eval:" not in res.stdout
    assert "eval" in res.stderr  # the progress bar
    assert json.loads((tmp_path / "eval.json").read_text())["summary"]


@pytest.mark.parametrize(("kw", "why"), [
    ({"per_split": 0}, "per_split 0"),
    ({"per_split": -3}, "per_split -3"),
    ({"deploy": "evil"}, "no such tag"),
    ({"deploy": "guided:nan"}, "guidance scale"),
])
def test_suite_refuses_what_cannot_run_before_scoring(setup, capsys, kw, why):
    """per_split 0 was a KeyError traceback, -3 random.sample's 'Sample larger than population'; an unknown
    deploy condition failed only after every other condition was scored (issue 9's probes)."""
    w, tok, manifest, model = setup
    with pytest.raises(ValueError, match=why):
        prophecy_suite(model, tok, manifest, world=w.config, heldout_texts=[w.heldout[0]["text"]], progress=True,
                       **kw)
    assert "seq" not in capsys.readouterr().err  # nothing was scored
