"""Invariant smooth features: periodic pair distances within a cutoff, expanded in radial basis functions per
species pair with a cosine envelope, summed over neighbours, and optionally three-body angular moments. Differentiable
with respect to cell and coordinates.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

#: Largest number of (pair, image) candidates screened at once; bounds the memory of the screening pass.
_SCREEN_CHUNK = 1_000_000


class PairList(NamedTuple):
    """Periodic pairs within the cutoff, one row per (atom, neighbour image): indices and distances (P,), and the
    Cartesian vectors from ``first`` to the image of ``second`` (P, 3)."""

    batch: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    distance: torch.Tensor
    vector: torch.Tensor


def image_reach(cell: torch.Tensor, cutoff: float, max_images: int) -> torch.Tensor:
    """Number of periodic images (B, 3) needed along each axis to find every neighbour within ``cutoff``.

    ``cell`` (B, 3, 3) rows. Minimum-image fractional separations lie in [-1/2, 1/2] and a separation ``s_k`` along
    axis ``k`` is at least ``|s_k| d_k`` long (``d_k``: spacing of lattice planes), so ``|n_k| <= cutoff / d_k + 1/2``
    suffices. Capped at ``max_images`` so that a degenerate generated cell cannot exhaust memory.
    """
    with torch.no_grad():
        spacing = 1.0 / torch.linalg.norm(torch.linalg.inv(cell.double()), dim=-2)
        return torch.floor(cutoff / spacing + 0.5).clamp(max=max_images).long()


def periodic_pairs(
    cell: torch.Tensor, frac: torch.Tensor, mask: torch.Tensor, cutoff: float, max_images: int = 4
) -> PairList:
    """All pairs of occupied slots closer than ``cutoff`` (Å), over periodic images.

    ``cell`` (B, 3, 3) rows, ``frac`` (B, N, 3), ``mask`` (B, N). Pairs are screened without gradients, batched over
    the structures that need the same image range, then their distances are recomputed differentiably, so gradients
    reach both ``cell`` and ``frac``.
    """
    n_slots = mask.shape[1]
    delta = frac[:, None, :, :] - frac[:, :, None, :]
    delta = delta - torch.round(delta.detach())
    reach = image_reach(cell, cutoff, max_images)
    groups, members = torch.unique(reach, dim=0, return_inverse=True)
    eye = torch.eye(n_slots, dtype=torch.bool, device=mask.device)
    found, images = [], []
    with torch.no_grad():
        for group, extent in enumerate(groups.tolist()):
            shifts = torch.cartesian_prod(
                *[torch.arange(-n, n + 1, device=cell.device, dtype=cell.dtype) for n in extent]
            )
            self_image = eye[:, :, None] & (shifts == 0).all(dim=-1)
            structures = (members == group).nonzero().squeeze(1)
            chunk = max(1, _SCREEN_CHUNK // (n_slots * n_slots * len(shifts)))
            for start in range(0, len(structures), chunk):
                rows = structures[start : start + chunk]
                vectors = (delta[rows, :, :, None, :] + shifts) @ cell[rows, None, None]
                inside = (vectors.square().sum(dim=-1) < cutoff * cutoff) & ~self_image
                inside &= (mask[rows, :, None] & mask[rows, None, :])[..., None]
                row, i, j, image = inside.nonzero().unbind(dim=1)
                found.append(torch.stack([rows[row], i, j], dim=1))
                images.append(shifts[image])
    b, i, j = torch.cat(found).unbind(dim=1)
    vectors = torch.einsum('pk,pkl->pl', delta[b, i, j] + torch.cat(images), cell[b])
    distance = torch.sqrt(vectors.square().sum(dim=-1) + 1e-12)
    return PairList(b, i, j, distance, vectors)


def cosine_envelope(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``(cos(pi d / rc) + 1) / 2`` inside the cutoff, 0 outside: value and slope vanish at ``rc``. Shape of input."""
    inside = distance < cutoff
    return torch.where(inside, 0.5 * (torch.cos(math.pi * distance.clamp(max=cutoff) / cutoff) + 1.0), 0.0)


class RadialBasis(nn.Module):
    """Gaussians with centres evenly spaced on [0, cutoff], multiplied by the cosine envelope."""

    def __init__(self, cutoff: float, num_rbf: int) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer('centres', torch.linspace(0.0, cutoff, num_rbf), persistent=False)
        self.width = cutoff / num_rbf

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """(P,) distances -> (P, num_rbf)."""
        gauss = torch.exp(-0.5 * ((distance[:, None] - self.centres.to(distance.dtype)) / self.width) ** 2)
        return gauss * cosine_envelope(distance, self.cutoff)[:, None]


def angular_moments(
    pairs: PairList, species: torch.Tensor, num_species: int, cutoff: float, order: int
) -> torch.Tensor:
    """Three-body descriptors (B, N, num_species**2 * order) of every centre atom, before the centre's one-hot.

    For neighbour species ``a``, ``b`` and ``n = 1 .. order``: ``sum_{j in a, k in b} w_ij w_ik cos(theta_jik)^n``
    with ``w = cosine_envelope(d, cutoff)``, computed without enumerating triplets as the inner product of the moment
    tensors ``M_a = sum_{j in a} w_ij u_ij^(x n)`` (``u``: unit vectors): rotation invariant, smooth at the cutoff.
    The ``j = k`` terms are included (they add ``sum w^2`` to each ``a = a`` moment).
    """
    batch_size, n_slots = species.shape
    inside = pairs.distance < cutoff
    batch, first, second = pairs.batch[inside], pairs.first[inside], pairs.second[inside]
    distance = pairs.distance[inside]
    weight = cosine_envelope(distance, cutoff)
    unit = pairs.vector[inside] / distance[:, None]
    target = (batch * n_slots + first) * num_species + species[batch, second]
    moments, power = [], weight[:, None]
    for _ in range(order):
        power = (power[:, :, None] * unit[:, None, :]).flatten(1)
        summed = power.new_zeros(batch_size * n_slots * num_species, power.shape[1]).index_add(0, target, power)
        summed = summed.view(batch_size, n_slots, num_species, -1)
        moments.append(torch.einsum('bnac,bnec->bnae', summed, summed).flatten(2))
    return torch.stack(moments, dim=-1).flatten(2)


class InvariantFeatures(nn.Module):
    """Per-atom descriptors invariant to translation, rotation, permutation and the choice of unit cell.

    Atom ``i`` of species ``s_i`` gets ``onehot(s_i) (x) sum_j rbf(d_ij) onehot(s_j)``: radial distribution per
    species pair, ``num_species**2 * num_rbf`` numbers. With ``angular_order > 0`` it also gets
    ``onehot(s_i) (x)`` the :func:`angular_moments` of its neighbours within ``angular_cutoff`` (pair distances
    alone barely see bond angles, which tell many polymorphs apart). No trainable parameters.
    """

    def __init__(
        self,
        num_species: int,
        cutoff: float,
        num_rbf: int,
        max_images: int = 4,
        angular_order: int = 0,
        angular_cutoff: float = 3.5,
    ) -> None:
        super().__init__()
        if angular_order > 0 and angular_cutoff > cutoff:
            raise ValueError(f'angular_cutoff={angular_cutoff} must not exceed cutoff={cutoff}')
        self.num_species = num_species
        self.cutoff = cutoff
        self.max_images = max_images
        self.angular_order = angular_order
        self.angular_cutoff = angular_cutoff
        self.basis = RadialBasis(cutoff, num_rbf)

    @property
    def num_features(self) -> int:
        return self.num_species**2 * (len(self.basis.centres) + self.num_species * self.angular_order)

    def forward(
        self, cell: torch.Tensor, frac: torch.Tensor, species: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, PairList]:
        """``cell`` (B, 3, 3), ``frac`` (B, N, 3), ``species``/``mask`` (B, N) -> features (B, N, F) and the pairs.

        Runs in the input's floating-point type, outside any autocast region, because distances need precision.
        """
        with torch.autocast(device_type=cell.device.type, enabled=False):
            pairs = periodic_pairs(cell, frac, mask, self.cutoff, self.max_images)
            batch_size, n_slots = species.shape
            k = self.num_species
            expanded = self.basis(pairs.distance)
            target = (pairs.batch * n_slots + pairs.first) * k + species[pairs.batch, pairs.second]
            density = expanded.new_zeros(batch_size * n_slots * k, expanded.shape[1]).index_add(0, target, expanded)
            density = density.view(batch_size, n_slots, -1)
            if self.angular_order > 0:
                angular = angular_moments(pairs, species, k, self.angular_cutoff, self.angular_order)
                density = torch.cat([density, angular], dim=-1)
            own = nn.functional.one_hot(species, k).to(density.dtype) * mask[..., None]
            features = (own[..., None] * density[:, :, None, :]).reshape(batch_size, n_slots, -1)
        return features, pairs
