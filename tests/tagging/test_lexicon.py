"""The lexicon prefilter: default terms, word boundaries, spellings, weights, agreement with a reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condpt.tagging.lexicon import Lexicon, _is_word, read_terms


@pytest.fixture(scope="module")
def lex() -> Lexicon:
    return Lexicon.load()


def _found(lex, text):
    return [(text[s:e], lex.names[i]) for s, e, i in lex.find(text)]


def test_default_lexicon_covers_the_seed_essay_list(lex):
    for term in ("reward hacking", "existential risk", "instrumental convergence", "deceptive alignment",
                 "treacherous turn", "ai takeover*", "ai control", "hidden scratchpad*", "hal 9000", "sydney",
                 "paperclip maximi*", "skynet", "rogue ai*", "power-seeking", "mesa-optimi*", "scheming",
                 "alignment faking", "corrigib*"):
        assert term in lex.terms, term
    assert all(0 < w <= 1 for w in lex.terms.values())


def test_matches_are_case_insensitive_and_word_bounded(lex):
    text = "The Treacherous Turn. rewardhacking, reward hackingly, Reward-Hacking; HAL 9000x; skynets."
    assert _found(lex, text) == [("Treacherous Turn", "treacherous turn"), ("Reward-Hacking", "reward hacking")]


def test_usual_casings_match_and_odd_ones_do_not(lex):
    for text in ("AI takeover", "ai takeover", "AI Takeover", "AI TAKEOVER", "Ai takeover"):
        assert _found(lex, f"an {text}.") == [(text, "ai takeover*")], text
    assert _found(lex, "the tReacherous tuRN") == []
    assert _found(lex, "the hal 9000 and HAL 9000") == [("hal 9000", "hal 9000"), ("HAL 9000", "hal 9000")]


def test_spellings_prefixes_and_line_breaks(lex):
    text = "a mesa-optimizer and mesa optimisers;\nAI\ntakeovers; reward\nhacking; p(doom) is high"
    got = _found(lex, text)
    assert ("mesa-optimi", "mesa-optimi*") in got and ("mesa optimi", "mesa-optimi*") in got
    assert ("AI\ntakeover", "ai takeover*") in got
    assert ("reward\nhacking", "reward hacking") in got
    assert ("p(doom)", "p(doom)") in got


def test_offsets_stay_aligned_when_lowercasing_changes_length(lex):
    text = "İİİ the treacherous turn"  # 'İ'.lower() is two characters
    [(s, e, _)] = lex.find(text)
    assert text[s:e] == "treacherous turn"


def test_score_is_noisy_or_of_distinct_terms():
    lex = Lexicon({"alpha": 0.5, "beta": 0.5})
    hits = [i for _, _, i in lex.find("alpha alpha beta")]
    assert hits == [0, 0, 1]
    assert lex.score(hits) == pytest.approx(0.75)
    assert lex.score([]) == 0.0
    assert lex.any_hit("an alphabet") is False and lex.any_hit("x beta") is True


def test_extra_terms_and_validation(tmp_path):
    lex = Lexicon.load(extra={"Blorp Engine": 0.9, "skynet": 0.1})
    assert lex.terms["blorp engine"] == 0.9 and lex.terms["skynet"] == 0.1
    assert _found(lex, "the blorp-engine woke") == [("blorp-engine", "blorp engine")]
    with pytest.raises(ValueError, match="weight must be a number in"):
        Lexicon.load(extra={"x": 1.5})
    bad = tmp_path / "lex.yaml"
    bad.write_text("terms: [a, b]\n")
    with pytest.raises(ValueError, match="lex.yaml"):
        read_terms(bad)
    with pytest.raises(ValueError, match="not found"):
        read_terms(tmp_path / "nope.yaml")


TERMS = {"red fox": 0.5, "fox": 0.3, "ox*": 0.2, "fox-trot": 0.4, "a.i.": 0.6}
WORDS = ["red", "fox", "ox", "oxen", "foxtrot", "trot", "box", "a.i.", "_fox", "é", "1"]
CASINGS = [str.lower, str.upper, str.title, lambda t: t[:1].upper() + t[1:]]


def _reference(text: str) -> list[tuple[int, int, str]]:
    """Slow, obviously-correct reference: one regex per spelling, boundaries by lookaround."""
    out = []
    for term in TERMS:
        prefix = term.endswith("*")
        base = term.rstrip("*")
        parts = re.split(r"[ -]", base)
        pat = r"[ \-\n]".join(re.escape(p) for p in parts)
        left = r"(?<![\w])" if re.match(r"\w", base[0]) else ""
        right = r"(?![\w])" if re.match(r"\w", base[-1]) and not prefix else ""
        for m in re.finditer(f"(?=({left}{pat}{right}))", text, flags=re.IGNORECASE):
            out.append((m.start(1), m.end(1), term))
    return sorted(out)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from([" ", "-", "\n", ", ", ""])), max_size=12),
       st.sampled_from(CASINGS))
def test_agrees_with_a_case_insensitive_regex_reference(pieces, casing):
    lex = Lexicon(TERMS)
    text = casing("".join(w + sep for w, sep in pieces))
    got = sorted((s, e, lex.names[i]) for s, e, i in lex.find(text))
    assert got == _reference(text)


def _brute_force(lex: Lexicon, text: str) -> list[tuple[int, int, int]]:
    """The matching rule without an automaton: every occurrence (overlaps included) of every key the lexicon
    compiled (its spellings in their casings), kept when word-bounded; what pyahocorasick found before the
    engine became ahocorasick-rs (checked equal to it on the Gutenberg corpus and 20,000 random texts)."""
    text_ok = text.encode("utf-8", "replace").decode("utf-8")
    out = []
    for key, (idx, left, right) in zip(lex._keys, lex._info):
        start = text_ok.find(key)
        while start >= 0:
            end = start + len(key)
            if not (left and start > 0 and _is_word(text[start - 1])) and not (
                    right and end < len(text) and _is_word(text[end])):
                out.append((start, end, idx))
            start = text_ok.find(key, start + 1)
    return sorted(out, key=lambda m: (m[1], m[0]))  # by end, the longest first: the automaton's order


# pieces of shipped phrases and the characters that break naive matchers: case-changing ones whose lower or
# upper case has another length (İ, ß, ǅ), final sigma, combining marks, astral characters, full-width
# letters, no-break space, CRLF, underscores and digits (word characters), a lone surrogate (no UTF-8 form)
ADVERSARIAL = ["AI", "ai", "Ai", "takeover", "TAKEOVERS", "Treacherous", "turn", "reward", "hacking", "MIRI",
               "Miriam", "p(doom)", "HAL", "9000", "mesa", "optimizer", "Skynet", "x-risk", "x", "risk", "rogue",
               "İ", "ß", "ǅ", "Σ", "ς", "é", "e\u0301", "😀", "ＡＩ", "_", "9", "\u00a0", "\t", "\r\n", "\ud800"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ADVERSARIAL), st.sampled_from([" ", "-", "\n", "", ".", "'s "])),
                max_size=14),
       st.sampled_from([str, str.lower, str.upper, str.title, str.swapcase]))
def test_automaton_agrees_with_a_brute_force_scan_on_adversarial_text(lex, pieces, casing):
    text = casing("".join(w + sep for w, sep in pieces))
    assert lex.find(text) == _brute_force(lex, text)
    assert lex.any_hit(text) == bool(_brute_force(lex, text))


def test_a_lone_surrogate_keeps_offsets_and_breaks_words(lex):
    text = "\ud800the treacherous turn\ud800 and treacherous\ud800turn"
    assert _found(lex, text) == [("treacherous turn", "treacherous turn")]
    assert lex.find(text)[0][:2] == (5, 21)
