"""The generator: noise + condition (composition, number of atoms) -> lattice and fractional coordinates."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .layers import ResidualBlock, ResidualMLP


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


class SlotBlock(nn.Module):
    """Pre-norm masked self-attention across atom slots followed by a residual block: lets atoms see each other."""

    def __init__(self, width: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = ResidualBlock(width)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N, width), ``padding`` (B, N) true for empty slots -> (B, N, width)."""
        normed = self.norm(x)
        x = x + self.attention(normed, normed, normed, key_padding_mask=padding, need_weights=False)[0]
        return self.mlp(x)


def periodic_encoding(frac: torch.Tensor) -> torch.Tensor:
    """Fourier features (..., 12) of fractional coordinates (..., 3): sin/cos of 2 pi k s for k = 1, 2."""
    angle = 2.0 * math.pi * frac
    return torch.cat([torch.sin(angle), torch.cos(angle), torch.sin(2 * angle), torch.cos(2 * angle)], dim=-1)


class Generator(nn.Module):
    """Noise + condition -> lattice and ``n_max`` fractional coordinates, with noise per atom slot.

    The noise vector (``noise_dim`` standard normals per structure) holds a global latent (``latent_dim``), and per
    slot three numbers mapped to a uniformly random *start position* (normal CDF) and ``slot_latent_dim`` more. A
    residual MLP maps ``[global latent, condition]`` to a context vector and the lattice; every slot gets an embedding
    of its index (which fixes its species for a given composition), its start position (Fourier features), its latent
    and the context, then ``depth`` rounds of masked self-attention across slots (width ``max(16, width // 2)``); the
    read-out is an offset from the start position (small at initialisation). Random start positions make the
    structures depend on the noise by construction, so the generator cannot collapse onto one fixed set of learned
    slot positions. The cell volume is ``n_atoms`` times the dataset's typical volume per atom, within three standard
    deviations of its logarithm (buffers, saved with the weights), so the network learns shape and relative size only.
    """

    def __init__(
        self,
        latent_dim: int,
        condition_dim: int,
        n_max: int,
        width: int,
        depth: int,
        volume_log_mean: float = 2.7,
        volume_log_std: float = 0.1,
        slot_latent_dim: int = 8,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.slot_latent_dim = slot_latent_dim
        self.n_max = n_max
        self.noise_dim = latent_dim + n_max * (3 + slot_latent_dim)
        slot_width = max(16, width // 2)
        self.body = ResidualMLP(latent_dim + condition_dim, width, depth, slot_width + 7)
        self.slot_embedding = nn.Parameter(0.1 * torch.randn(n_max, slot_width))
        self.slot_input = nn.Linear(12 + slot_latent_dim + slot_width, slot_width)
        self.slot_blocks = nn.ModuleList(SlotBlock(slot_width, 4 if slot_width % 4 == 0 else 1) for _ in range(depth))
        self.slot_norm = nn.LayerNorm(slot_width)
        self.slot_readout = nn.Linear(slot_width, 3)
        with torch.no_grad():
            self.body.readout.weight.mul_(0.1)
            self.body.readout.bias.zero_()
            self.slot_readout.weight.mul_(0.1)
            self.slot_readout.bias.zero_()
        self.register_buffer('volume_log_mean', torch.tensor(float(volume_log_mean)))
        self.register_buffer('volume_log_range', torch.tensor(3.0 * max(float(volume_log_std), 0.05)))

    def sample_noise(self, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise (size, noise_dim) on the CPU."""
        return torch.randn(size, self.noise_dim, generator=generator)

    def forward(
        self, z: torch.Tensor, condition: torch.Tensor, num_atoms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` (B, noise_dim), ``condition`` (B, C), ``num_atoms`` (B,) -> cell (B, 3, 3), frac (B, n_max, 3)."""
        batch = len(z)
        slots = z[:, self.latent_dim :].reshape(batch, self.n_max, 3 + self.slot_latent_dim)
        start = torch.special.ndtr(slots[..., :3].float()).to(z.dtype)
        out = self.body(torch.cat([z[:, : self.latent_dim], condition.to(z.dtype)], dim=-1))
        context, raw = out[:, :-7], out[:, -7:].to(z.dtype)
        scale = (num_atoms.to(raw.dtype) * torch.exp(self.volume_log_mean)) ** (1.0 / 3.0)
        cell = lattice_from_raw(raw, scale, self.volume_log_range)
        # empty slots neither attend nor are attended to: only the first max(num_atoms) slots need computing
        used = max(1, int(num_atoms.max()))
        inputs = torch.cat(
            [
                periodic_encoding(start[:, :used]),
                slots[:, :used, 3:],
                context[:, None, :].expand(-1, used, -1).to(z.dtype),
            ],
            dim=-1,
        )
        x = self.slot_input(inputs) + self.slot_embedding[:used]
        padding = torch.arange(used, device=z.device)[None, :] >= num_atoms[:, None]
        for block in self.slot_blocks:
            x = block(x, padding)
        offsets = self.slot_readout(nn.functional.silu(self.slot_norm(x))).to(z.dtype)
        frac = torch.cat([start[:, :used] + offsets, start[:, used:]], dim=1)
        return cell, frac
