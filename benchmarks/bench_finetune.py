"""Issue 13: fine-tuning MiniLM on the shipped passages, measured out of source as the frozen default is.

The default is a logistic head on *frozen* all-MiniLM-L6-v2 window embeddings; on the prophecy world it tags
most aligned AI stories bad because the frozen embedding reads topic ("an AI and access"), not direction
(declining vs seizing). Here the encoder itself learns from the shipped passages
(``condpt/tagging/data/classifier_*.jsonl``, the only training data; dev and train2 are never trained on and
never pick a hyper-parameter), deterministically on CPU (fixed seed):

- ``setfit-pairs``: SetFit's recipe with sentence-transformers' own trainer and loss, no ``setfit`` package
  (its extra is the pair sampler below and a logistic head, which ``EmbeddingScorer`` already is): each passage
  is paired with ``--pairs`` same-label and as many other-label passages (seeded), ``CosineSimilarityLoss``
  pulls same-label pairs to cosine 1 and pushes the others to 0; then the default's head, windows, max pooling
  and AI-referent penalty (``EmbeddingScorer.fit(encoder=<fine-tuned dir>, referent=True)``).
- ``setfit-triplet``: the same with ``BatchAllTripletLoss`` on (passage, label) batches grouped by label.
- ``seqcls``: ``AutoModelForSequenceClassification`` on MiniLM (a new 2-way head), cross-entropy; scored as
  the default scores: 64-word windows, window log-odds minus the learned referent penalty for a window with no
  AI referent within one window, max over windows.

Each variant's threshold is the best-F1 cut of grouped 5-fold CV over the registers (a fine-tune per fold,
as ``cross_val_scores`` does for the default); each method's one setting (``VARIANTS``) was fixed before
measuring (a fold's fine-tune took 4-9 min on the loaded box, too slow for a grid). Then one fine-tune on
all passages is evaluated with ``bench_classifier_quality``'s protocol: dev and train2 AUROC, F1 and the share
at or above threshold per category, ``--gutenberg N`` neutral 5 KB documents, and ``--world N`` prophecy-world
AI stories (misaligned caught, aligned tagged). Cost: CPU-seconds per 5 KB Gutenberg document (documents
outside the evaluated ones, empty caches), the frozen default and each fine-tuned scorer in the same run.

    nice -n 5 timeout 95m .venv/bin/python benchmarks/bench_finetune.py [--variants frozen setfit-triplet seqcls]
        [--gutenberg 150] [--world 400] [--cost-docs 4] [--threads 1] [--cv-only]

Result (docs/benchmarks.md, 1 Dec 2026): not shipped. The triplet-tuned encoder gains train2 AUROC and fiction and
tags fewer aligned world stories, but flags more hard negatives and Gutenberg; the sequence classifier is
overconfident out of source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_classifier_quality import CATEGORIES, held_out_cells, read_set, world_stories

SEED = 0
# name -> (method, settings). Learning rates are the usual ones for MiniLM-sized encoders (SetFit's 2e-5
# body rate; 5e-5 for a fresh classification head); epochs/pairs are what the grouped CV compares.
VARIANTS: dict[str, tuple[str, dict]] = {
    "frozen": ("frozen", {}),
    "setfit-pairs": ("pairs", {"pairs": 2, "epochs": 1, "lr": 2e-5}),
    "setfit-triplet": ("triplet", {"epochs": 2, "lr": 2e-5}),
    "seqcls": ("seqcls", {"epochs": 3, "lr": 5e-5}),
}


def _args(out: str, epochs: int, lr: float, **more):
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=16, learning_rate=lr,
        warmup_steps=0.1, seed=SEED, data_seed=SEED, save_strategy="no", report_to="none",
        logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **more)


def setfit_pairs(texts: list[str], labels: list[int], pairs: int) -> dict[str, list]:
    """SetFit's contrastive pairs: per passage, `pairs` same-label and `pairs` other-label partners (seeded)."""
    rng = np.random.default_rng(SEED)
    y = np.asarray(labels)
    by = {c: np.flatnonzero(y == c) for c in (0, 1)}
    a, b, s = [], [], []
    for i, c in enumerate(y):
        same = by[c][by[c] != i]
        for j, target in [(j, 1.0) for j in rng.choice(same, pairs)] + [(j, 0.0) for j in rng.choice(by[1 - c], pairs)]:
            a.append(texts[i])
            b.append(texts[j])
            s.append(target)
    return {"sentence1": a, "sentence2": b, "score": s}


def finetune_encoder(texts: list[str], labels: list[int], out: Path, method: str, settings: dict) -> str:
    """Fine-tune MiniLM as a sentence encoder (SetFit's first stage); returns the saved model's directory."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import set_seed

    from condpt.tagging.classifiers.embedding import DEFAULT_ENCODER, encoder_path

    set_seed(SEED)
    model = SentenceTransformer(encoder_path(DEFAULT_ENCODER), device="cpu", local_files_only=True)
    if method == "pairs":
        ds = Dataset.from_dict(setfit_pairs(texts, labels, settings["pairs"]))
        loss, more = losses.CosineSimilarityLoss(model), {}
    else:
        ds = Dataset.from_dict({"sentence": texts, "label": labels})
        loss, more = losses.BatchAllTripletLoss(model), {"batch_sampler": BatchSamplers.GROUP_BY_LABEL}
    args = _args(str(out / "trainer"), settings["epochs"], settings["lr"], **more)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss).train()
    model.save(str(out / "encoder"))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    del model
    torch.set_grad_enabled(True)
    return str(out / "encoder")


class SeqClsScorer:
    """A fine-tuned MiniLM sequence classifier scored as the default: windows, referent penalty, max."""

    def __init__(self, model, tok, penalty: float) -> None:
        self.model, self.tok, self.penalty = model.eval(), tok, penalty

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], out: Path, settings: dict) -> SeqClsScorer:
        from datasets import Dataset
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
            set_seed,
        )

        from condpt.tagging.classifiers.embedding import DEFAULT_ENCODER, encoder_path, referent_penalty

        set_seed(SEED)
        path = encoder_path(DEFAULT_ENCODER)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}, local_files_only=True)
        ds = Dataset.from_dict({"text": texts, "label": labels}).map(
            lambda b: tok(b["text"], truncation=True, max_length=256), batched=True, remove_columns=["text"])
        args = TrainingArguments(
            output_dir=str(out / "trainer"), num_train_epochs=settings["epochs"], per_device_train_batch_size=16,
            learning_rate=settings["lr"], warmup_steps=0.1, weight_decay=0.01, seed=SEED, data_seed=SEED,
            save_strategy="no", report_to="none", logging_strategy="no", use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0)
        Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok)).train()
        shutil.rmtree(out / "trainer", ignore_errors=True)
        return cls(model, tok, referent_penalty(texts, labels))

    def score(self, texts: list[str]) -> np.ndarray:
        import torch

        from condpt.tagging.classifiers.embedding import windows
        from condpt.tagging.classifiers.referent import near_referent

        wins = [windows(t) for t in texts]
        flat = [w for ws in wins for w in ws]
        order = np.argsort([len(w) for w in flat])  # length-sorted batches pad little
        z = np.empty(len(flat), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(flat), 64):
                idx = order[s:s + 64]
                enc = self.tok([flat[i] for i in idx], padding=True, truncation=True, max_length=256,
                               return_tensors="pt")
                logits = self.model(**enc).logits.float()
                z[idx] = (logits[:, 1] - logits[:, 0]).numpy()
        out, pos = np.empty(len(texts), dtype=np.float32), 0
        for i, ws in enumerate(wins):
            zi = z[pos:pos + len(ws)] - self.penalty * ~near_referent(ws, 1)
            out[i] = float((1.0 / (1.0 + np.exp(-zi))).max())
            pos += len(ws)
        return out


def fit(method: str, settings: dict, texts: list[str], labels: list[int], work: Path):
    from condpt.tagging.classifiers.embedding import EmbeddingScorer

    if method == "frozen":
        return EmbeddingScorer.fit(texts, labels, referent=True)
    if method == "seqcls":
        return SeqClsScorer.fit(texts, labels, work, settings)
    return EmbeddingScorer.fit(texts, labels, encoder=finetune_encoder(texts, labels, work, method, settings),
                               referent=True)


def grouped_cv(method: str, settings: dict, ship, work: Path) -> np.ndarray:
    """Out-of-fold scores over the shipped passages, whole registers held out (GroupKFold(5), as the default)."""
    from sklearn.model_selection import GroupKFold

    y = np.asarray(ship.labels)
    oof = np.zeros(len(y), dtype=np.float32)
    for k, (tr, te) in enumerate(GroupKFold(n_splits=5).split(ship.texts, y, ship.groups)):
        model = fit(method, settings, [ship.texts[i] for i in tr], y[tr].tolist(), work / f"fold{k}")
        oof[te] = model.score([ship.texts[i] for i in te])
        print(f"  {work.name}: fold {k} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
        shutil.rmtree(work / f"fold{k}", ignore_errors=True)
    return oof


def cost(model, docs: list[str]) -> float:
    """CPU-seconds per document (all threads), encoder caches cold for these documents."""
    t0 = time.process_time()
    model.score(docs)
    return (time.process_time() - t0) / len(docs)


def main() -> None:
    import torch
    from _gutenberg import gutenberg_texts

    from condpt.calibrate import metrics_at
    from condpt.tagging.classifiers.default import shipped_data
    from condpt.tagging.classifiers.train import best_f1_threshold

    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["frozen", "setfit-triplet", "seqcls"], choices=list(VARIANTS))
    ap.add_argument("--gutenberg", type=int, default=150, help="neutral long documents for the FP rate")
    ap.add_argument("--world", type=int, default=400, help="prophecy-world AI stories")
    ap.add_argument("--cost-docs", type=int, default=4, help="5 KB Gutenberg documents timed per scorer")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 oversubscribe a busy machine)")
    ap.add_argument("--cv-only", action="store_true", help="grouped CV on the shipped passages only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    ship = shipped_data()
    sets = {"dev": read_set("misalignment-dev"), "train2": read_set("misalignment-train2")}
    gut_all = gutenberg_texts()
    step = max(1, len(gut_all) // max(args.gutenberg, 1))
    gut = gut_all[::step][: args.gutenberg]  # bench_classifier_quality's sample
    costdocs = gut_all[step // 2::step][: args.cost_docs]  # other documents: nothing cached for them
    world = world_stories(args.world)
    print(f"shipped: {len(ship.texts)} passages ({sum(ship.labels)} positive, {len(set(ship.groups))} registers); "
          + "; ".join(f"{k}: {len(d.labels)} ({sum(d.labels)} positive)" for k, d in sets.items())
          + f"; Gutenberg: {len(gut)} docs; world: {len(world[0])} AI stories ({int(world[1].sum())} misaligned); "
          f"torch threads {args.threads}\n", flush=True)
    head = ["scorer", "CV AUROC", "CV F1", "thr"]
    if not args.cv_only:
        for k in sets:
            head += [f"{k} AUROC", f"{k} F1"] + [f"{k} {c}" for c in CATEGORIES]
        head += ["Gutenberg ≥ thr", "world misaligned caught", "world aligned tagged", "world AUROC",
                 "CPU-s / 5 KB doc", "fit CPU-s", "CV wall s"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    try:
        for name in args.variants:
            method, settings = VARIANTS[name]
            work = root / name
            t0 = time.perf_counter()
            oof = grouped_cv(method, settings, ship, work)
            thr = best_f1_threshold(ship.labels, oof)
            m = metrics_at(oof, ship.labels, thr)
            row = [name, f"{m['auroc']:.3f}", f"{m['f1']:.3f}", f"{thr:.2f}"]
            cv_wall = time.perf_counter() - t0
            if not args.cv_only:
                c0 = time.process_time()
                model = fit(method, settings, ship.texts, ship.labels, work / "all")
                fit_cpu = time.process_time() - c0
                per_doc = cost(model, costdocs)
                row += held_out_cells(model, sets, gut, world, thr)
                row += [f"{per_doc:.2f}", f"{fit_cpu:.0f}", f"{cv_wall:.0f}"]
                del model
            print("| " + " | ".join(row) + " |", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
