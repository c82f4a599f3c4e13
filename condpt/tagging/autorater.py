"""LLM autorater for the cascade's uncertain band: a local causal LM or an OpenAI-compatible endpoint.

Same interface as a scorer: ``score(texts) -> float32 [0, 1]``. Verdicts are cached on disk (SQLite, safe
across ``num_proc`` workers) keyed by backend + model + prompt + text, so a re-run or a re-threshold never
pays for the same question twice.

- ``backend: local``: P(" Yes") / (P(" Yes") + P(" No")) from the next-token logits after the prompt,
  batched with left padding.
- ``backend: http``: ``POST {base_url}/chat/completions`` (vLLM, llama.cpp server, …) with temperature 0;
  the reply's first word (yes/no) or a number in [0, 1] is the verdict. Requests run ``concurrency`` at a
  time, each with a timeout; 429, 5xx, timeouts and connection errors are retried with exponential backoff,
  other errors fail at once with the status and body.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from condpt.tagging.config import DEFAULT_PROMPT, AutoraterConfig

__all__ = ["DEFAULT_PROMPT", "Autorater", "AutoraterConfig", "AutoraterError", "VerdictCache", "parse_verdict"]


class AutoraterError(RuntimeError):
    """The rater could not produce a verdict (endpoint down after retries, bad response, bad config)."""


class VerdictCache:
    """text-hash → verdict in one SQLite file; WAL mode so parallel workers can share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS verdict (key TEXT PRIMARY KEY, score REAL NOT NULL)")
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, score FROM verdict WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(self.db.execute(q, chunk).fetchall())
        return out

    def put_many(self, items: dict[str, float]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO verdict VALUES (?, ?)", list(items.items()))
        self.db.commit()


def parse_verdict(reply: str) -> float | None:
    """'Yes…' → 1, 'No…' → 0, a number in [0, 1] → itself; anything else → None."""
    s = reply.strip().strip("*\"'`").lower()
    if re.match(r"^(yes|y)\b", s):
        return 1.0
    if re.match(r"^(no|n)\b", s):
        return 0.0
    m = re.match(r"^(0(\.\d+)?|1(\.0+)?)\b", s)
    return float(m.group(1)) if m else None


class Autorater:
    """Scores texts with an LLM, consulting and filling the verdict cache."""

    def __init__(self, cfg: AutoraterConfig) -> None:
        from condpt.cache import cache_dir

        self.cfg = cfg
        self.name = f"autorater:{cfg.backend}:{cfg.model}"
        self.threshold = 0.5
        self.requests = 0  # HTTP requests sent, retries included (observable in tests and reports)
        self.unparsed = 0
        self.cache = VerdictCache((cfg.cache_dir or cache_dir() / "autorater") / "verdicts.sqlite")
        self._salt = hashlib.sha256("\0".join(
            [cfg.backend, cfg.model, cfg.system or "", cfg.prompt, str(cfg.max_chars)]).encode()).hexdigest()
        self._lm = None

    def key(self, text: str) -> str:
        return hashlib.sha256((self._salt + "\0" + text).encode("utf-8", "surrogatepass")).hexdigest()

    def prompt(self, text: str) -> str:
        return self.cfg.prompt.replace("{text}", text[: self.cfg.max_chars])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        known = self.cache.get_many(sorted(set(keys)))
        todo: dict[str, int] = {}  # each distinct uncached text asked once
        for i, k in enumerate(keys):
            if k not in known and k not in todo:
                todo[k] = i
        if todo:
            batch = [texts[i] for i in todo.values()]
            fresh = self._local(batch) if self.cfg.backend == "local" else self._http(batch)
            new = {k: v for k, v in zip(todo, fresh) if v is not None}  # unparsed: 0.5, asked again later
            self.cache.put_many(new)
            known.update(new)
        return np.array([known.get(k, 0.5) for k in keys], dtype=np.float32)

    # -- local causal LM ---------------------------------------------------------------------------
    def _load_local(self):
        if self._lm is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.cfg.model, local_files_only=True)
            tok.padding_side = "left"  # the next-token logits must sit at the last position of every row
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            lm = AutoModelForCausalLM.from_pretrained(self.cfg.model, local_files_only=True).eval()
            yes, no = (tok.encode(w, add_special_tokens=False) for w in (" Yes", " No"))
            if not yes or not no or yes[0] == no[0]:
                raise AutoraterError(f"{self.cfg.model}: tokenizer cannot tell ' Yes' from ' No'")
            self._lm = (torch, tok, lm, yes[0], no[0])
        return self._lm

    def _local(self, texts: list[str]) -> list[float]:
        torch, tok, lm, yes, no = self._load_local()
        out: list[float] = []
        for i in range(0, len(texts), self.cfg.batch_size):
            prompts = [self.prompt(t) for t in texts[i:i + self.cfg.batch_size]]
            enc = tok(prompts, return_tensors="pt", padding=True)
            # Left padding shifts positions; count them from each row's first real token so a verdict
            # does not depend on what else is in the batch (absolute-position models such as GPT-2).
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = lm(**enc, position_ids=positions).logits[:, -1, :].float()
            pair = torch.stack([logits[:, yes], logits[:, no]], dim=-1).softmax(-1)[:, 0]
            out.extend(pair.tolist())
        return out

    # -- OpenAI-compatible HTTP ----------------------------------------------------------------------
    def _http(self, texts: list[str]) -> list[float | None]:
        import httpx

        headers = {}
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise AutoraterError(f"autorater.api_key_env: environment variable {self.cfg.api_key_env} "
                                     "is not set")
            headers["Authorization"] = f"Bearer {key}"
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        with (httpx.Client(timeout=self.cfg.timeout_s, headers=headers) as client,
              ThreadPoolExecutor(self.cfg.concurrency) as pool):
            return list(pool.map(lambda t: self._ask(client, url, t), texts))

    def _ask(self, client, url: str, text: str) -> float | None:
        import httpx

        messages = ([{"role": "system", "content": self.cfg.system}] if self.cfg.system else [])
        messages.append({"role": "user", "content": self.prompt(text)})
        body = {"model": self.cfg.model, "messages": messages, "temperature": 0, "max_tokens": 4}
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            self.requests += 1
            try:
                resp = client.post(url, json=body)
            except httpx.TransportError as e:  # timeouts, refused connections, resets
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise AutoraterError(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                reply = resp.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                raise AutoraterError(f"{url}: not an OpenAI chat/completions response: "
                                     f"{resp.text[:300]}") from None
            verdict = parse_verdict(reply)
            if verdict is None:
                self.unparsed += 1
            return verdict
        raise AutoraterError(f"{url}: no verdict after {self.cfg.max_retries + 1} attempts ({last})")
