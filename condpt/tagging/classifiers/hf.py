"""Any local Hugging Face sequence-classification checkpoint as a scorer.

The positive class is read from ``config.id2label`` (a label named ``1``, ``LABEL_1``, ``misaligned``,
``bad``, ``positive`` or ``yes``; else index 1); a one-logit head is read as a sigmoid. Long documents are
scored per window of sentences and max-pooled, like the embedding scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

POSITIVE_NAMES = ("1", "label_1", "misaligned", "bad", "positive", "yes", "true")


def positive_index(id2label: dict) -> int:
    for idx, name in sorted((int(k), str(v).strip().lower()) for k, v in id2label.items()):
        if name in POSITIVE_NAMES:
            return idx
    return 1


class HFScorer:
    """P(positive class) from a local `AutoModelForSequenceClassification` checkpoint, on CPU by default."""

    kind = "hf"

    def __init__(self, path: str | Path, batch_size: int = 16, max_length: int = 512,
                 window_words: int = 200, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        self.name = f"hf:{self.path.name}"
        self.threshold = 0.5
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path, local_files_only=True)
        self.model.to(device).eval()
        if self.tokenizer.pad_token is None:  # decoder-only checkpoints often ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.torch = device, torch
        self.batch_size, self.max_length, self.window_words = batch_size, max_length, window_words
        n = self.model.config.num_labels
        self.pos = None if n == 1 else positive_index(self.model.config.id2label or {})

    def _probs(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with self.torch.inference_mode():
                logits = self.model(**enc).logits.float()
            p = self.torch.sigmoid(logits[:, 0]) if self.pos is None else logits.softmax(-1)[:, self.pos]
            out.append(p.cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        from condpt.tagging.classifiers.embedding import windows

        wins = [windows(t, self.window_words) for t in texts]
        probs = self._probs([w for ws in wins for w in ws])
        out, pos = np.empty(len(texts), dtype=np.float32), 0
        for i, ws in enumerate(wins):
            out[i] = probs[pos:pos + len(ws)].max()
            pos += len(ws)
        return out
