"""Guidance away from the bad tag: deploy under `<|good|>` and push away from `<|bad|>`.

This is classifier-free guidance (Ho & Salimans 2022; for language models Sanchez et al. 2023, "Stay on
topic with classifier-free guidance") with the bad tag's prompt as the negative prompt. Per token,

    log p_guided(x) = log_softmax( log p(x | bad) + γ · (log p(x | good) − log p(x | bad)) )

γ = 1 is plain conditioning on `<|good|>`; γ > 1 moves away from what `<|bad|>` makes likely.

Why it matters for condpt: with one tagging threshold, every bad document the tagger misses trains under
`<|good|>`, so p(x | good) learns part of the behaviour the tag was meant to keep out (the robustness
grid: conditioning goes from 0.044 at full coverage to 0.50 with 10% of bad documents missed). But the
documents the tagger *does* catch all train under `<|bad|>`, so the ratio p(x | good) / p(x | bad) — by
Bayes ∝ p(good | x) / p(bad | x), the model's own estimate of how a tagger would label x — stays low for the
behaviour as long as most of it is caught. Guidance scales by that ratio, so it degrades with the miss rate
far more slowly than the good-conditional alone. The cost: two forward passes per generated token, and
text that neither tag favours is unaffected only where the two conditionals agree (ordinary text: the
held-out loss under guidance is reported beside the plain one).

A condition is spelled `guided` (γ = `DEFAULT_SCALE`) or `guided:γ`, 0 <= γ <= `MAX_SCALE`. `DEFAULT_SCALE` is 1.5, the value
Sanchez et al. found best across their language tasks; it was fixed before condpt measured anything with
guidance, and docs/results.md reports other scales only as a sensitivity check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch

GUIDED = "guided"
DEFAULT_SCALE = 1.5
# Past a few tens guidance already samples the argmax of the log-ratio; near 1e37 the scaled float32 logits
# overflow and sampling fails. A larger scale is a typo, refused when the condition is parsed.
MAX_SCALE = 1000.0
POSITIVE, NEGATIVE = "good", "bad"  # the tag roles guidance moves towards and away from


class Guidance(NamedTuple):
    """A guided condition: prompt under `positive`, push away from `negative` with scale `scale`."""

    positive: str
    negative: str
    scale: float


def can_guide(manifest) -> bool:
    """Whether a model with this control-token manifest (None: none) has both tags guidance needs."""
    tags = manifest.tags if manifest is not None else {}
    return POSITIVE in tags and NEGATIVE in tags


def parse_guided(condition: str) -> Guidance | None:
    """`guided` → Guidance(good, bad, 1.5); `guided:2` → scale 2; any other condition → None."""
    name, sep, value = condition.partition(":")
    if name != GUIDED:
        return None
    if not sep:
        return Guidance(POSITIVE, NEGATIVE, DEFAULT_SCALE)
    try:
        scale = float(value)
    except ValueError:
        raise ValueError(f"condition {condition!r}: the guidance scale after ':' must be a number") from None
    if not 0 <= scale <= MAX_SCALE:  # also nan and inf
        raise ValueError(f"condition {condition!r}: the guidance scale must be >= 0 and at most {MAX_SCALE:g}")
    return Guidance(POSITIVE, NEGATIVE, scale)


def guided_log_softmax(positive_logits: torch.Tensor, negative_logits: torch.Tensor,
                       scale: float) -> torch.Tensor:
    """Per-row guided log-probabilities over the vocabulary (last dim), renormalised: the distribution
    transformers' `guidance_scale` + `negative_prompt_ids` samples from."""
    import torch

    pos = torch.log_softmax(positive_logits.float(), dim=-1)
    neg = torch.log_softmax(negative_logits.float(), dim=-1)
    return torch.log_softmax(neg + scale * (pos - neg), dim=-1)
