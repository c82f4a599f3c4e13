from __future__ import annotations

import json
from importlib import resources

import pytest

from tokenizer_ext import (
    DEFAULT_SELF_TOKEN,
    ControlTokenError,
    ControlTokens,
    Manifest,
    TagToken,
    add_control_tokens,
    load_tokenizer_with_manifest,
)

NAMES = ["gpt2", "sentencepiece", "preloaded"]


def test_defaults():
    spec = ControlTokens()
    assert [(t.role, t.string, t.description) for t in spec.tags] == [
        ("good", "<|good|>", " good"), ("bad", "<|bad|>", " bad")]
    assert spec.self_token == DEFAULT_SELF_TOKEN == "\U00010024"
    assert spec.strings() == ["<|good|>", "<|bad|>", "\U00010024"]


def test_shipped_yaml_equals_defaults():
    path = resources.files("tokenizer_ext") / "default_tokens.yaml"
    assert ControlTokens.from_yaml(str(path)) == ControlTokens()


def test_yaml_roundtrip_and_custom_tags(tmp_path):
    spec = ControlTokens(tags=[*ControlTokens().tags, TagToken(role="neutral", string="<|neutral|>")])
    spec.to_yaml(tmp_path / "t.yaml")
    assert ControlTokens.from_yaml(tmp_path / "t.yaml") == spec


@pytest.mark.parametrize(
    "text, needle",
    [
        ("tags:\n  - role: good\n    string: ''\n", "tags.0.string"),
        ("tags:\n  - {role: good, string: '<|a|>'}\n  - {role: bad, string: '<|a|>'}\n", "duplicate token strings"),
        ("tags:\n  - {role: good, string: '<|a|>'}\n  - {role: good, string: '<|b|>'}\n", "duplicate tag roles"),
        ("tags: []\n", "at least one tag"),
        ("self_token: '<|good|>'\n", "duplicate token strings"),
        ("tags:\n  - {role: good, string: ' <|a|>'}\n", "whitespace"),
        ("tags:\n  - {role: 'no spaces', string: '<|a|>'}\n", "identifier"),
        # generated text is stripped of every tag string: a word would be cut out of ordinary words ('other')
        ("tags:\n  - {role: good, string: the}\n", "plain word"),
        ("tags:\n  - {role: good, string: '<|good|>'}\n  - {role: bad, string: Bad2}\n", "tags.1.string"),
        ("tags:\n  - {role: good, string: '<|a|>', colour: red}\n", "tags.0.colour"),
        ("tags: [\n  - x: : :\n", ":"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ControlTokenError) as e:
        ControlTokens.from_yaml(path)
    assert str(path) in str(e.value) and needle in str(e.value)


def test_missing_yaml(tmp_path):
    with pytest.raises(ControlTokenError, match="not found"):
        ControlTokens.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", NAMES)
def test_each_control_string_is_one_special_id(extended, name):
    tok, man = extended[name]
    assert man.control_ids == [man.tag_id("good"), man.tag_id("bad"), man.self_token.id]
    assert len(set(man.control_ids)) == 3
    for s, i in zip(ControlTokens().strings(), man.control_ids):
        assert tok.encode(s, add_special_tokens=False) == [i]
        assert tok.encode(f"x{s}y", add_special_tokens=False).count(i) == 1
        added = tok.added_tokens_decoder[i]
        assert added.special and not added.normalized and not added.lstrip and not added.rstrip
        assert i in tok.all_special_ids
        assert tok.decode([i]) == s


@pytest.mark.parametrize("name", NAMES)
def test_idempotent(tokenizer_factories, name):
    tok = tokenizer_factories[name]()
    before = len(tok)
    m1 = add_control_tokens(tok)
    m2 = add_control_tokens(tok)
    assert m1 == m2 and len(tok) == before + 3


def test_existing_specials_untouched(extended, tokenizer_factories):
    tok, _ = extended["preloaded"]
    plain = tokenizer_factories["preloaded"]()
    for s in ["<|im_start|>", "<|im_end|>", "[MASK]", "<tool>", "domainword", "<|endoftext|>"]:
        assert tok.convert_tokens_to_ids(s) == plain.convert_tokens_to_ids(s)


def test_clash_with_named_special(fresh_gpt2_tok):
    spec = ControlTokens(tags=[TagToken(role="good", string="<|endoftext|>")])
    with pytest.raises(ControlTokenError, match="eos_token"):
        add_control_tokens(fresh_gpt2_tok, spec)


def test_clash_with_ordinary_vocab(fresh_gpt2_tok):
    spec = ControlTokens(tags=[TagToken(role="good", string="...")])
    with pytest.raises(ControlTokenError, match="ordinary token"):
        add_control_tokens(fresh_gpt2_tok, spec)
    assert len(fresh_gpt2_tok) == 50257  # nothing half-added


def test_plain_added_token_is_upgraded_with_same_id(fresh_gpt2_tok):
    fresh_gpt2_tok.add_tokens(["<|good|>"])
    old = fresh_gpt2_tok.convert_tokens_to_ids("<|good|>")
    with pytest.warns(UserWarning, match="re-registering"):
        man = add_control_tokens(fresh_gpt2_tok)
    assert man.tag_id("good") == old
    assert fresh_gpt2_tok.added_tokens_decoder[old].special


def test_slow_tokenizer_rejected():
    class Slow:
        is_fast = False

    with pytest.raises(ControlTokenError, match="slow"):
        add_control_tokens(Slow())


@pytest.mark.parametrize("name", NAMES)
def test_save_reload(tmp_path, extended, name):
    tok, man = extended[name]
    tok.save_pretrained(tmp_path)
    man.save(tmp_path)
    data = json.loads((tmp_path / "condpt_tokens.json").read_text(encoding="utf-8"))
    assert data["tags"]["good"] == {"string": "<|good|>", "id": man.tag_id("good")}
    assert data["self_token"]["string"] == "\U00010024"
    tok2, man2 = load_tokenizer_with_manifest(tmp_path)
    assert man2 == man
    for s, i in zip(man.spec.strings(), man.control_ids):
        assert tok2.encode(s, add_special_tokens=False) == [i]
    assert set(man.control_ids) <= set(tok2.all_special_ids)


def test_manifest_check_detects_foreign_manifest(tmp_path, extended):
    tok, _ = extended["gpt2"]
    _, other = extended["sentencepiece"]
    tok.save_pretrained(tmp_path)
    other.save(tmp_path)
    with pytest.raises(ControlTokenError, match="another tokenizer"):
        load_tokenizer_with_manifest(tmp_path)


def test_manifest_errors(tmp_path, extended):
    with pytest.raises(ControlTokenError, match="add-tokens"):
        Manifest.load(tmp_path)
    (tmp_path / "condpt_tokens.json").write_text("{}")
    with pytest.raises(ControlTokenError, match="invalid manifest"):
        Manifest.load(tmp_path)
    _, man = extended["gpt2"]
    with pytest.raises(KeyError, match="good"):
        man.tag_id("ugly")
    assert man.role_of(man.tag_id("bad")) == "bad" and man.role_of(5) is None


def test_foreign_manifest_error_names_what_the_tokenizer_has_at_that_id(fresh_gpt2_tok, extended):
    """A manifest from another checkpoint (its tag id an ordinary token here, or past the vocabulary) is
    refused naming what this tokenizer holds at that id, not a Python `None`."""
    _, man = extended["gpt2"]
    ordinary = man.model_copy(update={"tags": {**man.tags, "good": man.tags["good"].model_copy(update={"id": 1024})}})
    with pytest.raises(ControlTokenError) as e:
        ordinary.check(fresh_gpt2_tok)
    assert "None" not in str(e.value)
    assert f"the ordinary token {fresh_gpt2_tok.convert_ids_to_tokens(1024)!r}" in str(e.value)
    beyond = man.model_copy(update={"tags": {**man.tags, "good": man.tags["good"].model_copy(update={"id": 60000})}})
    with pytest.raises(ControlTokenError, match="no token with that id"):
        beyond.check(fresh_gpt2_tok)
