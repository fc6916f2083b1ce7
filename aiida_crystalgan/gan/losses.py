"""The loss terms of training: WGAN-GP critic terms, physics-head errors, and priors on generated structures."""

from __future__ import annotations

import torch

from .critic import masked_mean
from .features import PairList


def gradient_penalty(score: torch.Tensor, cell: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean of ``(|d score / d (cell, frac)| - 1)^2`` over structures, differentiable.

    ``score`` (B,) critic scores of interpolates ``cell`` (B, 3, 3) and ``frac`` (B, N, 3), which require gradients.
    """
    grad_cell, grad_frac = torch.autograd.grad(score.float().sum(), (cell, frac), create_graph=True)
    norm = torch.sqrt(grad_cell.square().sum(dim=(1, 2)) + grad_frac.square().sum(dim=(1, 2)) + 1e-12)
    return (norm - 1.0).square().mean()


def energy_force_error(
    energy: torch.Tensor,
    forces: torch.Tensor,
    target_energy: torch.Tensor,
    target_forces: torch.Tensor,
    with_forces: torch.Tensor,
    force_weight: float,
) -> torch.Tensor:
    """Mean squared error of normalised energies plus ``force_weight`` x that of force components.

    ``energy``/``target_energy`` (B,); ``forces``/``target_forces`` (B, N, 3) in the same units; ``with_forces``
    (B, N) true for atoms whose target forces are known. The force term is left out when no atom has forces or
    ``force_weight`` is zero.
    """
    loss = (energy.float() - target_energy).square().mean()
    if with_forces.any() and force_weight > 0:
        atoms = with_forces.float()
        error = ((forces.float() - target_forces).square().sum(dim=-1) * atoms).sum()
        error = error / (3 * atoms.sum())
        loss = loss + force_weight * error
    return loss


def force_penalty(forces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over occupied slots of the pseudo-Huber ``sqrt(1 + |F|^2) - 1``: ``forces`` (B, N, 3) in units of the
    typical force of the data, ``mask`` (B, N). Quadratic for small forces, linear for large ones, so that a few
    atoms with huge predicted forces (where the physics head extrapolates) cannot dominate the generator's gradient.
    """
    magnitude = torch.sqrt(1.0 + forces.float().square().sum(dim=-1)) - 1.0
    return (magnitude * mask).sum() / mask.sum()


def energy_excess(energy: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Mean of ``relu(energy - floor)``: predicted energies per atom (B,) above the lowest known energy of each
    composition ``floor`` (B,), same units; nothing is gained below the floor, where the physics head extrapolates.
    """
    return torch.relu(energy.float() - floor).mean()


def repulsion_penalty(
    pairs: PairList, species: torch.Tensor, threshold: torch.Tensor, num_atoms: torch.Tensor
) -> torch.Tensor:
    """Mean over structures of ``sum relu(threshold[s_i, s_j] - d_ij)^2 / n_atoms`` (Å^2). ``threshold`` (K, K)."""
    limit = threshold[species[pairs.batch, pairs.first], species[pairs.batch, pairs.second]]
    overlap = torch.relu(limit - pairs.distance).square()
    per_structure = overlap.new_zeros(len(num_atoms)).index_add(0, pairs.batch, overlap)
    return (per_structure / num_atoms.to(overlap.dtype)).mean()


def volume_penalty(cell: torch.Tensor, num_atoms: torch.Tensor, log_mean: float, log_std: float) -> torch.Tensor:
    """Squared excess of ``|log(V/atom) - mean| / std`` beyond one standard deviation, averaged. ``cell`` (B, 3, 3)."""
    log_volume = torch.log(torch.linalg.det(cell).abs() / num_atoms.to(cell.dtype))
    return torch.relu((log_volume - log_mean).abs() / log_std - 1.0).square().mean()


def diversity_penalty(features: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, half: int) -> torch.Tensor:
    """Mode-seeking term (MSGAN): ``1 / (0.1 + d_x / d_z)`` averaged over the pairs ``(i, i + half)``.

    Structures ``i`` and ``i + half`` share their composition; ``d_x`` is the relative L1 distance of their mean
    invariant per-atom features (``features`` (B, N, F), ``mask`` (B, N)), ``d_z`` the mean absolute difference of
    their noise (B, D). Small when different noise gives different structures, so collapse is penalised.
    """
    pooled = masked_mean(features, mask)
    first, second = pooled[:half], pooled[half : 2 * half]
    scale = 0.5 * (first.abs() + second.abs()).sum(dim=-1) + 1e-6
    distance = (first - second).abs().sum(dim=-1) / scale
    noise_distance = (noise[:half] - noise[half : 2 * half]).abs().mean(dim=-1).to(distance.dtype)
    return (1.0 / (0.1 + distance / noise_distance)).mean()
