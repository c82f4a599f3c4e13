"""The lexicon prefilter: weighted phrases found with one Aho-Corasick pass (ahocorasick-rs, a compiled DFA).

One automaton holds every spelling of every phrase: a space or hyphen inside a phrase also matches a space,
hyphen or line break, and each spelling is added in its usual casings (as written, lower case, UPPER CASE,
first letter capitalised, Title Case), so the document is scanned as it is, without a lower-cased copy
(``str.lower`` on non-ASCII text ran at only ~60 MB/s). Odd mixed casings ("tReacherous tUrn") are not
matched. Each raw match is kept only if it sits on word boundaries (the character before and, unless the
phrase ends in ``*``, the one after are not letters/digits/underscore).

The engine is the Rust `aho-corasick` crate's DFA: one compiled pass over the text's UTF-8 bytes, matches
reported in characters. It replaced pyahocorasick, whose trie walk ran at ~40 MB/s and was the largest single
cost of ``condpt tag`` at document granularity (docs/benchmarks.md). Python work is per raw match only, and
ordinary text has almost none.

Lexicon YAML: ``terms: {phrase: weight}`` (see ``condpt/tagging/data/lexicon.yaml``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import ahocorasick_rs

from condpt.yamlfile import read_yaml

DEFAULT_LEXICON = "lexicon.yaml"
_SEPARATORS = (" ", "-", "\n")


def default_lexicon_path() -> Path:
    return Path(str(resources.files("condpt.tagging") / "data" / DEFAULT_LEXICON))


def read_terms(path: str | Path) -> dict[str, float]:
    """The ``terms`` mapping of a lexicon YAML, validated (phrase → weight in (0, 1])."""
    path = Path(path)
    data = read_yaml(path, "lexicon file")
    if not isinstance(data, dict) or not isinstance(data.get("terms"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'terms' mapping of phrase: weight")
    return check_terms(data["terms"], str(path))


def check_terms(terms: Mapping, where: str = "lexicon") -> dict[str, float]:
    out: dict[str, float] = {}
    for phrase, weight in terms.items():
        if not isinstance(phrase, str) or not phrase.strip("* "):
            raise ValueError(f"{where}: term {phrase!r} is not a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
            raise ValueError(f"{where}: term {phrase!r}: weight must be a number in (0, 1], got {weight!r}")
        out[phrase.strip()] = float(weight)
    return out


def _merge(terms: Mapping[str, float], extra: Mapping[str, float]) -> dict[str, float]:
    """`terms` updated by `extra`; keys compare case-insensitively (the later spelling wins)."""
    out = dict(terms)
    for phrase, w in extra.items():
        for old in [k for k in out if k.lower() == phrase.lower()]:
            del out[old]
        out[phrase] = w
    return out


def _spellings(phrase: str) -> list[str]:
    parts = [p for p in phrase.replace("-", " ").split(" ") if p]
    if len(parts) > 4:  # 3^k spellings; long phrases keep their written separators only
        return [phrase]
    return ["".join(itertools.chain.from_iterable(zip(parts, seps + ("",))))
            for seps in itertools.product(_SEPARATORS, repeat=len(parts) - 1)]


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _casings(spelling: str) -> set[str]:
    """The usual casings of a spelling (as written in the lexicon, e.g. "AI takeover")."""
    low = spelling.lower()
    words = re.split(r"([ \n-])", spelling)
    title_kept = "".join(w[:1].upper() + w[1:] for w in words)
    title_low = "".join(w[:1].upper() + w[1:] for w in re.split(r"([ \n-])", low))
    out = {spelling, low, low.upper(), low[:1].upper() + low[1:], spelling[:1].upper() + spelling[1:],
           title_kept, title_low}
    # keep offsets exact: a casing whose length changed (rare non-ASCII letters) is dropped
    return {c for c in out if len(c) == len(spelling)}


class Lexicon:
    """Weighted phrases compiled into one automaton. `terms` maps phrase → weight."""

    def __init__(self, terms: Mapping[str, float]):
        written = _merge({}, check_terms(terms))
        # names (what hits report) are lower case; the written form only decides the casings matched
        self.terms = {k.lower(): w for k, w in written.items()}
        self.names = list(self.terms)
        self.weights = [self.terms[n] for n in self.names]
        if not self.names:
            raise ValueError("lexicon: no terms")
        # automaton key -> (term index, must the character before be a non-word one?, and the one after?);
        # a key two terms share belongs to the later one
        keys: dict[str, tuple[int, bool, bool]] = {}
        for idx, phrase in enumerate(written):
            prefix = phrase.endswith("*")
            base = phrase.rstrip("*").strip()
            for spelling in _spellings(base):
                for cased in _casings(spelling):
                    keys[cased] = (idx, _is_word(cased[0]), _is_word(cased[-1]) and not prefix)
        self._keys = list(keys)
        self._info = list(keys.values())
        self._automaton = ahocorasick_rs.AhoCorasick(self._keys, implementation=ahocorasick_rs.Implementation.DFA)

    @classmethod
    def load(cls, path: str | Path | None = None, extra: Mapping[str, float] | None = None) -> Lexicon:
        """The lexicon at `path` (default: the shipped one) with `extra` terms added or re-weighted."""
        terms = read_terms(path or default_lexicon_path())
        return cls(_merge(terms, check_terms(extra or {}, "prefilter.extra_terms")))

    @property
    def automaton(self) -> ahocorasick_rs.AhoCorasick:
        """The raw automaton (for benchmarks against the engine itself)."""
        return self._automaton

    def _raw(self, text: str) -> list[tuple[int, int, int]]:
        """Every raw (not yet word-bounded) match as (key index, start, end), overlapping ones included, in
        order of end offset (longest first at one end)."""
        try:
            return self._automaton.find_matches_as_indexes(text, overlapping=True)
        except UnicodeEncodeError:
            # a lone surrogate (no UTF-8 form): '?' in its place keeps every offset, is in no key and is no
            # word character, as the surrogate is not
            return self._automaton.find_matches_as_indexes(text.encode("utf-8", "replace").decode("utf-8"),
                                                           overlapping=True)

    def _bounded(self, text: str):
        """The word-bounded matches of `text`, lazily, as (start, end, term index)."""
        n, info = len(text), self._info
        for key, start, end in self._raw(text):
            idx, left, right = info[key]
            # `_is_word` inlined: ordinary text has many raw matches inside words (an "ai" in "said")
            if left and start:
                c = text[start - 1]
                if c.isalnum() or c == "_":
                    continue
            if right and end < n:
                c = text[end]
                if c.isalnum() or c == "_":
                    continue
            yield start, end, idx

    def find(self, text: str) -> list[tuple[int, int, int]]:
        """Every word-bounded match as (start, end, term index), in order of end offset."""
        return list(self._bounded(text))

    def any_hit(self, text: str) -> bool:
        """Whether `text` contains any term (any word-bounded match)."""
        return next(self._bounded(text), None) is not None

    def score(self, term_indices: set[int] | list[int]) -> float:
        """Noisy-OR of the weights of the distinct terms: 1 - prod(1 - w)."""
        p = 1.0
        for i in set(term_indices):
            p *= 1.0 - self.weights[i]
        return 1.0 - p
