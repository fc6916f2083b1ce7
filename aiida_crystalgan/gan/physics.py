"""The physics head: energy per atom (normalised, relative to per-element references) and forces by autograd."""

from __future__ import annotations

import torch
from torch import nn

from .critic import masked_mean
from .layers import ResidualMLP
from .representation import CrystalBatch


class PhysicsHead(nn.Module):
    """Sum of atomic energies read from the invariant features; returns the normalised energy per atom."""

    def __init__(self, num_features: int, width: int, depth: int) -> None:
        super().__init__()
        self.atom = ResidualMLP(num_features, width, depth, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``features`` (B, N, F), ``mask`` (B, N) -> normalised energy per atom (B,)."""
        return masked_mean(self.atom(features), mask).squeeze(-1).to(features.dtype)


def energy_and_forces(
    head: PhysicsHead, features: torch.Tensor, batch: CrystalBatch, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised energy per atom (B,) and normalised forces (B, N, 3) = ``-d(sum of atomic energies)/d positions``.

    ``features`` (B, N, F) must have been computed from ``batch.frac`` with gradients enabled. Forces are in units
    of the energy scale per Å; the fractional gradient maps to Cartesian space at fixed cell as
    ``dE/dx = dE/ds inv(cell)^T``. With ``create_graph`` the forces stay differentiable (for training losses).
    """
    energy = head(features, batch.mask)
    total = (energy * batch.num_atoms.to(energy.dtype)).sum()
    (grad_frac,) = torch.autograd.grad(total, batch.frac, create_graph=create_graph)
    forces = -grad_frac @ torch.linalg.inv(batch.cell).transpose(-1, -2)
    return energy, forces * batch.mask[..., None]
