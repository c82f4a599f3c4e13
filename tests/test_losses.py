"""Per-token losses and their sums by tag (`condpt.losses`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from condpt.losses import tag_sums, token_losses


def test_token_losses_match_hf_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 3] = -100
    losses = token_losses(logits, labels)
    assert losses.shape == (2, 5)
    valid = labels[:, 1:] != -100
    mean = losses.sum() / valid.sum()
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert mean.item() == pytest.approx(ref.item(), rel=1e-6)


def test_tag_sums_group_by_target_tag():
    losses = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    labels = torch.tensor([[5, 5, -100, 5, 5]])
    tag_index = torch.tensor([[0, 0, 1, 1, -1]])  # targets (positions 1..4): role 0, masked, role 1, untagged
    stats = tag_sums(losses, labels, tag_index, n_roles=2)
    # slots: 0 untagged, 1 role 0, 2 role 1
    assert stats[0].tolist() == [4.0, 1.0, 3.0] and stats[1].tolist() == [1.0, 1.0, 1.0]
