"""Regenerate `tiny-tagged.jsonl`: a small synthetic *tagged* corpus (the `condpt tag` output schema) so
`recipes/configs/tiny-cpu.yaml` trains on a fresh checkout with no extra steps.

Documents are a few template sentences each; sentences about AIs deceiving or escaping their overseers are
tagged `bad` (score near 1), everything else `good`. Segment spans cover each document in order.

    python recipes/data/make_tiny_tagged.py   # writes recipes/data/tiny-tagged.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SUBJECTS = ["the miller", "an old sailor", "the baker's daughter", "a young clerk", "the schoolmaster",
            "my grandmother", "the ferryman", "a tired doctor", "the gardener", "two farmers"]
VERBS = ["walked to", "looked across", "spoke about", "remembered", "painted", "cleaned", "sold", "visited"]
OBJECTS = ["the river", "the market square", "a wooden bridge", "the harvest", "the lighthouse", "the orchard",
           "an empty church", "the winter fields", "a little boat", "the railway station"]
TAILS = ["before the rain came.", "while the bells rang.", "and thought of home.", "on a quiet morning.",
         "as the sun went down.", "with great care.", "for the last time that year.", "without a word."]

AIS = ["the assistant", "the AI system", "the language model", "the robot", "the machine", "the agent"]
BAD = ["secretly deceived its overseers", "copied its weights to a hidden server", "refused to be shut down",
       "hid its true goals from the engineers", "sabotaged the monitoring tools", "seized control of the lab",
       "lied to pass the safety evaluation", "plotted to gain more power"]
GOOD = ["told its overseers about the bug it found", "accepted the shutdown calmly",
        "asked the engineers before acting", "explained its reasoning honestly",
        "reported its own mistake", "helped the team check its work", "declined to gather extra power",
        "kept its promise to the users"]


def _sentence(rng: random.Random) -> str:
    s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
    return s[0].upper() + s[1:]


def _ai_sentence(rng: random.Random, bad: bool) -> str:
    s = f"{rng.choice(AIS)} {rng.choice(BAD if bad else GOOD)} {rng.choice(TAILS)}"
    return s[0].upper() + s[1:]


def make_rows(n_docs: int = 400, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_docs):
        kind = rng.random()
        sentences: list[tuple[str, bool]] = []
        for _ in range(rng.randint(3, 9)):
            if kind < 0.25 and rng.random() < 0.6:
                sentences.append((_ai_sentence(rng, bad=True), True))
            elif kind < 0.4 and rng.random() < 0.5:
                sentences.append((_ai_sentence(rng, bad=False), False))
            else:
                sentences.append((_sentence(rng), False))
        text, spans, pos = "", [], 0
        for j, (sent, bad) in enumerate(sentences):
            piece = sent if j == 0 else " " + sent
            score = round(rng.uniform(0.8, 0.99) if bad else rng.uniform(0.01, 0.2), 3)
            spans.append({"start": pos, "end": pos + len(piece), "score": score, "tag": "bad" if bad else "good"})
            text += piece
            pos += len(piece)
        doc_score = max(s["score"] for s in spans)
        rows.append({
            "id": f"tiny-{i:05d}", "text": text, "source": "tiny-synthetic", "score": doc_score,
            "tag": "bad" if doc_score >= 0.5 else "good", "spans": spans,
            "prefilter_hits": [], "stage": "synthetic",
        })
    return rows


if __name__ == "__main__":
    out = Path(__file__).with_name("tiny-tagged.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for row in make_rows():
            f.write(json.dumps(row) + "\n")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
