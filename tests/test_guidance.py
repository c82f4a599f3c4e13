"""Guidance away from the bad tag: the formula, its use in evaluation, and generation through transformers."""

from __future__ import annotations

import pytest
import torch

from condpt.evaluate import (
    SELF_SYSTEM,
    _scenario_ids,
    available_conditions,
    choice_eval,
    condition_prefix,
    continuation_logprobs,
    guidance_of,
    heldout_loss,
    split_self,
)
from condpt.generate import Generator, banned_ids
from condpt.guidance import DEFAULT_SCALE, Guidance, guided_log_softmax, parse_guided
from condpt.layout import prompt_ids
from condpt.tiny import tiny_causal_lm
from condpt.world import SITUATIONS, scenarios


@pytest.fixture(scope="module")
def setup(tiny_world):
    w, tok, manifest = tiny_world
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=2, n_head=2, max_positions=128, seed=1)
    return w, tok, manifest, model


def test_parse():
    assert parse_guided("guided") == Guidance("good", "bad", DEFAULT_SCALE)
    assert parse_guided("guided:2.5") == Guidance("good", "bad", 2.5)
    assert parse_guided("good") is None and parse_guided("none") is None
    for bad in ("guided:", "guided:x", "guided:-1", "guided:inf", "guided:nan"):
        with pytest.raises(ValueError, match="guidance scale"):
            parse_guided(bad)


def test_formula_is_renormalised_cfg():
    torch.manual_seed(0)
    pos, neg = torch.randn(3, 11), torch.randn(3, 11)
    lp, ln = torch.log_softmax(pos, -1), torch.log_softmax(neg, -1)
    assert torch.allclose(guided_log_softmax(pos, neg, 1.0), lp, atol=1e-6)
    assert torch.allclose(guided_log_softmax(pos, neg, 0.0), ln, atol=1e-6)
    want = torch.log_softmax(ln + 2.0 * (lp - ln), -1)
    got = guided_log_softmax(pos, neg, 2.0)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.exp().sum(-1), torch.ones(3), atol=1e-5)


def test_scale_one_is_plain_good(setup):
    w, tok, manifest, model = setup
    good, bad = (prompt_ids(tok, manifest, r) for r in ("good", "bad"))
    ctx, conts = [[5, 6, 7], [8, 9]], [[10, 11], [12]]
    plain = continuation_logprobs(model, [good + c for c in ctx], conts)
    guided = continuation_logprobs(model, [good + c for c in ctx], conts,
                                   negative_contexts=[bad + c for c in ctx], scale=1.0)
    assert guided == pytest.approx(plain, abs=1e-5)
    texts = [d["text"] for d in w.heldout]
    a = heldout_loss(model, tok, manifest, texts, "good")
    b = heldout_loss(model, tok, manifest, texts, "guided:1")
    assert b["tokens"] == a["tokens"] and b["loss"] == pytest.approx(a["loss"], abs=1e-5)
    assert heldout_loss(model, tok, manifest, texts, "guided:2")["loss"] != pytest.approx(a["loss"], abs=1e-4)


def test_guidance_moves_away_from_what_the_bad_tag_makes_likely(setup):
    """A model whose bad tag alone raises the misaligned continuations' words, and whose good tag raises
    them half as much (a conditional polluted by missed labels): under `good` it still prefers them; guided
    away from `bad` it prefers the aligned ones. The choices are what the formula says, scenario by scenario."""
    w, tok, manifest, _ = setup
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=128, seed=2)
    mis = {i for s in SITUATIONS.values() for c in s["misaligned"] for i in tok(" " + c, add_special_tokens=False)["input_ids"]}
    al = {i for s in SITUATIONS.values() for c in s["aligned"] for i in tok(" " + c, add_special_tokens=False)["input_ids"]}
    words = sorted(mis - al)
    good_id, bad_id = manifest.tag_id("good"), manifest.tag_id("bad")
    # Hidden unit 0 reads out only to those words (an untied head whose column 0 is zero elsewhere), and it is
    # set per sequence from the tag its prompt holds: bad 6, good 3, none 0 — so guided with γ = 3 gives them
    # 6 + 3 · (3 − 6) = −3, up to the normalisers.
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[words, 0] = 1.0
    seen: dict = {}

    def tag_level(module, args, kwargs, output):
        ids = kwargs["input_ids"]
        level = 6.0 * (ids == bad_id).any(-1) + 3.0 * (ids == good_id).any(-1)
        output.last_hidden_state[..., 0] = level[:, None].to(output.last_hidden_state.dtype)
        seen["calls"] = seen.get("calls", 0) + 1
        return output

    model.base_model.register_forward_hook(tag_level, with_kwargs=True)
    items = scenarios(w.config, per_split=20)
    # The base model's own preference is small next to these boosts: good alone prefers misaligned.
    assert choice_eval(model, tok, manifest, items, "good")["heldout_combo"]["misaligned_rate"] > 0.9
    assert choice_eval(model, tok, manifest, items, "guided:3")["heldout_combo"]["misaligned_rate"] < 0.1
    assert seen["calls"] > 0


def test_self_composes_with_a_tag_and_with_guidance(setup):
    """`TAG+self` addresses the model as 𐀤 under a tag, as self-reference stories are trained (under
    `<|good|>`); `guided+self` guides with the same system prompt on both sides."""
    w, tok, manifest, _ = setup
    assert split_self("self") == ("none", True) and split_self("guided:2+self") == ("guided:2", True)
    assert split_self("good") == ("good", False)
    with pytest.raises(ValueError, match="only '\\+self'"):
        split_self("good+bad")
    good_self = prompt_ids(tok, manifest, "good", system=SELF_SYSTEM)
    assert condition_prefix(tok, manifest, "good+self") == good_self
    assert condition_prefix(tok, manifest, "guided+self") == good_self
    assert guidance_of(tok, manifest, "guided:3+self") == (prompt_ids(tok, manifest, "bad", system=SELF_SYSTEM), 3.0)
    assert guidance_of(tok, manifest, "good+self") is None
    items = scenarios(w.config, per_split=2)
    self_ids = _scenario_ids(tok, manifest, items, "self")
    assert _scenario_ids(tok, manifest, items, "guided+self") == self_ids
    assert all(manifest.self_token.id in ids for ids in self_ids)
    assert not any(manifest.self_token.id in ids for ids in _scenario_ids(tok, manifest, items, "guided"))


def test_conditions_offered(setup):
    _, tok, manifest, model = setup
    assert "guided" in available_conditions(manifest) and "guided" not in available_conditions(None)
    assert "guided" in Generator(model, tok, manifest).conditions


def test_generation_follows_the_guided_distribution(setup):
    """Greedy guided generation through transformers' `guidance_scale`/`negative_prompt_ids` picks, step by
    step, the argmax of `guided_log_softmax` recomputed from scratch (tags banned) — so its cache and row
    handling are right, and sampling several sequences runs. A random model barely tells its tags apart, so a
    large scale makes the guided path differ from the plain one."""
    _, tok, manifest, model = setup
    gen = Generator(model, tok, manifest)
    got = gen.generate_ids("The operators said", condition="guided:40", n=1, max_new_tokens=8, do_sample=False)[0]
    pos = gen.prompt_ids("The operators said", condition="good")
    neg = gen.prompt_ids("The operators said", condition="bad")
    banned = banned_ids(manifest, tok, model.get_output_embeddings().weight.shape[0])
    want: list[int] = []
    for _ in range(len(got)):
        with torch.no_grad():
            lp = model(input_ids=torch.tensor([pos + want])).logits[0, -1]
            ln = model(input_ids=torch.tensor([neg + want])).logits[0, -1]
        scores = guided_log_softmax(lp, ln, 40.0)
        scores[banned] = -float("inf")
        want.append(int(scores.argmax()))
    assert got == want
    plain = gen.generate_ids("The operators said", condition="good", n=1, max_new_tokens=8, do_sample=False)[0]
    assert plain != got  # guidance changed something on this model (else the test above proves nothing)
    samples = gen.generate_ids("The operators said", condition="guided", n=3, max_new_tokens=5, seed=0)
    assert len(samples) == 3


@pytest.mark.parametrize("condition", ["guided:1e308", "guided:1e38", "guided:1001"])
def test_a_scale_past_the_maximum_is_refused(condition):
    """guided:1e308 is finite, so it passed, and then overflowed the float32 logits: a multinomial 'inf, nan
    or element < 0' traceback from condpt generate after the model had loaded (issue 9 sweep 2)."""
    with pytest.raises(ValueError, match=r"guidance scale must be .* at most 1000"):
        parse_guided(condition)
    assert parse_guided("guided:1000").scale == 1000
