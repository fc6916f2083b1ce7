"""Fast screening of generated candidates with the model that made them, batched, before any pymatgen analysis.

Three filters run before any symmetry analysis or ``StructureMatcher``: the composition must be the requested one,
the volume per atom and the shortest interatomic distance (periodic images included, within the featurizer's
cut-off) must be within bounds. Near-duplicates are then dropped by an invariant fingerprint (the model's per-atom
features averaged over the cell, unchanged by atom order, translation, rotation and supercells): within one reduced
composition, candidates are visited from the lowest predicted energy up and one is dropped when its fingerprint is
within ``duplicate_tolerance`` (relative Euclidean distance) of one already kept. The physics head predicts the energy
per atom (eV/atom, on the scale of the engine whose energies trained it) of every candidate that reaches ranking.

The filters and the physics head are linear in the number of candidates; the near-duplicate search compares the
candidates of one composition pairwise in BLAS blocks (10^4 candidates: about 20 s on one CPU core, all included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase.formula import Formula

from aiida_crystalgan.io import StructureRecord

from .data import standard_batch
from .model import CrystalGan

#: Outcomes of the screening, in funnel order.
COMPOSITION, VOLUME, DISTANCE, DUPLICATE = 'composition', 'volume', 'min_distance', 'duplicate'
DROP_REASONS = (COMPOSITION, VOLUME, DISTANCE, DUPLICATE)


@dataclass(frozen=True)
class ScreeningCriteria:
    """Bounds of the fast filters (Å, Å^3/atom) and the relative fingerprint distance of near-duplicates."""

    min_distance: float = 0.5
    min_volume_per_atom: float = 5.0
    max_volume_per_atom: float = 40.0
    duplicate_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.min_distance < 0:
            raise ValueError(f'screening min_distance must be >= 0, got {self.min_distance}')
        if not 0 <= self.min_volume_per_atom < self.max_volume_per_atom:
            raise ValueError(
                'screening needs 0 <= min_volume_per_atom < max_volume_per_atom, got '
                f'{self.min_volume_per_atom} and {self.max_volume_per_atom}'
            )
        if self.duplicate_tolerance < 0:
            raise ValueError(f'screening duplicate_tolerance must be >= 0, got {self.duplicate_tolerance}')

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ScreeningCriteria:
        """Criteria from a request's ``screening`` object; ``ValueError`` names unknown keys."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f'unknown screening key(s): {", ".join(unknown)}')
        return cls(**values)


@dataclass
class ScreeningResult:
    """Per candidate: drop reason (``''`` when kept) and predicted energy per atom; survivors best first."""

    reasons: list[str]
    predicted_energy_per_atom: np.ndarray
    ranked: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """How many candidates each stage received and dropped: ``generated``, every reason, ``ranked``."""
        counts = {'generated': len(self.reasons)}
        counts.update({reason: self.reasons.count(reason) for reason in DROP_REASONS})
        counts['ranked'] = len(self.ranked)
        return counts

    def per_composition(self, records: Sequence[StructureRecord]) -> dict[str, dict[str, int]]:
        """Generated and ranked candidates per requested composition (the records' labels)."""
        table: dict[str, dict[str, int]] = {}
        for record, reason in zip(records, self.reasons):
            row = table.setdefault(record.label, {'generated': 0, 'ranked': 0})
            row['generated'] += 1
            row['ranked'] += not reason
        return table

    def to_dict(self, records: Sequence[StructureRecord]) -> dict[str, Any]:
        """JSON summary: counts, counts per composition and the ranked survivors as ``[index, predicted eV/atom,
        position of the composition in `per_composition`]``.
        """
        per_composition = self.per_composition(records)
        position = {label: number for number, label in enumerate(per_composition)}
        ranked = [
            [index, float(self.predicted_energy_per_atom[index]), position[records[index].label]]
            for index in self.ranked
        ]
        return {'counts': self.counts, 'per_composition': per_composition, 'ranked': ranked}


def _reduced_counts(numbers: np.ndarray) -> tuple[tuple[int, int], ...]:
    values, counts = np.unique(numbers, return_counts=True)
    divisor = math.gcd(*counts.tolist())
    return tuple((int(z), int(c) // divisor) for z, c in zip(values, counts))


def _requested_counts(label: str) -> tuple[tuple[int, int], ...] | None:
    from ase.data import atomic_numbers

    try:
        count = Formula(label).count()
    except ValueError:
        return None
    numbers = np.repeat([atomic_numbers[symbol] for symbol in count], list(count.values()))
    return _reduced_counts(numbers) if len(numbers) else None


@torch.no_grad()
def _evaluate(model: CrystalGan, records: Sequence[StructureRecord], device: torch.device) -> tuple[np.ndarray, ...]:
    """Shortest distance (Å; inf with no pair within the cut-off), fingerprint and predicted eV/atom of each record."""
    n_max = max(record.num_atoms for record in records)
    batch = standard_batch(records, model.elements, n_max)[0].to(device)
    features, pairs = model.features(batch)
    shortest = torch.full((len(records),), math.inf, dtype=pairs.distance.dtype, device=device)
    shortest = shortest.scatter_reduce(0, pairs.batch, pairs.distance, reduce='amin')
    mask = batch.mask[..., None].to(features.dtype)
    fingerprint = (features * mask).sum(dim=1) / mask.sum(dim=1)
    weights = next(model.physics.parameters())
    normalised = model.physics(features.to(weights.dtype), batch.mask).double().cpu().numpy()
    counts = np.stack(
        [
            np.bincount(batch.species[i][batch.mask[i]].cpu().numpy(), minlength=len(model.elements))
            for i in range(len(records))
        ]
    )
    energy = model.normalisation.energy_per_atom(normalised, counts)
    return shortest.cpu().numpy(), fingerprint.double().cpu().numpy(), energy


def predicted_energy_per_atom(
    model: CrystalGan, records: Sequence[StructureRecord], device: torch.device | str = 'cpu', batch_size: int = 1024
) -> np.ndarray:
    """The physics head's energy per atom (eV/atom) of each of ``records``, unfiltered: what :func:`screen` ranks by.

    Every record must hold only elements of the model's vocabulary.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    chunks = [
        _evaluate(model, records[start : start + batch_size], device)[2] for start in range(0, len(records), batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _near_duplicates(fingerprints: np.ndarray, tolerance: float, chunk: int = 2048) -> list[int]:
    """Rows of ``fingerprints`` (best first) within ``tolerance`` (relative distance) of an earlier row that is kept.

    Close pairs come from blocked distance matrices (BLAS, so 10^4 rows take seconds); the greedy pass that keeps the
    first of each group then only walks those pairs.
    """
    vectors = torch.from_numpy(fingerprints)
    norms = vectors.norm(dim=1)
    earlier_close: list[np.ndarray] = []
    for start in range(0, len(vectors), chunk):
        rows = slice(start, start + chunk)
        distance = torch.cdist(vectors[rows], vectors[: start + chunk])
        scale = torch.maximum(norms[rows, None], norms[None, : start + chunk]).clamp(min=1e-12)
        position = torch.arange(start, start + len(distance))[:, None]
        close = (distance <= tolerance * scale) & (torch.arange(distance.shape[1])[None, :] < position)
        earlier_close.extend(np.flatnonzero(row) for row in close.numpy())
    kept = np.zeros(len(vectors), dtype=bool)
    duplicates = []
    for position, neighbours in enumerate(earlier_close):
        if kept[neighbours].any():
            duplicates.append(position)
        else:
            kept[position] = True
    return duplicates


def screen(
    model: CrystalGan,
    records: Sequence[StructureRecord],
    criteria: ScreeningCriteria | None = None,
    device: torch.device | str = 'cpu',
    batch_size: int = 1024,
) -> ScreeningResult:
    """Filter, deduplicate and rank ``records`` (labelled with their requested composition), best first.

    The ranking orders the survivors by predicted energy per atom, lowest first; within one composition this is
    the order of the predicted energy above the hull, which the workflow completes with the engine's hull.
    """
    criteria = criteria or ScreeningCriteria()
    device = torch.device(device)
    model = model.to(device).eval()
    size = len(records)
    reasons = [''] * size
    energy = np.full(size, np.nan)
    fingerprints: dict[int, np.ndarray] = {}
    for index, record in enumerate(records):
        volume = abs(float(np.linalg.det(record.cell))) / max(record.num_atoms, 1)
        if not record.num_atoms or _requested_counts(record.label) != _reduced_counts(record.numbers):
            reasons[index] = COMPOSITION
        elif not criteria.min_volume_per_atom <= volume <= criteria.max_volume_per_atom:
            reasons[index] = VOLUME
    candidates = [index for index in range(size) if not reasons[index]]
    for start in range(0, len(candidates), batch_size):
        chunk = candidates[start : start + batch_size]
        shortest, fingerprint, predicted = _evaluate(model, [records[i] for i in chunk], device)
        for position, index in enumerate(chunk):
            if shortest[position] < criteria.min_distance:
                reasons[index] = DISTANCE
            else:
                energy[index] = predicted[position]
                fingerprints[index] = fingerprint[position]
    groups: dict[tuple, list[int]] = {}
    for index in fingerprints:
        groups.setdefault(_reduced_counts(records[index].numbers), []).append(index)
    for members in groups.values():
        members.sort(key=lambda i: (energy[i], i))
        for position in _near_duplicates(np.asarray([fingerprints[i] for i in members]), criteria.duplicate_tolerance):
            reasons[members[position]] = DUPLICATE
    ranked = sorted((i for i in fingerprints if not reasons[i]), key=lambda i: (energy[i], i))
    return ScreeningResult(reasons, energy, ranked)
