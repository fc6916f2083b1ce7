"""Dataset -> tensors: element vocabulary, conditions, energy/volume/distance statistics and the training set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from ase.geometry import minkowski_reduce

from aiida_crystalgan.io import MINIMUM, StructureRecord

from .features import periodic_pairs
from .representation import CrystalBatch, species_indices


class NoMinimaError(ValueError):
    """The training data has no structure of role ``minimum``: the critic would have no real data to learn from."""


def split_by_role(records: Sequence[StructureRecord]) -> tuple[list[StructureRecord], list[StructureRecord]]:
    """``(minima, labelled)``: the ``minimum`` records (real data for the critic) and every record with an energy,
    whatever its role (what the physics head learns from; minima with energies are in both lists)."""
    minima = [record for record in records if record.role == MINIMUM]
    labelled = [record for record in records if record.energy is not None]
    return minima, labelled


def training_records(records: Sequence[StructureRecord]) -> list[StructureRecord]:
    """The records training uses, minima first: every ``minimum`` and every other record with an energy.

    Raises :class:`NoMinimaError` when there is no minimum. Datasets written before roles existed read every
    structure as ``labelled``, so they are refused too: their relaxed phases must be imported again as minima.
    """
    minima, labelled = split_by_role(records)
    if not minima:
        raise NoMinimaError(
            f'none of the {len(records)} usable structures has the role `{MINIMUM}`: the critic learns what real '
            f'crystals look like from local minima only (relaxed known phases, quenched snapshots). Import them with '
            f'`--role {MINIMUM}`; datasets written before roles existed read every structure as `labelled`.'
        )
    return minima + [record for record in labelled if record.role != MINIMUM]


def element_vocabulary(records: Sequence[StructureRecord]) -> list[str]:
    """Symbols of all elements present, ordered by atomic number."""
    numbers = sorted({int(z) for record in records for z in record.numbers})
    return [chemical_symbols[z] for z in numbers]


def composition_counts(records: Sequence[StructureRecord], elements: Sequence[str]) -> np.ndarray:
    """(S, K) number of atoms of each vocabulary element per structure."""
    counts = np.zeros((len(records), len(elements)), dtype=np.int64)
    for index, record in enumerate(records):
        counts[index] = np.bincount(species_indices(record.numbers, elements), minlength=len(elements))
    return counts


def conditions(counts: torch.Tensor, n_max: int) -> torch.Tensor:
    """Conditioning vectors (B, K + 1): element fractions, then number of atoms / ``n_max``. ``counts`` (B, K)."""
    total = counts.sum(dim=-1, keepdim=True).to(torch.float32)
    return torch.cat([counts / total.clamp(min=1.0), total / n_max], dim=-1).to(torch.float32)


def slot_species(counts: torch.Tensor, n_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Species (B, n_max) and mask (B, n_max) for compositions ``counts`` (B, K): atoms sorted by species index."""
    index = torch.arange(counts.shape[-1], device=counts.device)
    species = torch.zeros(len(counts), n_max, dtype=torch.long, device=counts.device)
    mask = torch.zeros(len(counts), n_max, dtype=torch.bool, device=counts.device)
    for row, count in enumerate(counts):
        filled = torch.repeat_interleave(index, count)
        species[row, : len(filled)] = filled
        mask[row, : len(filled)] = True
    return species, mask


@dataclass
class Normalisation:
    """Dataset statistics stored with the model.

    ``reference_energies`` (eV/atom per element, least-squares fit of total energies on composition) are removed first;
    the remaining energy per atom is standardised with ``energy_shift`` and ``energy_scale`` (eV/atom).
    Forces are divided by ``force_scale`` (root mean square force component, eV/Å).
    ``min_pair_distance[a][b]`` is the typical shortest contact (Å) between species ``a`` and ``b`` in the minima
    (see :func:`shortest_distances`): the repulsion wall of training and the separation of generated atoms scale it.
    """

    elements: list[str]
    reference_energies: list[float]
    energy_shift: float
    energy_scale: float
    force_scale: float
    volume_log_mean: float
    volume_log_std: float
    min_pair_distance: list[list[float]]
    num_energies: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalisation:
        return cls(**values)

    def normalise_energy(self, energy: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Total energies (S,) eV -> normalised energies per atom (S,)."""
        per_atom = (energy - counts @ np.asarray(self.reference_energies)) / counts.sum(axis=1)
        return (per_atom - self.energy_shift) / self.energy_scale

    def energy_per_atom(self, normalised: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalise_energy`, in eV/atom."""
        reference = counts @ np.asarray(self.reference_energies) / counts.sum(axis=1)
        return normalised * self.energy_scale + self.energy_shift + reference


def fit_normalisation(
    records: Sequence[StructureRecord],
    elements: Sequence[str],
    default_min_distance: float,
    cutoff: float,
    max_images: int,
    contact_quantile: float = 0.0,
) -> Normalisation:
    """Fit per-element reference energies, the energy and force scales on the records with energies (the labelled
    data), and on the minima (what generated structures should resemble; all records when there are none) the volume
    prior and the ``contact_quantile`` quantile of each structure's shortest contact per species pair.
    """
    minima = [record for record in records if record.role == MINIMUM] or list(records)
    counts = composition_counts(records, elements)
    energy = np.array([np.nan if r.energy is None else r.energy for r in records])
    known = np.isfinite(energy)
    references = np.zeros(len(elements))
    shift, scale = 0.0, 1.0
    if known.any():
        references = np.linalg.lstsq(counts[known].astype(float), energy[known], rcond=None)[0]
        residual = (energy[known] - counts[known] @ references) / counts[known].sum(axis=1)
        shift, scale = float(residual.mean()), float(max(residual.std(), 1e-3))
    forces = [r.forces for r in records if r.forces is not None]
    force_scale = float(max(np.sqrt(np.mean(np.concatenate(forces) ** 2)), 1e-3)) if forces else 1.0
    log_volume = np.log([r.volume / r.num_atoms for r in minima])
    return Normalisation(
        elements=list(elements),
        reference_energies=references.tolist(),
        energy_shift=shift,
        energy_scale=scale,
        force_scale=force_scale,
        volume_log_mean=float(log_volume.mean()),
        volume_log_std=float(max(log_volume.std(), 0.05)),
        min_pair_distance=shortest_distances(
            minima, elements, default_min_distance, cutoff, max_images, contact_quantile
        ).tolist(),
        num_energies=int(known.sum()),
    )


def shortest_distances(
    records: Sequence[StructureRecord],
    elements: Sequence[str],
    default: float,
    cutoff: float,
    max_images: int,
    quantile: float = 0.0,
) -> np.ndarray:
    """(K, K) shortest contact per species pair: the ``quantile`` quantile, over the records that have such a pair
    within ``cutoff``, of each record's shortest distance (0: the shortest distance in any record, which one odd
    structure, a molecule in a crystal, say, can set for all); ``default`` for pairs never seen.
    """
    k = len(elements)
    per_record = []
    for start in range(0, len(records), 256):
        chunk = records[start : start + 256]
        batch = standard_batch(chunk, elements, max(r.num_atoms for r in chunk))[0]
        pairs = periodic_pairs(batch.cell, batch.frac, batch.mask, cutoff, max_images)
        kind = (pairs.batch * k + batch.species[pairs.batch, pairs.first]) * k + batch.species[
            pairs.batch, pairs.second
        ]
        shortest = torch.full((len(chunk) * k * k,), float('inf'), dtype=torch.float64)
        per_record.append(shortest.scatter_reduce(0, kind, pairs.distance, reduce='amin').view(len(chunk), k * k))
    distances = torch.cat(per_record).numpy()
    result = np.full(k * k, default)
    for index in range(k * k):
        seen = distances[:, index][np.isfinite(distances[:, index])]
        if len(seen):
            result[index] = np.quantile(seen, quantile)
    return result.reshape(k, k)


def standard_batch(
    records: Sequence[StructureRecord], elements: Sequence[str], n_max: int
) -> tuple[CrystalBatch, torch.Tensor]:
    """Encode structures in the generator's conventions (float64): Minkowski-reduced cell rotated to lower-triangular
    form, coordinates wrapped to [0, 1), atoms sorted by species. Also returns the forces (B, n_max, 3) in that frame
    (zero where unknown).
    """
    size = len(records)
    cell = np.zeros((size, 3, 3))
    frac = np.zeros((size, n_max, 3))
    species = np.zeros((size, n_max), dtype=np.int64)
    mask = np.zeros((size, n_max), dtype=bool)
    forces = np.zeros((size, n_max, 3))
    for index, record in enumerate(records):
        reduced = minkowski_reduce(record.cell)[0]
        lower = np.linalg.cholesky(reduced @ reduced.T)
        order = np.argsort(species_indices(record.numbers, elements), kind='stable')
        count = record.num_atoms
        coords = np.linalg.solve(reduced.T, record.positions[order].T).T
        cell[index] = lower
        frac[index, :count] = coords - np.floor(coords)
        species[index, :count] = species_indices(record.numbers[order], elements)
        mask[index, :count] = True
        if record.forces is not None:
            forces[index, :count] = record.forces[order] @ np.linalg.solve(reduced, lower)
    batch = CrystalBatch(
        torch.from_numpy(cell), torch.from_numpy(frac), torch.from_numpy(species), torch.from_numpy(mask)
    )
    return batch, torch.from_numpy(forces)


@dataclass
class TrainingSet:
    """Tensors of the training structures (float32): the batch, conditions (S, K + 1), normalised energies per atom
    (S,) (NaN where unknown), normalised forces (S, n_max, 3), which have forces (S,), which are minima (S,), the
    lowest known normalised energy per atom of each one's composition (S,) (see :func:`energy_floors`) and, once
    computed, the invariant features (S, n_max, F), which never change.
    """

    batch: CrystalBatch
    condition: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    has_forces: torch.Tensor
    minimum: torch.Tensor
    energy_floor: torch.Tensor
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.condition)

    def select(self, index: torch.Tensor, device: torch.device | str = 'cpu') -> TrainingSet:
        """Rows ``index`` (M,) on ``device``."""
        b = self.batch
        return TrainingSet(
            CrystalBatch(b.cell[index], b.frac[index], b.species[index], b.mask[index]).to(device),
            self.condition[index].to(device),
            self.energy[index].to(device),
            self.forces[index].to(device),
            self.has_forces[index].to(device),
            self.minimum[index].to(device),
            self.energy_floor[index].to(device),
            None if self.features is None else self.features[index].to(device),
        )


def build_training_set(
    records: Sequence[StructureRecord], elements: Sequence[str], n_max: int, normalisation: Normalisation
) -> TrainingSet:
    """Tensors for ``records`` (each at most ``n_max`` atoms) in the generator's conventions."""
    batch, forces = standard_batch(records, elements, n_max)
    counts = composition_counts(records, elements)
    energy = normalisation.normalise_energy(
        np.array([np.nan if r.energy is None else r.energy for r in records]), counts
    )
    has_forces = torch.tensor([r.forces is not None for r in records], dtype=torch.bool)
    return TrainingSet(
        batch=batch.to('cpu', torch.float32),
        condition=conditions(torch.from_numpy(counts), n_max),
        energy=torch.from_numpy(energy).float(),
        forces=(forces / normalisation.force_scale).float(),
        has_forces=has_forces,
        minimum=torch.tensor([r.role == MINIMUM for r in records], dtype=torch.bool),
        energy_floor=torch.from_numpy(energy_floors(energy, counts)).float(),
    )


def energy_floors(energy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(S,) lowest finite energy per atom (any units) among the structures of the same composition (element fractions
    of ``counts`` (S, K)), or of all structures where a composition has none; 0 when no energy is known.

    Generated structures are not rewarded for a predicted energy below the floor of their composition: the physics
    head has never seen such energies, so a prediction below it is an extrapolation the generator would exploit.
    """
    known = np.isfinite(energy)
    if not known.any():
        return np.zeros(len(energy))
    fractions = np.round(counts / counts.sum(axis=1, keepdims=True), 6)
    floors = np.full(len(energy), energy[known].min())
    keys, inverse = np.unique(fractions, axis=0, return_inverse=True)
    for key in range(len(keys)):
        rows = inverse.ravel() == key
        if (rows & known).any():
            floors[rows] = energy[rows & known].min()
    return floors
