"""Tiny structures for the GAN tests, built in memory (no dependency on shared data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord, write_datafile


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


def rocksalt(a: float, numbers=(41, 8)) -> StructureRecord:
    """A conventional rock-salt cell (8 atoms) with lattice constant ``a``."""
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    frac = np.concatenate([base, base + 0.5]) % 1.0
    cell = np.eye(3) * a
    return StructureRecord(numbers=[numbers[0]] * 4 + [numbers[1]] * 4, positions=frac @ cell, cell=cell)


def tiny_records(count: int = 24, seed: int = 0, rattle: float = 0.02) -> list[StructureRecord]:
    """Rattled, strained NbO / NbO2-like cells with a smooth pair-potential energy and its forces; the first half
    (both compositions) are ``minimum`` records, the rest ``labelled``. Fractional coordinates are rattled by
    ``rattle`` (standard deviation)."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        if index % 2:
            base = rocksalt(4.2 + 0.2 * rng.random())
            numbers, frac0, cell = base.numbers, base.positions @ np.linalg.inv(base.cell), base.cell
        else:
            cell = np.diag([4.6, 4.6, 3.0]) * (1 + 0.05 * rng.random())
            frac0 = np.array(
                [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]]
            )
            numbers = np.array([41, 41, 8, 8, 8, 8])
        cell = cell + 0.05 * rng.standard_normal((3, 3))
        positions = (frac0 + rattle * rng.standard_normal(frac0.shape)) @ cell
        energy, forces = pair_energy(numbers, positions, cell)
        records.append(
            StructureRecord(
                numbers=numbers,
                positions=positions,
                cell=cell,
                energy=energy,
                forces=forces,
                label=f'tiny-{index}',
                source='test',
                role=MINIMUM if index < count // 2 else LABELLED,
            )
        )
    return records


def pair_energy(numbers, positions, cell) -> tuple[float, np.ndarray]:
    """A Morse-like pair potential over neighbours within 5 Å, plus element reference energies (eV, eV/Å)."""
    energy = float(np.sum(np.where(np.asarray(numbers) == 8, -4.0, -10.0)))
    forces = np.zeros_like(positions)
    shifts = np.array(np.meshgrid(*[range(-2, 3)] * 3)).reshape(3, -1).T @ cell
    for i in range(len(positions)):
        for j in range(len(positions)):
            vectors = positions[j] + shifts - positions[i]
            distance = np.linalg.norm(vectors, axis=1)
            near = (distance > 1e-8) & (distance < 5.0)
            r = distance[near]
            x = np.exp(-1.5 * (r - 2.1))
            energy += 0.5 * np.sum(x * x - 2 * x)
            derivative = -3.0 * x * x + 3.0 * x
            forces[i] += np.sum(derivative[:, None] * vectors[near] / r[:, None], axis=0)
    return energy, forces


@pytest.fixture(scope='session')
def make_records():
    """The builder of tiny labelled structures, for fixtures with a wider scope."""
    return tiny_records


@pytest.fixture(scope='session')
def pair_potential():
    """The pair potential that labels the tiny structures: ``(numbers, positions, cell) -> (energy, forces)``."""
    return pair_energy


@pytest.fixture
def records():
    return tiny_records()


@pytest.fixture
def dataset_file(tmp_path, records):
    path = tmp_path / 'dataset.h5'
    write_datafile(path, records)
    return path
