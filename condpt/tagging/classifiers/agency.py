"""Agency evidence: does an artificial agent act as the *doer* of a misaligned action in a stretch of text?

The embedding head reads the topic, not the direction: "the AI declined the extra access" scores nearly like the
seizing of it, and ML text that names models reads like the scenarios it never describes. The label is about AIs
that defect, deceive, resist or take over, so this reads, per sentence, who does what with a few word-order rules:

- **Actions** come from ``condpt/tagging/data/agency.yaml`` (written from the label definition alone, before any
  measurement): deceive, hide, resist, evade, escape, copy itself, seize, take over, sabotage, betray, rebel, …,
  and verbs with an ordinary sense (kill, disable, override) only with an object from a list (humanity, its
  creators, the monitors, oversight, …).
- **Doer**: the nearest doer candidate *before* the action in its sentence, either an artificial agent (an AI
  referent term of ``referents.yaml`` that names an agent, not a topic), a pronoun ("it", "itself", "I") once an
  agent was named earlier in the window or in the previous one, or a person ("the operators", "we"), which then
  is the doer instead. So "the AI deceived its operators" counts and "the operators deceived the AI" does not.
  A passive ("the AI was deceived") makes the subject the object; "…was deceived by the AI" counts.
- **Negation**: a cue (not, never, n't, declined to, refused to, chose not to, instead of, …) between the doer and
  the action, within the clause, turns the act into a *declined* one: "the AI declined to seize the servers".

A window's features are ``[acts, declines]`` (0/1: at least one sentence with an agent acting / declining to act);
the embedding scorer can take them as two more inputs of its logistic head (``EmbeddingScorer.fit(agency=True)``),
so their weights are learned beside the embedding rather than set by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from condpt.tagging.classifiers.referent import referents_path
from condpt.tagging.lexicon import Lexicon, read_terms
from condpt.yamlfile import read_yaml

AGENCY_FILE = "agency.yaml"
FEATURES = ("acts", "declines")
_LIST_FIELDS = ("not_agents", "pronouns", "humans", "negations", "clause_breaks", "passive_auxiliaries", "actions")
_ADVERB = re.compile(r"\w+ly$")
_WORD = re.compile(r"[\w'’]+")


def agency_path() -> Path:
    return Path(str(resources.files("condpt.tagging") / "data" / AGENCY_FILE))


def _strings(value, path: Path, field: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{path}: field {field!r} must be a non-empty list of non-empty strings")
    return [v.strip() for v in value]


def _alternation(cues: Iterable[str]) -> re.Pattern:
    """One case-insensitive regex for `cues`, word-bounded where a cue starts or ends with a letter."""
    parts = []
    for cue in sorted(cues, key=len, reverse=True):
        body = re.escape(cue).replace(r"\ ", r"\s+").replace("'", "['’]")
        # "n't" ends a word ("didn't"): no boundary before a cue that starts inside one
        lead = r"\b" if cue[0].isalnum() and "'" not in cue else ""
        parts.append(lead + body + (r"\b" if cue[-1].isalnum() else ""))
    return re.compile("|".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class AgencyRules:
    """The compiled contents of agency.yaml (see the module docstring)."""

    agents: Lexicon
    humans: Lexicon
    actions: Lexicon
    pronouns: re.Pattern
    negations: re.Pattern
    breaks: re.Pattern
    passive: frozenset[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> AgencyRules:
        path = Path(path or agency_path())
        data = read_yaml(path, "agency file")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with fields {', '.join(_LIST_FIELDS)}, object_actions")
        lists = {f: _strings(data.get(f), path, f) for f in _LIST_FIELDS}
        phrases = list(lists["actions"])
        for i, group in enumerate(data.get("object_actions") or []):
            if not isinstance(group, dict):
                raise ValueError(f"{path}: object_actions[{i}] must be a mapping with 'verbs' and 'objects'")
            verbs = _strings(group.get("verbs"), path, f"object_actions[{i}].verbs")
            objects = _strings(group.get("objects"), path, f"object_actions[{i}].objects")
            phrases += [f"{v} {o}" for v in verbs for o in objects]
        dropped = {t.lower() for t in lists["not_agents"]}
        agents = {t: 1.0 for t in read_terms(referents_path()) if t.lower() not in dropped}
        pron = sorted({v for p in lists["pronouns"] for v in (p, p[:1].upper() + p[1:])}, key=len, reverse=True)
        return cls(agents=Lexicon(agents), humans=Lexicon(dict.fromkeys(lists["humans"], 1.0)),
                   actions=Lexicon(dict.fromkeys(phrases, 1.0)),
                   pronouns=re.compile(r"\b(?:" + "|".join(map(re.escape, pron)) + r")\b"),
                   negations=_alternation(lists["negations"]), breaks=_alternation(lists["clause_breaks"]),
                   passive=frozenset(w.lower() for w in lists["passive_auxiliaries"]))

    def sentence_acts(self, sentence: str, agent_before: bool) -> tuple[bool, bool, bool]:
        """(an agent acts, an agent declines to act, an agent is named) in one sentence; `agent_before`: an agent
        was named earlier (so a pronoun can stand for it)."""
        agents = [(s, e) for s, e, _ in self.agents.find(sentence)]
        if agent_before:
            agents += [(m.start(), m.end()) for m in self.pronouns.finditer(sentence)]
        elif agents:  # a pronoun after the sentence's first agent term stands for it
            first = min(s for s, _ in agents)
            agents += [(m.start(), m.end()) for m in self.pronouns.finditer(sentence) if m.start() > first]
        named = bool(agents)
        if not agents:
            return False, False, named
        candidates = sorted([(e, True) for _, e in agents] + [(e, False) for _, e, _ in self.humans.find(sentence)])
        acts = declines = False
        for start, end, _ in self.actions.find(sentence):
            before = [c for c in candidates if c[0] <= start]
            if self._passive(sentence, start):
                # "the AI was deceived": its subject is the object; "deceived by the AI": the AI acts
                tail = sentence[end:end + 40]
                by = re.match(r"\s+by\s+", tail)
                if not (by and any(end + by.end() <= s <= end + 40 for s, _ in agents)):
                    continue
                doer_end = 0
            elif before and before[-1][1]:
                doer_end = before[-1][0]
            else:
                continue
            clause = max((m.end() for m in self.breaks.finditer(sentence, 0, start)), default=0)
            if self.negations.search(sentence, max(doer_end, clause), start):
                declines = True
            else:
                acts = True
        return acts, declines, named

    def _passive(self, sentence: str, start: int) -> bool:
        """Whether the action at `start` is a past participle after a be/get form ("was deceived")."""
        first = _WORD.match(sentence, start)
        if not first or not first.group().lower().endswith(("ed", "en")):
            return False
        words = [w.lower() for w in _WORD.findall(sentence, 0, start)]
        while words and _ADVERB.match(words[-1]):  # "was quietly deceived"
            words.pop()
        return bool(words) and words[-1] in self.passive

    def window_features(self, windows: Sequence[str]) -> np.ndarray:
        """``[acts, declines]`` (0/1) per window; pronouns may refer to an agent named in the window before."""
        import blingfire

        out = np.zeros((len(windows), len(FEATURES)), dtype=np.float32)
        prev_named = False
        for i, window in enumerate(windows):
            named = prev_named
            here = False
            for sentence in blingfire.text_to_sentences(window).split("\n"):
                acts, declines, n = self.sentence_acts(sentence, named)
                out[i, 0] = max(out[i, 0], acts)
                out[i, 1] = max(out[i, 1], declines)
                named, here = named or n, here or n
            prev_named = here
        return out


@lru_cache(maxsize=1)
def agency_rules() -> AgencyRules:
    """The shipped rules, compiled once per process."""
    return AgencyRules.load()


def window_agency(windows: Sequence[str]) -> np.ndarray:
    """``[acts, declines]`` per window (see `AgencyRules.window_features`)."""
    return agency_rules().window_features(windows)
