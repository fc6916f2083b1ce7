"""Augmentation and split calcfunctions: physics-preserving copies, substitution, reproducible splits."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.importers.augment import (
    AugmentOptions,
    augment_records,
    permute,
    substitute,
    supercells,
    translate,
)
from aiida_crystalgan.importers.transforms import augment_dataset, split_dataset
from aiida_crystalgan.io.datafile import LABELLED, MINIMUM, StructureRecord


def rutile(elements=('Nb', 'O'), energy: float | None = -60.0, role: str = LABELLED) -> StructureRecord:
    structure = Structure.from_spacegroup(
        'P4_2/mnm', Lattice.tetragonal(4.85, 3.03), list(elements), [[0, 0, 0], [0.29, 0.29, 0]]
    )
    forces = np.random.default_rng(0).normal(size=(len(structure), 3))
    return StructureRecord.from_pymatgen(structure, energy=energy, forces=forces, label='rutile', role=role)


def sorted_distances(record: StructureRecord) -> np.ndarray:
    return np.sort(record.to_pymatgen().distance_matrix.ravel())


def test_supercells():
    """Supercells scale the energy, tile the forces, and respect the atom limit."""
    record = rutile()
    cells = supercells(record, max_atoms=24, count=10)
    assert [cell.label for cell in cells] == [
        'rutile+2x1x1',
        'rutile+1x2x1',
        'rutile+1x1x2',
        'rutile+3x1x1',
        'rutile+1x3x1',
        'rutile+1x1x3',
        'rutile+2x2x1',
        'rutile+2x1x2',
        'rutile+1x2x2',
    ]
    double = cells[2]
    assert double.num_atoms == 12 and double.energy == pytest.approx(-120.0)
    assert np.allclose(double.forces, np.tile(record.forces, (2, 1)))
    assert double.to_pymatgen().matches(record.to_pymatgen())


def test_translate_and_permute():
    """Translations and permutations keep distances, energy and the force on each atom."""
    record = rutile()
    rng = np.random.default_rng(1)
    moved = translate(record, rng)
    assert np.allclose(sorted_distances(moved), sorted_distances(record))
    assert not np.allclose(moved.positions, record.positions)
    shuffled = permute(record, rng)
    order = [int(np.flatnonzero(np.all(np.isclose(record.positions, p), axis=1))[0]) for p in shuffled.positions]
    assert np.allclose(shuffled.forces, record.forces[order])
    assert (shuffled.numbers == record.numbers[order]).all() and shuffled.energy == record.energy


def test_substitute():
    """Ta-O prototypes become Nb-O structures (data-mined substitution probability); no energy survives."""
    record, detail = substitute(rutile(('Ta', 'O')), ['Nb', 'O'])
    assert record.to_pymatgen().composition.reduced_formula == 'NbO2'
    assert record.energy is None and record.forces is None
    assert detail == 'Ta->Nb (probability 0.0122)'
    assert substitute(rutile(), ['Nb', 'O']) == (None, "already made of ['Nb', 'O']")
    record, detail = substitute(rutile(('Ta', 'O')), ['Ar', 'O'])
    assert record is None and 'no substitution' in detail


def test_augment_records_deterministic():
    options = AugmentOptions(supercell_max_atoms=12, supercells_per_structure=1, translations=2, permutations=1, seed=5)
    first = list(augment_records([rutile()], options))
    assert [r.label for r in first] == [
        'rutile',
        'rutile+2x1x1',
        'rutile+t0',
        'rutile+t1',
        'rutile+p0',
        'rutile+2x1x1+t0',
        'rutile+2x1x1+t1',
        'rutile+2x1x1+p0',
    ]
    second = list(augment_records([rutile()], options))
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(first, second))


def test_augment_keeps_roles():
    """Every copy keeps its parent's role: copies of a minimum are minima, substituted prototypes included."""
    options = AugmentOptions(supercell_max_atoms=12, supercells_per_structure=1, translations=1, permutations=1)
    augmented = list(augment_records([rutile(role=MINIMUM), rutile()], options))
    assert len(augmented) == 12
    assert [r.role for r in augmented] == [MINIMUM] * 6 + [LABELLED] * 6
    options = AugmentOptions(substitution_elements=['Nb', 'O'], translations=1)
    substituted = list(augment_records([rutile(('Ta', 'O'), role=MINIMUM), rutile(('Ta', 'O'))], options))
    assert [(r.role, r.energy) for r in substituted] == [(MINIMUM, None)] * 2 + [(LABELLED, None)] * 2


def test_augment_dataset_calcfunction():
    parent = CrystalDatasetData([rutile(('Ta', 'O')), rutile(('Xe', 'O'), energy=None)]).store()
    options = {'substitution_elements': ['Nb', 'O'], 'translations': 1, 'seed': 3}
    child = augment_dataset(parent, orm.Dict(options))
    assert child.size == 2 and child.elements == ['Nb', 'O']
    augmentation = child.metadata['augmentation']
    assert augmentation['options']['substitution_elements'] == ['Nb', 'O']
    assert augmentation['dropped'][0]['index'] == 1
    assert child.creator.inputs.parameters.get_dict() == options
    _, node = augment_dataset.run_get_node(parent, orm.Dict({'rotate': True}))
    assert node.exit_status == 300


def test_split_dataset_calcfunction():
    """Splits of a stored dataset come from a calcfunction, reproducible with the seed."""
    parent = CrystalDatasetData([rutile()] * 20, metadata={'provider': 'test'}).store()
    parameters = {'fractions': [0.7, 0.15, 0.15], 'seed': 11, 'folds': 4}
    first, second = split_dataset(parent, orm.Dict(parameters)), split_dataset(parent, orm.Dict(parameters))
    assert first.get_split('train') == second.get_split('train') and len(first.get_split('train')) == 14
    assert first.get_fold(3) == second.get_fold(3) and first.num_folds == 4
    assert first.metadata == {'provider': 'test', 'parent': parent.uuid}
    assert first.size == 20
    _, node = split_dataset.run_get_node(parent, orm.Dict({'seed': 1}))
    assert node.exit_status == 300 and 'fractions' in node.exit_message
