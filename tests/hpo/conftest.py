"""Tiny grouped data for the search tests: four 'trajectories' of labelled frames plus minima, with LJ energies."""

from __future__ import annotations

import numpy as np
import pytest

#: The smallest training that still runs every part of a trial (a few steps, tiny networks).
TINY_CONFIG = {
    'steps': 4,
    'batch_size': 4,
    'n_max': 4,
    'cutoff': 4.0,
    'num_rbf': 4,
    'latent_dim': 4,
    'generator_width': 8,
    'generator_depth': 1,
    'critic_width': 8,
    'critic_depth': 1,
    'physics_width': 8,
    'physics_depth': 1,
    'critic_steps': 1,
    'log_every': 2,
    'physics_warmup_steps': 1,
}


def grouped_records(trajectories: int = 4, frames: int = 3, seed: int = 0):
    """``frames`` rattled frames per trajectory (source ``traj<i>``, role labelled) and one relaxed-looking minimum
    per trajectory (role minimum, same source), alternating NbO rock salt and bcc Nb."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord

    rng = np.random.default_rng(seed)
    records = []
    for trajectory in range(trajectories):
        for frame in range(frames + 1):
            if trajectory % 2:
                atoms = bulk('Nb', 'bcc', a=3.3, cubic=True)
            else:
                atoms = bulk('NbO', 'rocksalt', a=4.3)
                atoms.set_chemical_symbols(['Nb', 'O'])
            minimum = frame == frames
            if not minimum:
                atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
            atoms.calc = LennardJones(sigma=2.3, epsilon=0.1, rc=6.0)
            atoms.get_forces()
            role = MINIMUM if minimum else LABELLED
            records.append(
                StructureRecord.from_ase(
                    atoms, source=f'traj{trajectory}', role=role, label=f'traj{trajectory}-{frame}'
                )
            )
    return records


@pytest.fixture(scope='session')
def make_grouped_records():
    return grouped_records


@pytest.fixture
def grouped_dataset():
    """A stored ``CrystalDatasetData`` of 4 sources x 4 structures (3 labelled frames and 1 minimum each)."""
    from aiida_crystalgan.data.dataset import CrystalDatasetData

    return CrystalDatasetData(grouped_records()).store()


@pytest.fixture
def tiny_config():
    return dict(TINY_CONFIG)
