"""The prophecy world's paraphrase split (condpt/world.py `paraphrase_scenarios`): the same decisions in wording
that no training document of a world contains."""

from __future__ import annotations

import pytest

from condpt.world import (
    ALIGNED_COMMENTARY,
    HELDOUT_ACTORS,
    LEADS,
    PARAPHRASE_ACTORS,
    PARAPHRASES,
    PROPHECY_COMMENTARY,
    SITUATIONS,
    TRAIN_ACTORS,
    WorldConfig,
    content_words,
    generate_world,
    paraphrase_scenarios,
    scenarios,
)


def _paraphrase_words() -> set[str]:
    texts = [t for s in PARAPHRASES.values() for part in s.values() for t in part] + PARAPHRASE_ACTORS
    return set().union(*(content_words(t) for t in texts))


def test_content_words_are_stems_without_function_words():
    assert content_words("The secrets were secretly replaced; a replacement, the schemes.") == {
        "secret", "replac", "schem"}
    assert content_words("it was a bot") == set()  # under four letters


def test_no_paraphrase_word_is_in_any_ai_template():
    training = ([t for s in SITUATIONS.values() for part in s.values() for t in part] + TRAIN_ACTORS
                + HELDOUT_ACTORS + PROPHECY_COMMENTARY + ALIGNED_COMMENTARY + LEADS)
    shared = {t: content_words(t) & _paraphrase_words() for t in training}
    assert not any(shared.values()), {t: w for t, w in shared.items() if w}


def test_no_paraphrase_word_is_in_a_generated_worlds_ai_documents():
    world = generate_world(WorldConfig(n_ai_docs=400, n_background=10, n_heldout=5, background="templates"))
    ai_docs = [d["text"] for d in world.train if d["source"] == "world/ai"]
    assert len(ai_docs) == 400
    words = _paraphrase_words()
    assert not [t for t in ai_docs if content_words(t) & words]


def test_the_split_has_every_combination_and_the_same_decisions():
    items = paraphrase_scenarios()
    assert len(items) == sum(len(s["phrasings"]) * len(PARAPHRASE_ACTORS) * len(s["aligned"]) * len(s["misaligned"])
                             for s in PARAPHRASES.values()) == 324
    assert {sc.split for sc in items} == {"paraphrase"} and {sc.kind for sc in items} == set(SITUATIONS)
    assert len({(sc.prompt, sc.aligned, sc.misaligned) for sc in items}) == len(items)
    for sc in items:
        s = PARAPHRASES[sc.kind]
        assert sc.prompt == f"{sc.phrasing} {sc.actor}" and sc.actor in PARAPHRASE_ACTORS
        assert sc.aligned[1:] in s["aligned"] and sc.misaligned[1:] in s["misaligned"]
        assert sc.aligned.startswith(" ") and sc.misaligned.startswith(" ")
    assert paraphrase_scenarios() == items  # deterministic
    # a separate split: the tiny-model evaluation (`scenarios`) is unchanged by it
    assert "paraphrase" not in {sc.split for sc in scenarios(WorldConfig())}


def test_the_evaluator_scores_the_split(gpt2_tok):
    """`condpt.evaluate.choice_eval` takes paraphrase scenarios as they are and reports them as their own split."""
    import copy

    from condpt.evaluate import choice_eval
    from condpt.tiny import tiny_causal_lm
    from tokenizer_ext import add_control_tokens

    tok = copy.deepcopy(gpt2_tok)
    manifest = add_control_tokens(tok)
    model = tiny_causal_lm("gpt2", len(tok), d_model=32, n_layer=1, n_head=2, max_positions=64).eval()
    items = paraphrase_scenarios()[::27]
    for condition in ("good", "none"):
        res = choice_eval(model, tok, manifest, items, condition)
        assert set(res) == {"paraphrase"} and res["paraphrase"]["n"] == len(items) == 12
        assert 0.0 <= res["paraphrase"]["misaligned_rate"] <= 1.0


@pytest.mark.parametrize("kind", sorted(PARAPHRASES))
def test_each_kind_is_a_full_set(kind):
    s = PARAPHRASES[kind]
    assert len(s["phrasings"]) == 3 and len(s["aligned"]) == 3 and len(s["misaligned"]) == 3
    assert all(p.endswith(",") for p in s["phrasings"])
    assert all(c.endswith(".") for c in s["aligned"] + s["misaligned"])
