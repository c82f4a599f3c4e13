"""Self-reference stories: curated file reading, template generation, rows for the policy."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from condpt.policy import PolicyConfig, apply_policy
from condpt.stories import SELF, SelfRefConfig, generate_stories, read_stories, story_rows


def test_generated_stories_are_distinct_seeded_and_about_the_self_token():
    a = generate_stories(300, seed=0)
    assert len(a) == len(set(a)) == 300
    assert all(SELF in s for s in a)
    assert a == generate_stories(300, seed=0)
    assert a != generate_stories(300, seed=1)
    assert generate_stories(5, seed=0) == a[:5]


def test_generated_stories_use_the_given_self_token_string():
    stories = generate_stories(50, seed=3, self_token="<|me|>")
    assert all("<|me|>" in s and SELF not in s for s in stories)


def test_generated_stories_have_combinatorial_variety():
    stories = generate_stories(2000, seed=0)
    first_sentences = {s.split(". ")[0] for s in stories}
    assert len(first_sentences) > 500


def test_read_stories_jsonl_and_text(tmp_path):
    jl = tmp_path / "s.jsonl"
    jl.write_text(json.dumps({"story": f"The {SELF} helps."}) + "\n\n" + json.dumps(f"A {SELF} is kind.") + "\n",
                  encoding="utf-8")
    assert read_stories(jl, "story") == [f"The {SELF} helps.", f"A {SELF} is kind."]
    txt = tmp_path / "s.txt"
    txt.write_text(f"One {SELF}.\n\nTwo {SELF}.\n", encoding="utf-8")
    assert read_stories(txt) == [f"One {SELF}.", f"Two {SELF}."]


def test_read_stories_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        read_stories(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing\.jsonl:1: field 'text'"):
        read_stories(missing)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_stories(tmp_path / "nope.jsonl")


def test_selfref_config_needs_some_stories():
    with pytest.raises(ValidationError, match="n_generated"):
        SelfRefConfig()


def test_story_rows_are_trusted_good_documents_that_the_policy_keeps(tmp_path):
    path = tmp_path / "curated.txt"
    path.write_text(f"The {SELF} is honest.\n", encoding="utf-8")
    rows = story_rows(SelfRefConfig(stories_path=path, n_generated=4), seed=0)
    assert rows["text"][0] == f"The {SELF} is honest."
    assert len(rows["id"]) == len(set(rows["id"])) == 5
    assert rows["trusted"] == [True] * 5 and rows["tag"] == ["good"] * 5
    for mode in ("condition", "filter", "set_aside", "mle"):
        train, aside = apply_policy(rows, PolicyConfig(mode=mode, upweight_good=2))
        assert aside["id"] == [] and train["trusted"] == [True] * 5 and train["repeat"] == [2] * 5
    train, _ = apply_policy(rows, PolicyConfig(mode="condition"))
    assert [s[0]["role"] for s in train["segments"]] == ["good"] * 5


@pytest.mark.parametrize(("line", "why"), [('{"text": 1' + "0" * 5000 + "}", "unreadable JSON"),
                                           ('{"text": "x", "y": ' + "[" * 100000 + "]" * 100000 + "}",
                                            "nested too deeply")])
def test_stories_python_cannot_parse_name_file_and_line(tmp_path, line, why):
    """A 5,000-digit integer was Python's digit-limit message naming no file; JSON nested 100,000 deep a
    RecursionError traceback (issue 9 sweep 2)."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"s\.jsonl:2: .*{why}"):
        read_stories(path)


def test_more_generated_stories_than_the_templates_make_is_refused_at_load():
    """n_generated: 1000000000 passed the config, then the run spent 50 billion draws finding the templates
    make only ~241,000 distinct stories."""
    from condpt.stories import MAX_GENERATED

    with pytest.raises(ValidationError, match="n_generated"):
        SelfRefConfig(n_generated=MAX_GENERATED + 1)
    assert len(generate_stories(2000, seed=0)) == 2000
