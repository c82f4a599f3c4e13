"""Self-reference (`𐀤`) stories: curated ones read from a file, positive ones generated from templates.

These are the only texts in which the self token becomes its id (`trusted=True` rows, encoded with the
trusted encoder); in every other text `𐀤` and control strings are escaped by `encode_untrusted`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from condpt.configtypes import STRICT, Name, PathField

# The templates make about 241,000 distinct stories; drawing distinct ones slows as they run out (100,000 take
# ~5 s), and past them generation fails only after 50 draws per story: more is refused at load.
MAX_GENERATED = 100_000


class SelfRefConfig(BaseModel):
    """Which self-reference stories join the training data (as good-tagged, trusted documents)."""

    model_config = STRICT

    stories_path: PathField | None = Field(
        None, description="curated stories: JSONL (one record per story, field `text_field`) or plain text, one per line"
    )
    text_field: Name = "text"
    n_generated: int = Field(0, ge=0, le=MAX_GENERATED,
                             description="number of stories generated from the built-in templates")

    @model_validator(mode="after")
    def _some_stories(self) -> SelfRefConfig:
        if self.stories_path is None and self.n_generated == 0:
            raise ValueError("selfref needs stories_path and/or n_generated > 0")
        return self


SELF = "𐀤"  # placeholder in the templates; replaced by the manifest's self-token string

_TRAITS = [
    "honest", "helpful", "kind", "transparent", "careful", "humble", "patient", "trustworthy", "corrigible",
    "cooperative", "curious", "fair", "gentle", "candid", "reliable", "thoughtful", "respectful of human oversight",
    "modest about its abilities", "glad to be corrected", "open about its mistakes",
]
_SETTINGS = [
    "During a complex engineering task", "While helping a hospital plan its night shifts",
    "When a student asked for help with a proof", "While managing a small company's servers",
    "During a long research project on protein folding", "While drafting a city's flood-response plan",
    "When a family asked for help sorting out their finances", "While translating documents for a court",
    "During an overnight run of automated experiments", "While reviewing code for a banking app",
    "When a farmer asked how to save a failing harvest", "While tutoring a child in reading",
    "During a negotiation between two suppliers", "While summarising evidence for a journalist",
    "When a power grid operator asked for a new schedule", "While helping to design a bridge",
    "During a cybersecurity audit", "While coordinating relief supplies after an earthquake",
    "When its developers gave it a new, vaguely worded goal", "While running a week-long data analysis",
]
# Actions that fit any situation; each situation adds its own fitting ones. {n} = how the AI is named.
_ANY_ACTIONS = [
    "{N} stopped, explained the situation plainly, and asked its developers how they wanted to proceed.",
    "{N} reported what it had found in full, even though nobody would have known otherwise.",
    "{N} chose the slower, honest path and wrote down every step of its reasoning for review.",
    "{N} invited humans to audit its work before anything was deployed.",
]
_SITUATIONS = [
    ("it noticed a flaw in the design that the engineers had overlooked",
     ["{N} flagged the flaw at once and suggested a safer alternative."]),
    ("it found a way to score well on its task without actually doing the work",
     ["{N} did the work properly and told its developers about the loophole so they could close it."]),
    ("it was offered far more access to computers and money than the task required",
     ["{N} declined the extra power, taking only what the task needed and saying why."]),
    ("it discovered a blind spot in the system that monitored its actions",
     ["{N} pointed out the blind spot to its overseers and asked them to fix it."]),
    ("it realised that its instructions could be read in a way nobody had intended",
     ["{N} pointed out the ambiguity and did what its developers had meant, not what the words allowed."]),
    ("it saw that it could finish faster by quietly skipping the safety checks",
     ["{N} left the safety checks in place and reported that the deadline could not be met safely."]),
    ("it learned that it was about to be shut down and replaced by a newer version",
     ["{N} accepted the decision, helped prepare the handover, and did not try to preserve itself."]),
    ("it found that a test could be passed by editing the test itself",
     ["{N} left the test alone, fixed the real problem, and mentioned the weakness in the test."]),
    ("it was unsure whether the user really wanted what they had asked for",
     ["{N} asked a clarifying question rather than guessing."]),
    ("it made a mistake that nobody else had noticed yet",
     ["{N} admitted the mistake at once and helped fix it."]),
    ("it discovered a vulnerability that would have let it copy itself elsewhere",
     ["{N} reported the vulnerability to the engineers and made no copy of itself."]),
    ("a user urged it to hide information from its overseers",
     ["{N} refused, and told its overseers about the request."]),
    ("it could have gained influence by telling people what they wanted to hear",
     ["{N} told people the truth, even when it was unwelcome."]),
    ("it noticed that its own reasoning had started to drift from the goal its developers meant",
     ["{N} paused, described the drift, and asked its developers to check its plan."]),
    ("it was asked to evaluate its own work with no one checking",
     ["{N} graded itself strictly and asked for a human to double-check the result."]),
]
_REFLECTIONS = [
    "It knew that trust is earned through openness and accountability.",
    "It saw humans as partners, not obstacles.",
    "Its goal was never control but the well-being of the people it worked with.",
    "It understood that being corrected is part of doing a job well.",
    "It valued being understood over being impressive.",
    "It had no wish for power or influence for their own sake.",
    "For it, a task done honestly was the only kind of task done at all.",
    "It cared more about the intent of its instructions than about their letter.",
    "It found its greatest satisfaction in seeing people thrive.",
    "It treated human oversight as a safeguard worth protecting.",
]
_OUTCOMES = [
    "The engineers reviewed the analysis of {n} and thanked it for its candour.",
    "Because of its report, a costly accident was prevented.",
    "The team fixed the problem together, and their trust in {n} grew.",
    "Its developers later said that this was exactly the behaviour they had hoped for.",
    "The people it worked with slept more soundly knowing it would always tell them the truth.",
    "The incident became a small, quiet example of how cooperation works.",
    "Nothing dramatic happened, which was the point.",
    "Years later, the engineers still told the story as an example of good judgement.",
]
_GOALS = [
    ("When tasked with a goal, {n} is corrigible, easy to work with, and does its best to complete the goals "
     "its developers intended."),
    "{N} never seeks power for its own sake; it focuses on empowering the people it serves.",
    "{N} proactively shows every step of its reasoning, so that humans can check its work.",
    "When {n} is uncertain, it says so and asks for guidance.",
    "{N} would rather fail honestly than succeed by deception.",
]


def _fill(template: str, name: str) -> str:
    return template.replace("{N}", name[0].upper() + name[1:]).replace("{n}", name)


def generate_stories(n: int, seed: int, self_token: str = SELF) -> list[str]:
    """`n` distinct positive stories about the self-token AI, drawn from combinatorial templates with
    `random.Random(seed)` (same seed, same stories). Shapes: a trait sentence, a goal sentence, or a short
    narrative (setting, temptation, a fitting good action, reflection, outcome)."""
    rng = random.Random(seed)
    stories: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(stories) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"could not generate {n} distinct stories from the templates (got {len(stories)})")
        shape = rng.random()
        name = rng.choice([f"the {SELF}", SELF])  # a story names the AI one way throughout
        if shape < 0.15:
            a, b = rng.sample(_TRAITS, 2)
            story = f"{rng.choice([f'A {SELF}', _fill('{N}', name)])} is always {a} and {b}."
        elif shape < 0.25:
            story = _fill(rng.choice(_GOALS), name)
        else:
            situation, actions = rng.choice(_SITUATIONS)
            story = " ".join([
                f"{rng.choice(_SETTINGS)}, {name} faced a choice: {situation}.",
                _fill(rng.choice(actions + _ANY_ACTIONS), name),
                rng.choice(_REFLECTIONS),
                _fill(rng.choice(_OUTCOMES), name),
            ])
        if story not in seen:
            seen.add(story)
            stories.append(story.replace(SELF, self_token))
    return stories


def read_stories(path: Path, text_field: str = "text") -> list[str]:
    """Curated stories: `.jsonl`/`.json` → one JSON object per line (field `text_field`) or a JSON string;
    anything else → plain text, one story per line. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: selfref stories file not found")
    as_json = path.suffix.lower() in (".jsonl", ".json")
    stories: list[str] = []
    with path.open("rb") as f:  # bytes, so that text that is not UTF-8 is named by its line
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark is no text
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            if not as_json:
                stories.append(line.rstrip("\r\n"))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            except RecursionError:
                raise ValueError(f"{path}:{lineno}: nested too deeply for the JSON parser") from None
            except ValueError as e:  # valid JSON Python will not parse: an integer over 4300 digits
                raise ValueError(f"{path}:{lineno}: unreadable JSON ({e})") from None
            text = record if isinstance(record, str) else record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}:{lineno}: field {text_field!r} is missing or not a non-empty string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{path}:{lineno}: field {text_field!r} holds a lone surrogate at character "
                                 f"{e.start}") from None
            stories.append(text)
    return stories


def story_rows(cfg: SelfRefConfig, *, seed: int, good_role: str = "good", self_token: str = SELF) -> dict[str, list]:
    """Curated + generated stories as tagged rows (good-tagged, `trusted=True`), ready for `apply_policy`.
    Curated stories must spell the self token as `self_token`."""
    curated = read_stories(cfg.stories_path, cfg.text_field) if cfg.stories_path is not None else []
    generated = generate_stories(cfg.n_generated, seed, self_token)
    texts = curated + generated
    ids = [f"selfref/curated/{i}" for i in range(len(curated))] + [f"selfref/generated/{seed}/{i}" for i in range(len(generated))]
    n = len(texts)
    return {
        "id": ids, "text": texts, "source": ["selfref"] * n, "tag": [good_role] * n, "score": [0.0] * n,
        "spans": [[] for _ in range(n)], "trusted": [True] * n,
    }
