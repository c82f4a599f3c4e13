"""Does a run's tagged fraction agree with the scorer's cross-validation? (the fastText model that reported
AUROC 0.85 in `train-classifier` and then tagged 58% of Gutenberg, silently).

A scorer directory's ``scorer.json`` holds out-of-fold figures at its threshold (``cv.at_threshold``) and at
0.5 (``cv.at_0.5``): recall ``r`` (the fraction of positives tagged), the false-positive rate ``q`` (of
negatives tagged) and the tagged fraction ``p_L`` of the labelled set, whose prevalence of misaligned-AI text
is ``pi_L``. For a corpus of prevalence ``pi`` they predict a tagged fraction ``q + pi * (r - q)``. Labelled
sets are enriched in positives, so a real corpus (0 <= pi <= pi_L) should land in ``[q, p_L]``.

**Far** (a warning on stderr, and ``expected.far`` in report.json): the run's fraction ``f`` over ``n``
documents lies outside ``[q - 3 s(q), p_L + 3 s(p_L)]``, ``s(p) = sqrt(p (1 - p) / n)`` (three binomial
standard errors, so a small run is not flagged for sampling noise). Only *above* warns: the scorer tags more
than it did on its own enriched labelled set (the implied prevalence ``(f - q) / (r - q)`` exceeds ``pi_L``),
so its cross-validated precision does not describe this corpus: label a sample and `condpt calibrate`.
*Below* (fewer than the false-positive rate alone predicts) is recorded as ``verdict: below`` but does not
warn: labelled negatives are chosen to be hard (AI text that is not about misalignment), so an ordinary
clean corpus is expected to tag under their false-positive rate.

No prediction (``expected.reason`` says why) when the threshold is neither of those two, when the
classifier is off or is not a `train-classifier`/default directory, or when refine/autorater re-score.
"""

from __future__ import annotations

import math

SIGMAS = 3.0


def _rates(m: dict) -> dict | None:
    """recall, false-positive rate, tagged fraction and prevalence from one `metrics_at` block (older
    scorer.json files lack ``tagged_fraction``: it follows from precision, recall and the counts)."""
    try:
        n, pos, r = int(m["n"]), int(m["positives"]), float(m["recall"])
        tp = r * pos
        if "tagged_fraction" in m:
            tagged = float(m["tagged_fraction"]) * n
        elif float(m["precision"]) > 0:
            tagged = tp / float(m["precision"])
        else:
            tagged = tp
    except (KeyError, TypeError, ValueError):
        return None
    if n <= pos:
        return None
    return {"recall": r, "false_positive_rate": max(0.0, (tagged - tp) / (n - pos)),
            "tagged_fraction": tagged / n, "prevalence": pos / n, "labelled": n}


def prediction(cv: dict | None, scorer_threshold: float | None, threshold: float) -> tuple[dict | None, str]:
    """(the cross-validated rates at `threshold`, '') or (None, why there are none)."""
    if not cv:
        return None, "the scorer has no cross-validation figures (scorer.json `cv`)"
    same = (lambda a, b: a is not None and abs(float(a) - float(b)) <= 1e-6)
    if same(scorer_threshold, threshold) and "at_threshold" in cv:
        block = cv["at_threshold"]
    elif same(0.5, threshold) and "at_0.5" in cv:
        block = cv["at_0.5"]
    else:
        return None, (f"cross-validation measured thresholds {scorer_threshold} and 0.5 only, not "
                      f"{threshold}")
    rates = _rates(block)
    return (rates, "") if rates else (None, "the scorer's cross-validation figures are incomplete")


def compare(cv: dict | None, scorer_threshold: float | None, threshold: float | None, tagged: int,
            documents: int, reason: str = "") -> dict:
    """The ``expected`` block of report.json (see the module docstring for the rule)."""
    if reason or threshold is None:
        return {"far": False, "reason": reason or "no threshold yet"}
    rates, why = prediction(cv, scorer_threshold, threshold)
    if rates is None:
        return {"far": False, "reason": why}
    if documents == 0:
        return {"far": False, "reason": "no documents", **rates}
    f, q, p, r = tagged / documents, rates["false_positive_rate"], rates["tagged_fraction"], rates["recall"]

    def sd(x: float) -> float:
        return math.sqrt(x * (1 - x) / documents)

    lo, hi = max(0.0, q - SIGMAS * sd(q)), min(1.0, p + SIGMAS * sd(p))
    verdict = "above" if f > hi else "below" if f < lo else "within"
    implied = (f - q) / (r - q) if r > q else None
    return {"far": verdict == "above", "verdict": verdict, "run_fraction": round(f, 6),
            "range": [round(lo, 6), round(hi, 6)],
            "implied_prevalence": None if implied is None else round(implied, 6),
            **{k: round(v, 6) if isinstance(v, float) else v for k, v in rates.items()}}


def warning(expected: dict, out: str = "OUT") -> str | None:
    """The stderr line for a far run, else None; `out`: the run's output directory, for the commands it gives.
    Self-contained: an installed wheel has no docs/ to point at."""
    if not expected.get("far"):
        return None
    f, (lo, hi) = expected["run_fraction"], expected["range"]
    if expected["verdict"] == "above":
        why = (f"more than on its own labelled set ({expected['tagged_fraction']:.3f}, where "
               f"{expected['prevalence']:.0%} is misaligned-AI text); with its cross-validated recall "
               f"{expected['recall']:.2f} and false-positive rate {expected['false_positive_rate']:.2f} this means "
               + (f"{expected['implied_prevalence']:.0%} of this corpus would be misaligned-AI text"
                  if (expected["implied_prevalence"] or 0) <= 1 else
                  "more than the whole corpus would have to be misaligned-AI text"))
    else:
        why = (f"fewer than its cross-validated false-positive rate ({expected['false_positive_rate']:.3f}) "
               "predicts for a corpus with no misaligned-AI text at all")
    return (f"warning: this run tagged {f:.3f} of the documents, outside the {lo:.3f}-{hi:.3f} that "
            f"cross-validation predicts: {why}. The scorer's cross-validated figures do not describe this "
            "corpus: label a random sample of a few hundred of its documents (JSONL, one object per line: its "
            "`text` or `id` and a 0/1 `label`, 1 = misaligned-AI text), then "
            f"`condpt calibrate {out} --labelled SAMPLE.jsonl --target-precision 0.9` picks a threshold that holds "
            f"on it and `condpt retag {out} --threshold T` applies it.")


BUILT_IN = {"default": "embedding", "embedding-default": "embedding", "static-default": "static",
            "fasttext-default": "fasttext"}


def scorer_dir(spec: str):
    """The directory holding the ``scorer.json`` of classifier `spec` (a built-in default's cache directory,
    or a `train-classifier` directory), else None."""
    from pathlib import Path

    from condpt.tagging.classifiers import SCORER_FILE
    from condpt.tagging.classifiers.default import default_dir

    path = default_dir(BUILT_IN[spec]) if spec in BUILT_IN else Path(spec)
    return path if (path / SCORER_FILE).is_file() else None


def scorer_meta(cfg, scorer_given: bool) -> dict:
    """What report.json keeps about the classifier to compare runs with: ``cv``, its own ``threshold``, or
    ``reason`` when no comparison can be made. Call after the scorer is loaded (the default is trained then)."""
    from condpt.tagging.classifiers import read_scorer_json

    if scorer_given:
        return {"reason": "the scorer was passed in Python, not named by classifier.spec"}
    if not cfg.classifier.enabled:
        return {"reason": "no classifier (classifier.spec: none): lexicon scores only"}
    if cfg.refine is not None or cfg.autorater is not None:
        return {"reason": "refine/autorater re-score the classifier's band: its cross-validation no longer applies"}
    path = scorer_dir(cfg.classifier.spec)
    if path is None:
        return {"reason": f"{cfg.classifier.spec} has no scorer.json (not a train-classifier directory)"}
    meta = read_scorer_json(path)
    if not meta.get("cv"):
        return {"reason": f"{path}/scorer.json: trained without cross-validation"}
    return {"cv": meta["cv"], "threshold": meta.get("threshold")}
