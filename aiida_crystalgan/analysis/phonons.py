"""Dynamical stability from finite displacements with phonopy (no AiiDA import).

The pieces of the ``crystalgan.phonons`` workchain that do not depend on AiiDA: the supercell that makes every
perpendicular width at least a given length, and the lowest frequency on a Γ-centred q-mesh. :func:`phonon_check`
chains them with any ASE calculator, for scripts and benchmarks that run outside AiiDA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ('PhononCheck', 'lowest_frequency', 'phonon_check', 'supercell_matrix_for_length')


@dataclass(frozen=True)
class PhononCheck:
    """Outcome of :func:`phonon_check`: lowest frequency on the q-mesh (THz, negative: imaginary) and the verdict."""

    min_frequency: float
    is_stable: bool
    supercell_matrix: list[list[int]]


def supercell_matrix_for_length(cell: np.ndarray, length: float) -> list[list[int]]:
    """Diagonal supercell whose perpendicular widths are all at least ``length`` (Å)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return np.diag([max(1, math.ceil(length / width - 1e-6)) for width in widths]).tolist()


def lowest_frequency(phonopy, mesh: Sequence[int]) -> float:
    """Lowest frequency (THz, imaginary ones negative as phonopy writes them) on a Γ-centred ``mesh``.

    ``phonopy`` is a ``Phonopy`` instance with force constants.
    """
    phonopy.run_mesh(list(mesh), is_gamma_center=True)
    return float(np.min(phonopy.get_mesh_dict()['frequencies']))


def phonon_check(
    atoms,
    calculator,
    supercell_min_length: float = 10.0,
    displacement: float = 0.01,
    mesh: Sequence[int] = (8, 8, 8),
    frequency_tolerance: float = 0.1,
    subtract_residual_forces: bool = True,
    max_supercell_atoms: int | None = None,
) -> PhononCheck | None:
    """Finite-displacement phonons of ``atoms`` (ASE) with ``calculator``: stable when no frequency on the mesh is
    below ``-frequency_tolerance`` THz. The defaults are those of the ``crystalgan.phonons`` workchain.

    With ``subtract_residual_forces`` the forces of the pristine supercell are subtracted from those of the displaced
    ones. Returns ``None`` when the supercell would have more than ``max_supercell_atoms`` atoms.
    """
    from ase import Atoms
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    matrix = supercell_matrix_for_length(atoms.cell[:], supercell_min_length)
    if max_supercell_atoms is not None and len(atoms) * round(abs(np.linalg.det(matrix))) > max_supercell_atoms:
        return None
    unitcell = PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:], scaled_positions=atoms.get_scaled_positions()
    )
    phonopy = Phonopy(unitcell, supercell_matrix=matrix)
    phonopy.generate_displacements(distance=displacement)

    def forces_of(supercell) -> np.ndarray:
        copy = Atoms(supercell.symbols, cell=supercell.cell, scaled_positions=supercell.scaled_positions, pbc=True)
        copy.calc = calculator
        return copy.get_forces()

    forces = np.array([forces_of(supercell) for supercell in phonopy.supercells_with_displacements])
    if subtract_residual_forces:
        forces -= forces_of(phonopy.supercell)
    phonopy.forces = forces
    phonopy.produce_force_constants()
    minimum = lowest_frequency(phonopy, mesh)
    return PhononCheck(minimum, minimum >= -frequency_tolerance, matrix)
