"""Building blocks shared by the networks: pre-norm residual blocks and a residual MLP."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """``x + W2 silu(W1 LayerNorm(x))``: a pre-norm shortcut block of constant width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., width) -> (..., width)."""
        return x + self.outer(nn.functional.silu(self.inner(self.norm(x))))


class ResidualMLP(nn.Module):
    """Linear embedding, ``depth`` residual blocks, then LayerNorm, SiLU and a linear read-out."""

    def __init__(self, in_features: int, width: int, depth: int, out_features: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        return self.readout(nn.functional.silu(self.norm(self.blocks(self.embed(x)))))
