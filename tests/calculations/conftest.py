"""A tiny dataset with consistent energies and forces (Lennard-Jones), for real training runs."""

from __future__ import annotations

import numpy as np
import pytest


def lennard_jones_records(count: int = 16, seed: int = 0):
    """Perturbed NbO2-like and Nb cells with Lennard-Jones energies (eV) and forces (eV/Å); the first half are
    ``minimum`` records (the critic's real data), the rest ``labelled``."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord

    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        if index % 2:
            atoms = bulk('Nb', 'bcc', a=3.3, cubic=True)
        else:
            atoms = bulk('NbO', 'rocksalt', a=4.3)
            atoms.set_chemical_symbols(['Nb', 'O'])
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.1, rc=6.0)
        role = MINIMUM if index < count // 2 else LABELLED
        records.append(StructureRecord.from_ase(atoms, label=f'lj{index}', role=role))
    return records


@pytest.fixture
def tiny_dataset():
    """A stored ``CrystalDatasetData`` of 16 small cells with energies and forces."""
    from aiida_crystalgan.data.dataset import CrystalDatasetData

    return CrystalDatasetData(lennard_jones_records()).store()
