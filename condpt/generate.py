"""Generation conditioned on a control tag, over Hugging Face `generate`.

The prompt is laid out as training laid out a document (`condpt.layout.prompt_ids`): the document boundary
(EOS, as packing puts between documents), then the condition's tag id (read from the manifest, inserted by
id), then the optional *trusted* system text (where the self token `𐀤` becomes its id) and a newline, then
the *untrusted* prompt (no special id can come out of it). Every tag id is banned from the output by a
logits processor (as in PHF), and so are embedding rows past the tokenizer (vocabulary padding); any tag
string is stripped from the decoded text. The self token stays allowed: it is vocabulary, not a condition.

The condition `guided` (or `guided:γ`) prompts under `<|good|>` and guides away from `<|bad|>`
(`condpt.guidance`) with transformers' own classifier-free guidance (`guidance_scale` and
`negative_prompt_ids`: the same prompt laid out under the bad tag).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from condpt.guidance import GUIDED, can_guide, parse_guided
from condpt.layout import conditions, context_length, load_run, prompt_ids
from condpt.terminal import printable, repr_char
from tokenizer_ext import MANIFEST_NAME, ControlTokenError, Manifest

MIN_TEMPERATURE = 1e-4


class BanTokens(LogitsProcessor):
    """Sets the logits of the given ids to -inf at every step, so sampling, greedy and beam search can never
    pick them, however large the model made them."""

    def __init__(self, banned_ids: Sequence[int]):
        self.banned = torch.tensor(sorted(set(banned_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.banned.numel():
            scores = scores.clone()
            scores[:, self.banned.to(scores.device)] = float("-inf")
        return scores


def banned_ids(manifest: Manifest, tokenizer, vocab_size: int) -> list[int]:
    """Every control tag id, plus embedding rows the tokenizer has no token for."""
    return sorted({e.id for e in manifest.tags.values()} | set(range(len(tokenizer), vocab_size)))


def strip_tags(text: str, manifest: Manifest) -> str:
    """Remove every control tag string from decoded text."""
    stripped = None
    while stripped != text:  # removing one can join its neighbours into another: '<|go' '<|bad|>' 'od|>'
        stripped = text
        for entry in manifest.tags.values():
            text = text.replace(entry.string, "")
    return text


def _escape_char(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def literal(text: str, strings: Sequence[str]) -> str:
    """`text` as a single-quoted Python string literal (what `repr` escapes, escaped) in which none of
    `strings` appears verbatim: the first character of each occurrence is written as an escape (`<|good|>`
    becomes `\\x3c|good|>`). Evaluating the literal gives `text` back; a reader cannot take a tag typed as
    text for a tag that was set."""
    starts = {i for s in strings if s for i in range(len(text)) if text.startswith(s, i)}
    out = "'" + "".join(_escape_char(c) if i in starts else repr_char(c) for i, c in enumerate(text)) + "'"
    for s in strings:  # only a string made of quotes, backslashes or escape letters could form here
        if s and s in out:
            out = out.replace(s, "".join(map(_escape_char, s)))
    return out


def echo(prompt: str, samples: Sequence[str], manifest: Manifest, *, condition: str,
         system: str | None = None) -> str:
    """What `condpt generate` prints: the condition that was set (by id), the system text (trusted) and the
    prompt (untrusted) as string literals with every control string escaped (`literal`; the system text
    keeps the self token, which it sets), then each sample on its own lines under a `--- sample i of n ---`
    marker. Prompt and sample are never printed as one string: a tag string cannot form across the boundary
    (`<|go` + `od|>`), and a sample holds none (`strip_tags`)."""
    tags = [e.string for e in manifest.tags.values()]
    lines = [f"condition: {condition}"]
    if system:
        lines.append(f"system (trusted): {literal(system, tags)}")
    lines.append(f"prompt (untrusted): {literal(prompt, [*tags, manifest.self_token.string])}")
    for i, sample in enumerate(samples, 1):
        lines += [f"--- sample {i} of {len(samples)} ---", printable(sample)]
    return "\n".join(lines)


def _available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device` (Linux MemAvailable for the CPU), or None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def generation_bytes(config, *, n: int, length: int, vocab: int, guided: bool) -> int:
    """A low estimate of what `generate` holds for `n` sequences of `length` positions: per sequence, one step's
    float32 scores three times over (logits, processed scores, probabilities) and a float32 key/value cache of
    every layer; twice that under guidance (its negative rows)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None) or 0
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None) or 0
    return n * (3 * vocab + 2 * layers * length * hidden) * 4 * (2 if guided else 1)


@contextmanager
def _out_of_memory(what: str):
    """An allocation failure (CPU or GPU) as a ValueError naming what was asked for, not a traceback."""
    try:
        yield
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise ValueError(f"{what}: out of memory ({type(e).__name__}); ask for fewer samples or tokens") from None
    except RuntimeError as e:
        if "allocate" not in str(e):  # torch's CPU allocator raises a plain RuntimeError
            raise
        raise ValueError(f"{what}: out of memory ({str(e).splitlines()[0][:200]}); ask for fewer samples or "
                         "tokens") from None


@dataclass
class Generator:
    """A causal LM with its tokenizer and control-token manifest, ready for conditioned generation."""

    model: object
    tokenizer: object
    manifest: Manifest

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str | None = None) -> Generator:
        """Load a run directory (`condpt.layout.load_run`); it must hold the control-token manifest."""
        run = load_run(model_dir, device=device)
        if run.manifest is None:
            raise ControlTokenError(f"{Path(model_dir) / MANIFEST_NAME}: no control-token manifest; "
                                    "run `condpt add-tokens` first")
        return cls(run.model, run.tokenizer, run.manifest)

    @property
    def conditions(self) -> list[str]:
        """The manifest's tag roles, `none`, and `guided` where both of its tags exist."""
        return [*conditions(self.manifest), *([GUIDED] if can_guide(self.manifest) else [])]

    def prompt_ids(self, prompt: str, *, condition: str = "good", system: str | None = None) -> list[int]:
        """[EOS] + [tag id] + trusted(system + newline) + untrusted(prompt), as `condpt.layout.prompt_ids`
        (a guided condition: its positive tag)."""
        g = parse_guided(condition)
        role = condition if g is None else g.positive
        return prompt_ids(self.tokenizer, self.manifest, role, system=system, text=prompt)

    def generate_ids(self, prompt: str, *, condition: str = "good", system: str | None = None, n: int = 1,
                     max_new_tokens: int = 64, seed: int | None = None, do_sample: bool = True,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
                     ) -> list[list[int]]:
        """`n` continuations (new token ids only, stopped at EOS) of the conditioned prompt."""
        if n < 1 or max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be >= 1")
        if not 0.0 <= temperature < math.inf:  # inf or nan: multinomial fails on the probabilities
            raise ValueError(f"temperature {temperature}: must be a finite number >= 0")
        if do_sample and temperature < MIN_TEMPERATURE:  # logits / 1e-45 are inf: multinomial fails
            raise ValueError(f"temperature {temperature}: sampling needs at least {MIN_TEMPERATURE} (a lower one "
                             "samples as greedy does and can overflow the logits); use 0 for greedy")
        if seed is not None and not 0 <= seed <= 2**32 - 1:  # configtypes.Seed's range
            raise ValueError(f"seed {seed}: must be in [0, {2**32 - 1}]")
        ids = self.prompt_ids(prompt, condition=condition, system=system)
        positions = context_length(self.model.config)
        if positions is not None and len(ids) + max_new_tokens > positions:
            raise ValueError(f"the prompt ({len(ids)} tokens with its condition) and max_new_tokens "
                             f"({max_new_tokens}) exceed the model's {positions} positions")
        device = next(self.model.parameters()).device
        vocab = self.model.get_output_embeddings().weight.shape[0]
        # A request far past memory is refused here: on CPU, allocating it ends in the kernel's OOM killer (this
        # process, or whichever one it picks), not in a MemoryError `_out_of_memory` could name.
        need = generation_bytes(self.model.config, n=n, length=len(ids) + max_new_tokens, vocab=vocab,
                                guided=parse_guided(condition) is not None)
        if (free := _available_memory(device)) is not None and need > free:
            raise ValueError(f"{n} samples of up to {max_new_tokens} new tokens need about {need / 2**30:.1f} GiB, "
                             f"more than the {free / 2**30:.1f} GiB free on {device.type}; ask for fewer samples "
                             "or tokens")
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        guidance = {}
        if (g := parse_guided(condition)) is not None:
            neg = prompt_ids(self.tokenizer, self.manifest, g.negative, system=system, text=prompt)
            # One negative row per returned sequence: the guidance processor keeps its own cache per row.
            guidance = {"guidance_scale": g.scale,
                        "negative_prompt_ids": torch.tensor([neg] * n, dtype=torch.long, device=device)}
        if seed is not None:
            torch.manual_seed(seed)
        sampling = {"do_sample": do_sample}
        if do_sample:
            sampling["temperature"] = temperature
            if top_k:
                sampling["top_k"] = top_k
            if top_p is not None:
                sampling["top_p"] = top_p
        eos = self.tokenizer.eos_token_id
        with torch.no_grad(), _out_of_memory(f"{n} samples of up to {max_new_tokens} new tokens"):
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                num_return_sequences=n, logits_processor=LogitsProcessorList(
                    [BanTokens(banned_ids(self.manifest, self.tokenizer, vocab))]),
                suppress_tokens=None,  # BanTokens decides here; an export's config also bans 𐀤 for plain HF users
                eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id
                is not None else eos, **sampling, **guidance,
            )
        result = []
        for row in out[:, len(ids):].tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            result.append(row)
        return result

    def decode(self, ids: Sequence[int]) -> str:
        tag_ids = {e.id for e in self.manifest.tags.values()}
        text = self.tokenizer.decode([i for i in ids if i not in tag_ids], skip_special_tokens=False)
        return strip_tags(text, self.manifest)

    def echo(self, prompt: str, samples: Sequence[str], *, condition: str = "good", system: str | None = None) -> str:
        """`samples` of `prompt` as `condpt generate` prints them (`echo`)."""
        return echo(prompt, samples, self.manifest, condition=condition, system=system)

    def generate(self, prompt: str, **kwargs) -> list[str]:
        """`n` decoded continuations; see `generate_ids` for the arguments."""
        return [self.decode(ids) for ids in self.generate_ids(prompt, **kwargs)]


def generate(model_dir: str | Path, prompt: str, **kwargs) -> list[str]:
    """One-call form: load `model_dir` and return `n` continuations of `prompt` (default condition `good`)."""
    return Generator.load(model_dir).generate(prompt, **kwargs)
