"""The generator: noise + condition (composition, number of atoms) -> lattice and fractional coordinates."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layers import ResidualMLP


def lattice_from_raw(raw: torch.Tensor, length_scale: torch.Tensor, log_volume_range: torch.Tensor) -> torch.Tensor:
    """Map 7 unconstrained numbers per structure to a size-reduced lower-triangular cell (rows, Å).

    ``raw`` (B, 7), ``length_scale`` (B,) -> (B, 3, 3). Three numbers set the shape (ratios of the positive diagonal,
    volume-free, at most e^2), three the shears, bounded by half the diagonal above them (``|L_21| <= L_11 / 2``
    ...), and one the volume: ``log V = 3 log(length_scale) + log_volume_range * tanh(r)``. Every output is a valid,
    well-conditioned cell in the standard orientation of the training data.
    """
    shape = torch.tanh(raw[:, :3])
    shape = shape - shape.mean(dim=1, keepdim=True)
    log_volume = log_volume_range * torch.tanh(raw[:, 6:7])
    diagonal = length_scale[:, None] * torch.exp(shape + log_volume / 3.0)
    shear = 0.5 * torch.tanh(raw[:, 3:6])
    zero = torch.zeros_like(diagonal[:, 0])
    rows = [
        torch.stack([diagonal[:, 0], zero, zero], dim=-1),
        torch.stack([shear[:, 0] * diagonal[:, 0], diagonal[:, 1], zero], dim=-1),
        torch.stack([shear[:, 1] * diagonal[:, 0], shear[:, 2] * diagonal[:, 1], diagonal[:, 2]], dim=-1),
    ]
    return torch.stack(rows, dim=1)


def spread_points(count: int, candidates: int = 256) -> torch.Tensor:
    """``count`` fractional positions (count, 3) by best-candidate sampling with periodic distances: each new point is
    the farthest of ``candidates`` random ones from those before it, so that every prefix is spread out.
    """
    points = torch.rand(1, 3).numpy()
    for _ in range(count - 1):
        trial = torch.rand(candidates, 3).numpy()
        delta = trial[:, None, :] - points[None, :, :]
        nearest = np.linalg.norm(delta - np.round(delta), axis=-1).min(axis=1)
        points = np.concatenate([points, trial[nearest.argmax()][None]])
    return torch.from_numpy(points)


class Generator(nn.Module):
    """Residual MLP from ``[z, condition]`` to a lattice and ``n_max`` fractional coordinates.

    Coordinates are offsets from learned per-slot positions, initialised well apart (:func:`spread_points`) with small
    initial offsets, so that generated atoms start spread over the cell rather than on top of each other. The cell
    volume is ``n_atoms`` times the dataset's typical volume per atom, within three standard deviations of its
    logarithm (buffers, saved with the weights), so the network learns shape and relative size only.
    """

    def __init__(self, latent_dim: int, condition_dim: int, n_max: int, width: int, depth: int,
                 volume_log_mean: float = 2.7, volume_log_std: float = 0.1) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.n_max = n_max
        self.body = ResidualMLP(latent_dim + condition_dim, width, depth, 7 + 3 * n_max)
        self.slot_positions = nn.Parameter(spread_points(n_max))
        with torch.no_grad():
            self.body.readout.weight.mul_(0.1)
            self.body.readout.bias.zero_()
        self.register_buffer('volume_log_mean', torch.tensor(float(volume_log_mean)))
        self.register_buffer('volume_log_range', torch.tensor(3.0 * max(float(volume_log_std), 0.05)))

    def forward(self, z: torch.Tensor, condition: torch.Tensor,
                num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` (B, latent_dim), ``condition`` (B, C), ``num_atoms`` (B,) -> cell (B, 3, 3), frac (B, n_max, 3)."""
        out = self.body(torch.cat([z, condition.to(z.dtype)], dim=-1)).to(z.dtype)
        scale = (num_atoms.to(out.dtype) * torch.exp(self.volume_log_mean)) ** (1.0 / 3.0)
        cell = lattice_from_raw(out[:, :7], scale, self.volume_log_range)
        frac = self.slot_positions + out[:, 7:].view(-1, self.n_max, 3)
        return cell, frac
