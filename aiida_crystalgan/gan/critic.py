"""The critic: a conditional DeepSets network on invariant per-atom features."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ResidualMLP


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, N, D) over occupied slots ``mask`` (B, N) -> (B, D)."""
    weights = mask.to(values.dtype)[..., None]
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class Critic(nn.Module):
    """Wasserstein critic: per-atom residual MLP, mean over atoms, concatenation with the condition, residual MLP."""

    def __init__(self, num_features: int, condition_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.atom = ResidualMLP(num_features, width, depth, width)
        self.head = ResidualMLP(width + condition_dim, width, depth, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``features`` (B, N, F), ``mask`` (B, N), ``condition`` (B, C) -> scores (B,)."""
        pooled = masked_mean(self.atom(features), mask)
        return self.head(torch.cat([pooled, condition.to(pooled.dtype)], dim=-1)).squeeze(-1)
