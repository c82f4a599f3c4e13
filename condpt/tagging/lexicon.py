"""The lexicon prefilter: weighted phrases found with one Aho-Corasick pass (pyahocorasick).

One automaton holds every spelling of every phrase: a space or hyphen inside a phrase also matches a space,
hyphen or line break, and each spelling is added in its usual casings (as written, lower case, UPPER CASE,
first letter capitalised, Title Case), so the document is scanned as it is, without a lower-cased copy
(``str.lower`` on non-ASCII text ran at only ~60 MB/s, slower than the automaton). Odd mixed casings
("tReacherous tUrn") are not matched. Each raw match is kept only if it sits on word boundaries (the
character before and, unless the phrase ends in ``*``, the one after are not letters/digits/underscore).
Cost beyond the raw automaton: a Python step per match, so on ordinary text the scan runs at the engine's
own speed (see benchmarks/bench_prefilter.py).

Lexicon YAML: ``terms: {phrase: weight}`` (see ``condpt/tagging/data/lexicon.yaml``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import ahocorasick

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
        self._automaton = ahocorasick.Automaton()
        for idx, phrase in enumerate(written):
            prefix = phrase.endswith("*")
            base = phrase.rstrip("*").strip()
            for spelling in _spellings(base):
                for cased in _casings(spelling):
                    # value: (term index, length, prefix?, must check left/right boundary?)
                    self._automaton.add_word(cased, (idx, len(cased), prefix,
                                                     _is_word(cased[0]), _is_word(cased[-1])))
        if not self.names:
            raise ValueError("lexicon: no terms")
        self._automaton.make_automaton()

    @classmethod
    def load(cls, path: str | Path | None = None, extra: Mapping[str, float] | None = None) -> Lexicon:
        """The lexicon at `path` (default: the shipped one) with `extra` terms added or re-weighted."""
        terms = read_terms(path or default_lexicon_path())
        return cls(_merge(terms, check_terms(extra or {}, "prefilter.extra_terms")))

    @property
    def automaton(self) -> ahocorasick.Automaton:
        """The raw automaton (for benchmarks against the engine itself)."""
        return self._automaton

    def find(self, text: str) -> list[tuple[int, int, int]]:
        """Every word-bounded match as (start, end, term index), in order of end offset."""
        n = len(text)
        out = []
        for end, (idx, length, prefix, left, right) in self._automaton.iter(text):
            start = end - length + 1
            if left and start > 0 and _is_word(text[start - 1]):
                continue
            if right and not prefix and end + 1 < n and _is_word(text[end + 1]):
                continue
            out.append((start, end + 1, idx))
        return out

    def any_hit(self, text: str) -> bool:
        """Whether `text` contains any term (stops at the first word-bounded match)."""
        n = len(text)
        for end, (_idx, length, prefix, left, right) in self._automaton.iter(text):
            start = end - length + 1
            if left and start > 0 and _is_word(text[start - 1]):
                continue
            if right and not prefix and end + 1 < n and _is_word(text[end + 1]):
                continue
            return True
        return False

    def score(self, term_indices: set[int] | list[int]) -> float:
        """Noisy-OR of the weights of the distinct terms: 1 - prod(1 - w)."""
        p = 1.0
        for i in set(term_indices):
            p *= 1.0 - self.weights[i]
        return 1.0 - p
