"""Per-token losses and their sums by tag: what the loop trains on, logs and evaluates."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-target-token cross-entropy, [B, T-1]; labels are aligned with inputs (HF convention), -100 = no loss."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    losses = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    )
    return losses.view(shift_labels.shape)


def tag_sums(losses: torch.Tensor, labels: torch.Tensor, tag_index: torch.Tensor, n_roles: int) -> torch.Tensor:
    """[2, n_roles+1]: loss sums and token counts per tag of the *target* token (slot 0 = untagged)."""
    valid = labels[:, 1:] != -100
    idx = (tag_index[:, 1:].clamp(min=-1) + 1)[valid].long()
    sums = torch.bincount(idx, weights=losses[valid].detach().double(), minlength=n_roles + 1)
    counts = torch.bincount(idx, minlength=n_roles + 1).double()
    return torch.stack([sums[: n_roles + 1], counts[: n_roles + 1]])


def loss_by_tag(stats: torch.Tensor, roles: list[str]) -> dict[str, float]:
    out = {}
    for i, name in enumerate(["untagged", *roles]):
        if stats[1, i] > 0:
            out[name] = round(float(stats[0, i] / stats[1, i]), 6)
    return out


def mean_loss(stats: torch.Tensor) -> float:
    return float(stats[0].sum() / stats[1].sum().clamp(min=1))
