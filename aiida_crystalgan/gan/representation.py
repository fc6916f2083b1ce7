"""The invertible representation: lattice matrix, fractional coordinates and species in ``n_max`` masked slots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from aiida_crystalgan.io import StructureRecord


@dataclass
class CrystalBatch:
    """A batch of periodic structures padded to ``n_max`` slots.

    ``cell`` (B, 3, 3) lattice vectors as rows (Å); ``frac`` (B, N, 3) fractional coordinates; ``species`` (B, N)
    index into the element vocabulary (0 in empty slots); ``mask`` (B, N) true for occupied slots.
    """

    cell: torch.Tensor
    frac: torch.Tensor
    species: torch.Tensor
    mask: torch.Tensor

    @property
    def num_atoms(self) -> torch.Tensor:
        """(B,) number of occupied slots."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CrystalBatch:
        return CrystalBatch(
            self.cell.to(device, dtype),
            self.frac.to(device, dtype),
            self.species.to(device),
            self.mask.to(device),
        )


def symbols_to_numbers(symbols: Sequence[str]) -> list[int]:
    """Atomic numbers of element symbols; ``ValueError`` for an unknown symbol."""
    unknown = [symbol for symbol in symbols if symbol not in atomic_numbers]
    if unknown:
        raise ValueError(f'unknown element symbol(s): {", ".join(unknown)}')
    return [atomic_numbers[symbol] for symbol in symbols]


def species_indices(numbers: Sequence[int], elements: Sequence[str]) -> np.ndarray:
    """Map atomic numbers onto indices of the element vocabulary ``elements`` (symbols)."""
    lookup = {atomic_numbers[symbol]: index for index, symbol in enumerate(elements)}
    missing = sorted({chemical_symbols[int(z)] for z in numbers if int(z) not in lookup})
    if missing:
        raise ValueError(f'element(s) {", ".join(missing)} not in the model vocabulary {", ".join(elements)}')
    return np.array([lookup[int(z)] for z in numbers], dtype=np.int64)


def records_to_batch(records: Sequence[StructureRecord], elements: Sequence[str], n_max: int) -> CrystalBatch:
    """Encode structures exactly (float64, atom order kept; coordinates are not wrapped)."""
    too_large = [record.num_atoms for record in records if record.num_atoms > n_max]
    if too_large:
        raise ValueError(f'a structure with {max(too_large)} atoms does not fit in n_max={n_max} slots')
    batch = len(records)
    cell = np.zeros((batch, 3, 3))
    frac = np.zeros((batch, n_max, 3))
    species = np.zeros((batch, n_max), dtype=np.int64)
    mask = np.zeros((batch, n_max), dtype=bool)
    for index, record in enumerate(records):
        count = record.num_atoms
        cell[index] = record.cell
        frac[index, :count] = np.linalg.solve(record.cell.T, record.positions.T).T
        species[index, :count] = species_indices(record.numbers, elements)
        mask[index, :count] = True
    return CrystalBatch(
        torch.from_numpy(cell), torch.from_numpy(frac), torch.from_numpy(species), torch.from_numpy(mask)
    )


def batch_to_records(
    batch: CrystalBatch, elements: Sequence[str], wrap: bool = False, label: str = '', source: str = ''
) -> list[StructureRecord]:
    """Decode a batch into structures, dropping empty slots (optionally wrapping coordinates into [0, 1))."""
    numbers = np.array(symbols_to_numbers(elements), dtype=np.int64)
    cells = batch.cell.detach().double().cpu().numpy()
    frac = batch.frac.detach().double().cpu().numpy()
    if wrap:
        frac = frac - np.floor(frac)
    positions = frac @ cells
    species = batch.species.cpu().numpy()
    mask = batch.mask.cpu().numpy()
    return [
        StructureRecord(
            numbers=numbers[species[i][mask[i]]],
            positions=positions[i][mask[i]],
            cell=cells[i],
            label=label,
            source=source,
        )
        for i in range(len(cells))
    ]
