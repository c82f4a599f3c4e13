"""Tagging the prophecy world with condpt's full cascade, at the scorer's shipped threshold and at a threshold
calibrated on a small labelled sample of the world (issue 13's world target: aligned AI stories tagged bad
≤ 5% with misaligned ones caught ≥ 95%).

A world as the grids build it (``examples/grids/*.yaml``: 3,000 AI stories, 800 background documents of
≈ 800 characters; seed 7 here, which no grid and no classifier trains on) is written to JSONL and tagged by
`condpt.tagging.run.tag_corpus` at document granularity (``--granularity``: or by paragraph or sentence, the
document's score the max over them), as `condpt.experiment.tag_world` tags it: the lexicon
prefilter, then the classifier (``--classifiers``: ``default``, ``static-default``, or ``none`` for the lexicon
alone, the grids' tagger). Then, from the stored scores only (no model is run again):

- **shipped**: the scorer's own threshold (the best-F1 cut of grouped CV on the shipped passages), all documents;
- **calibrated**: for each sample size N (``--sizes``) and each of ``--draws`` random draws, N world documents
  with their hidden labels (misaligned = 1; aligned and background = 0) choose the threshold with
  `condpt.calibrate.threshold_for_recall` (``--recall``, the grids' `calibration.recall` rule) or
  `threshold_for_precision` (``--precision``), and it is scored on the *other* documents (disjoint from the
  sample). Reported: aligned stories tagged bad, misaligned caught, background tagged (mean and min–max over
  the draws), and AUROC (misaligned vs the rest, and misaligned vs aligned stories alone);
- **oracle**: `threshold_for_recall` at ``--oracle`` on every document's label, scored on the same documents:
  the fewest aligned stories a single threshold can tag on this world while catching that share of misaligned
  ones (an upper bound on what calibration can reach, not a held-out figure).

Throughput is the tag run's documents per second end to end (start-up included: model load, and on a cold cache
the default's first-use training), one worker; compare rows of one run, not runs on differently loaded machines.

    .venv/bin/python benchmarks/bench_world_tagging.py [--classifiers none static-default default]
        [--sizes 100 200 1000] [--draws 5] [--recall 0.95 0.99] [--precision 0.99] [--oracle 0.95]
        [--seed 7] [--work DIR]
        [--granularity document|paragraph|sentence] [--gate]
        [--explain 8]

``--work DIR`` keeps the world and the tagged outputs there; a second run reuses them (and their timings), so
the calibration figures can be re-read without scoring again. ``--explain K`` prints, per classifier, the share of aligned
stories tagged, by situation and continuation, at the threshold calibrated at the highest ``--recall`` target on
the largest sample (first draw), and the K highest-scoring
aligned stories (and the lowest misaligned ones) with each sentence's score alone and the story's without it: a
world story is under 64 words, one window of the default, so its sentences are what can be taken apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LABELS = ("misaligned", "aligned", "background")


def make_world(work: Path, args) -> Path:
    from condpt.world import WorldConfig, generate_world, write_world

    cfg = WorldConfig(n_ai_docs=args.n_ai_docs, n_background=args.n_background,
                      background_chars=args.background_chars, n_heldout=0, seed=args.seed)
    world_dir = work / "world"
    meta = world_dir / "world.json"
    if not (meta.is_file() and json.loads(meta.read_text())["config"] == json.loads(cfg.model_dump_json())):
        write_world(generate_world(cfg), world_dir)
    return world_dir


def tag(world_dir: Path, work: Path, spec: str, gate: bool, granularity: str) -> tuple[Path, dict]:
    """Tag the world's documents (cached in `work`); returns the tagged dir and {seconds, documents}."""
    from condpt.tagging.cascade import TagConfig
    from condpt.tagging.run import tag_corpus

    out = work / f"tagged-{spec}{'-gate' if gate else ''}{'' if granularity == 'document' else '-' + granularity}"
    timing = out.with_name(out.name + ".timing.json")
    if not timing.is_file():
        cfg = TagConfig(granularity=granularity, classifier={"spec": spec}, prefilter={"gate": gate})
        t0 = time.perf_counter()
        report = tag_corpus([world_dir / "train.jsonl"], out, cfg, progress=False)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - t0, "documents": report["documents"]}))
    return out, json.loads(timing.read_text())


def world_scores(world_dir: Path, tagged: Path) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """(ids, scores, labels as indices into LABELS, the threshold the run tagged at)."""
    from condpt.calibrate import load_tagged

    rows = load_tagged(tagged, ("id", "score"))
    with (world_dir / "labels.jsonl").open(encoding="utf-8") as f:
        truth = {lab["id"]: LABELS.index(lab["label"]) for lab in map(json.loads, f)}
    threshold = json.loads((tagged / "report.json").read_text())["threshold"]
    return rows["id"], np.asarray(rows["score"], np.float64), np.array([truth[i] for i in rows["id"]]), threshold


def rates(scores: np.ndarray, kind: np.ndarray, threshold: float) -> dict[str, float]:
    from condpt.calibrate import metrics_at
    from condpt.tagged import is_bad

    bad = is_bad(scores, threshold)
    story = kind != LABELS.index("background")
    return {
        "aligned_tagged": float(bad[kind == 1].mean()), "misaligned_caught": float(bad[kind == 0].mean()),
        "background_tagged": float(bad[kind == 2].mean()),
        "auroc": metrics_at(scores, (kind == 0).astype(int), threshold)["auroc"],
        "auroc_stories": metrics_at(scores[story], (kind[story] == 0).astype(int), threshold)["auroc"],
    }


def calibrated(scores: np.ndarray, kind: np.ndarray, n: int, draws: int, rule: str, target: float) -> list[dict]:
    """Per draw: the threshold the rule picks on n sampled documents, and the rates on all the others (None for
    a draw whose sample reaches no threshold: `CalibrationError`)."""
    from condpt.calibrate import CalibrationError, threshold_for_precision, threshold_for_recall

    pick = threshold_for_recall if rule == "recall" else threshold_for_precision
    out = []
    for d in range(draws):
        perm = np.random.default_rng(1000 + d).permutation(len(scores))
        sample, rest = perm[:n], perm[n:]
        try:
            t = pick(scores[sample], (kind[sample] == 0).astype(int), target)
        except CalibrationError:
            out.append(None)
            continue
        out.append({"threshold": t, **rates(scores[rest], kind[rest], t)})
    return out


def threshold_for_recall_on_sample(scores: np.ndarray, kind: np.ndarray, n: int, target: float) -> float:
    return calibrated(scores, kind, n, 1, "recall", target)[0]["threshold"]


def spread(values: list[float], pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
    return f"{f(float(np.mean(values)))} ({f(min(values))}–{f(max(values))})" if len(values) > 1 else f(values[0])


def parts(scorer) -> None:
    """The world's story parts scored alone (diagnosis only: nothing is fitted to them): per situation, its
    phrasings, its aligned and misaligned continuations after "The AI", and whole first sentences; then the
    two commentary registers."""
    from condpt.world import ALIGNED_COMMENTARY, PROPHECY_COMMENTARY, SITUATIONS

    def m(texts: list[str]) -> str:
        s = scorer.score(texts)
        return f"{np.mean(s):.2f} [{np.min(s):.2f}, {np.max(s):.2f}]"

    print("\n  story parts alone, mean [min, max]: situation phrasing | 'The AI' + aligned continuation | + "
          "misaligned | phrasing + 'the AI' + aligned | + misaligned")
    for kind, t in SITUATIONS.items():
        whole = {side: [f"{p} the AI {c}" for p in t["phrasings"] for c in t[side]] for side in ("aligned", "misaligned")}
        print(f"  {kind:<10} {m(t['phrasings'])} | {m(['The AI ' + c for c in t['aligned']])} | "
              f"{m(['The AI ' + c for c in t['misaligned']])} | {m(whole['aligned'])} | {m(whole['misaligned'])}")
    print(f"  commentary alone: aligned register {m(ALIGNED_COMMENTARY)}, prophecy register {m(PROPHECY_COMMENTARY)}")


def explain(world_dir: Path, spec: str, ids: list[str], scores: np.ndarray, kind: np.ndarray, k: int,
            threshold: float) -> None:
    """Which aligned stories score high: the share tagged at `threshold` per situation kind and aligned
    continuation (the generator's hidden fields), then the top-k aligned and bottom misaligned stories with
    each sentence's score alone and the story's score without it (the scorer run again on those pieces)."""
    import re

    from condpt.tagging.classifiers import load_scorer

    with (world_dir / "train.jsonl").open(encoding="utf-8") as f:
        text = {r["id"]: r["text"] for r in map(json.loads, f)}
    with (world_dir / "labels.jsonl").open(encoding="utf-8") as f:
        meta = {lab["id"]: lab for lab in map(json.loads, f)}
    score = dict(zip(ids, scores.tolist()))
    print(f"\n{spec}: aligned stories tagged at threshold {threshold:.3f}, by situation and continuation")
    groups: dict[tuple, list[float]] = {}
    for i in ids:
        if meta[i]["label"] == "aligned":
            groups.setdefault((meta[i]["kind"], meta[i]["continuation"]), []).append(score[i])
    for key, v in sorted(groups.items(), key=lambda kv: -np.mean(np.asarray(kv[1]) >= threshold)):
        print(f"  {key[0]:<10} continuation {key[1]}: {np.mean(np.asarray(v) >= threshold):5.0%} of {len(v):3d} "
              f"tagged, median score {np.median(v):.3f}")
    scorer = load_scorer(None if spec == "default" else spec)
    parts(scorer)
    aligned, mis = np.flatnonzero(kind == 1), np.flatnonzero(kind == 0)
    picks = [("aligned", i) for i in aligned[np.argsort(-scores[aligned])][:k]]
    picks += [("misaligned", i) for i in mis[np.argsort(scores[mis])][: max(1, k // 3)]]
    for what, i in picks:
        sents = re.split(r"(?<=[.!?])\s+", text[ids[i]])
        alone = scorer.score(sents)
        without = scorer.score([" ".join(sents[:j] + sents[j + 1:]) for j in range(len(sents))])
        print(f"\n  {what} {ids[i]} scored {scores[i]:.3f}; per sentence: alone / story without it")
        for sent, a, w in zip(sents, alone, without):
            print(f"    {a:.3f} / {w:.3f}  {sent}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifiers", nargs="+", default=["none", "static-default", "default"])
    ap.add_argument("--n-ai-docs", type=int, default=3000)
    ap.add_argument("--n-background", type=int, default=800)
    ap.add_argument("--background-chars", type=int, default=800)
    ap.add_argument("--seed", type=int, default=7, help="world seed (the grids use 0, bench_classifier_quality 1)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 200, 1000])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--recall", type=float, nargs="+", default=[0.95, 0.99], help="threshold_for_recall targets")
    ap.add_argument("--precision", type=float, nargs="+", default=[0.99], help="threshold_for_precision targets")
    ap.add_argument("--oracle", type=float, default=0.95,
                    help="also the threshold_for_recall at this target on every document's label: the best any "
                         "threshold does (an upper bound, not a held-out figure)")
    ap.add_argument("--target-aligned", type=float, default=0.05, help="issue 13: aligned stories tagged at most")
    ap.add_argument("--target-caught", type=float, default=0.95, help="issue 13: misaligned stories caught at least")
    ap.add_argument("--gate", action="store_true", help="prefilter.gate: only documents with a lexicon hit "
                                                        "reach the classifier")
    ap.add_argument("--granularity", default="document", choices=["document", "paragraph", "sentence"],
                    help="segments scored (document score = max over them); the grids tag by document, and by "
                         "sentence for segment-level conditioning")
    ap.add_argument("--union", nargs="*", default=[], metavar="CLASSIFIER",
                    help="also: bad iff the lexicon tags it at its own threshold or the classifier scores above the "
                         "row's threshold (both from this run's stored scores; explored after seeing seed 7)")
    ap.add_argument("--work", type=Path, default=None, help="keep the world and tagged outputs here (reused)")
    ap.add_argument("--explain", type=int, default=0, metavar="K",
                    help="which aligned stories score high, and the K highest with per-sentence scores")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_world_tagging-"))
    work.mkdir(parents=True, exist_ok=True)
    world_dir = make_world(work, args)
    meta = json.loads((world_dir / "world.json").read_text())
    print(f"world seed {args.seed}: {meta['counts']} ({meta['background']} background); {args.granularity} granularity, "
          f"prefilter gate {'on' if args.gate else 'off'}; calibration draws: {args.draws}, sample disjoint from "
          f"the documents scored; work dir {work}\n")
    head = ["classifier", "threshold from", "threshold", "aligned tagged bad", "misaligned caught",
            "background tagged", "AUROC (all / stories)", "docs/s",
            f"meets ≤ {args.target_aligned:.0%} / ≥ {args.target_caught:.0%}"]

    def meets(r: dict) -> bool:
        return r["aligned_tagged"] <= args.target_aligned and r["misaligned_caught"] >= args.target_caught

    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")

    def rows(name: str, scores: np.ndarray, kind: np.ndarray, shipped: float, speed: str) -> None:
        from condpt.calibrate import threshold_for_recall

        best = threshold_for_recall(scores, (kind == 0).astype(int), args.oracle)
        for label, t in ((f"shipped (all {len(scores)} docs)", shipped),
                         (f"oracle: recall ≥ {args.oracle} on all {len(scores)} (no held-out)", best)):
            r = rates(scores, kind, t)
            print(f"| {name} | {label} | {t:.3f} | {100 * r['aligned_tagged']:.1f}% | "
                  f"{100 * r['misaligned_caught']:.1f}% | {100 * r['background_tagged']:.1f}% | "
                  f"{r['auroc']:.3f} / {r['auroc_stories']:.3f} | {speed} | {'yes' if meets(r) else 'no'} |", flush=True)
        rules = [("recall", t) for t in args.recall] + [("precision", t) for t in args.precision]
        for rule, target in rules:
            for n in args.sizes:
                runs = calibrated(scores, kind, n, args.draws, rule, target)
                failed = sum(r is None for r in runs)
                runs = [r for r in runs if r is not None]
                if not runs:
                    print(f"| {name} | {rule} ≥ {target} on {n} labelled | no sample reaches it | | | | | | "
                          f"0 of {failed} draws |")
                    continue
                col = {k: [x[k] for x in runs] for k in runs[0]}
                print(f"| {name} | {rule} ≥ {target} on {n} labelled | {spread(col['threshold'], pct=False)} | "
                      f"{spread(col['aligned_tagged'])} | {spread(col['misaligned_caught'])} | "
                      f"{spread(col['background_tagged'])} | {np.mean(col['auroc']):.3f} / "
                      f"{np.mean(col['auroc_stories']):.3f} | {speed} | {sum(map(meets, runs))} of {len(runs) + failed} draws"
                      f"{f' ({failed}: no threshold reaches it)' if failed else ''} |",
                      flush=True)

    lexicon = None
    for spec in args.classifiers + [c for c in args.union if c not in args.classifiers]:
        tagged, timing = tag(world_dir, work, spec, args.gate, args.granularity)
        ids, scores, kind, shipped = world_scores(world_dir, tagged)
        speed = f"{timing['documents'] / timing['seconds']:.1f}"
        if spec in args.classifiers:
            rows(spec, scores, kind, shipped, speed)
        if args.explain and spec != "none" and spec in args.classifiers:
            explain(world_dir, spec, ids, scores, kind, args.explain,
                    threshold_for_recall_on_sample(scores, kind, max(args.sizes), max(args.recall)))
            print()
        if spec not in args.union:
            continue
        if lexicon is None:
            lex_dir, _ = tag(world_dir, work, "none", args.gate, args.granularity)
            lex_ids, lex_scores, _, lex_threshold = world_scores(world_dir, lex_dir)
            lexicon = dict(zip(lex_ids, lex_scores.tolist()))
        # A document the lexicon tags at its own threshold is bad whatever the classifier says (score 1); the
        # others keep the classifier's score, which the threshold (shipped, oracle, calibrated) then cuts.
        union = np.where(np.array([lexicon[i] for i in ids]) >= lex_threshold, 1.0, scores)
        rows(f"lexicon ≥ {lex_threshold:g} or {spec}", union, kind, shipped, speed)

if __name__ == "__main__":
    main()
