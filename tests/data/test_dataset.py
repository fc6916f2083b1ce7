"""Tests of ``CrystalDatasetData``: construction, storage, lazy access, export, splits and folds."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from aiida import orm
from aiida.common.exceptions import ModificationNotAllowed
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.data.dataset import CrystalDatasetData, compute_folds, compute_splits
from aiida_crystalgan.io.datafile import DataFile, StructureRecord, write_datafile


def make_records(count: int = 10, with_energies: bool = True) -> list[StructureRecord]:
    """``count`` small rock-salt / rutile-like records with energies and forces."""
    rng = np.random.default_rng(42)
    records = []
    for i in range(count):
        numbers = [41, 8] if i % 2 else [22, 8, 8]
        positions = rng.random((len(numbers), 3)) * 3.0
        records.append(
            StructureRecord(
                numbers=numbers,
                positions=positions,
                cell=np.eye(3) * (3.0 + 0.1 * i),
                energy=-5.0 * len(numbers) - 0.01 * i if with_energies else None,
                forces=rng.normal(size=(len(numbers), 3)) if with_energies else None,
                source=f'src-{i // 2}',
                label=f'frame-{i}',
            )
        )
    return records


@pytest.fixture
def dataset() -> CrystalDatasetData:
    return CrystalDatasetData(make_records(), metadata={'provider': 'test'}).store()


def test_attributes(dataset):
    """The queryable attributes summarise the file."""
    attributes = dataset.base.attributes.all
    assert attributes['size'] == 10 == len(dataset)
    assert attributes['num_atoms_total'] == 25
    assert attributes['elements'] == ['Nb', 'O', 'Ti']
    assert attributes['compositions'] == {'NbO': 5, 'TiO2': 5}
    assert attributes['has_energies'] and attributes['has_forces'] and not attributes['has_stress']
    assert attributes['sources_count'] == 5
    assert attributes['metadata'] == {'provider': 'test'}
    assert attributes['file_size'] > 0
    stats = attributes['energy_per_atom']
    assert stats['min'] <= stats['mean'] <= stats['max'] and stats['std'] >= 0
    assert stats['max'] == pytest.approx(-5.0)


def test_reload_and_lazy_access(dataset):
    """A reloaded node gives the same records, by index, slice and iteration."""
    reloaded = orm.load_node(dataset.pk)
    assert isinstance(reloaded, CrystalDatasetData)
    original = make_records()
    record = reloaded[3]
    assert np.allclose(record.positions, original[3].positions)
    assert record.energy == pytest.approx(original[3].energy)
    assert np.allclose(record.forces, original[3].forces)
    assert record.source == 'src-1' and record.label == 'frame-3'
    assert reloaded[-1].label == 'frame-9'
    assert [r.label for r in reloaded[2:5]] == ['frame-2', 'frame-3', 'frame-4']
    assert [r.label for r in reloaded[[7, 1]]] == ['frame-7', 'frame-1']
    assert len(list(reloaded)) == 10
    with reloaded.open() as datafile:
        assert len(datafile) == 10
        assert datafile.metadata == {'provider': 'test'}
    with pytest.raises(IndexError):
        reloaded[10]
    assert np.allclose(reloaded.get_num_atoms(), [3, 2] * 5)


def test_conversions(dataset):
    """Records convert to pymatgen, ASE and unstored StructureData."""
    structure = dataset.get_structure(1)
    assert structure.composition.reduced_formula == 'NbO'
    assert structure.properties['energy'] == pytest.approx(-10.01)
    atoms = dataset.get_atoms(0)
    assert atoms.get_potential_energy() == pytest.approx(-15.0)
    assert atoms.get_forces().shape == (3, 3)
    node = dataset.get_structuredata(0)
    assert not node.is_stored and node.get_formula() == 'O2Ti'


def test_from_structures():
    """StructureData, pymatgen and ASE inputs mix; the source of a StructureData defaults to its UUID."""
    atoms = bulk('Si', 'diamond', a=5.43)
    atoms.calc = SinglePointCalculator(atoms, energy=-10.8, forces=np.zeros((2, 3)))
    node = orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6)).store()
    structure = Structure(Lattice.cubic(4.2), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    dataset = CrystalDatasetData.from_structures(
        [atoms, node, structure],
        energies=[None, -3.7, -20.0],
        labels=['si', 'cu', 'nbo'],
    )
    assert dataset.size == 3
    assert dataset[0].energy == pytest.approx(-10.8)
    assert dataset[1].source == node.uuid and dataset[1].energy == pytest.approx(-3.7)
    assert dataset[2].to_pymatgen().composition.reduced_formula == 'NbO'
    assert dataset.base.attributes.get('has_forces') is False
    assert dataset.base.attributes.get('num_with_forces') == 1


def test_from_filepath(tmp_path):
    """An existing dataset file is copied; its metadata is merged with the given one."""
    path = tmp_path / 'in.h5'
    write_datafile(path, make_records(4), metadata={'provider': 'file'})
    dataset = CrystalDatasetData(filepath=path, metadata={'query': 'x'}).store()
    assert dataset.size == 4
    assert dataset.metadata == {'provider': 'file', 'query': 'x'}
    with dataset.open() as datafile:
        assert datafile.metadata == {'provider': 'file', 'query': 'x'}


def test_block_iteration_matches_indexing(tmp_path, monkeypatch):
    """Iterating block by block gives exactly the records of indexing one by one, across block boundaries."""
    monkeypatch.setattr(DataFile, '_BLOCK', 3)
    records = make_records(10)
    records[4].stress = np.eye(3)
    path = tmp_path / 'data.h5'
    write_datafile(path, records)
    with DataFile(path) as datafile:
        for index, (record, original) in enumerate(zip(datafile, records)):
            indexed = datafile[index]
            for a in (record, indexed):
                assert (a.numbers == original.numbers).all() and np.array_equal(a.positions, original.positions)
                assert np.array_equal(a.cell, original.cell) and a.energy == original.energy
                assert np.array_equal(a.forces, original.forces)
                assert (a.stress is None) == (original.stress is None)
                assert (a.source, a.label) == (original.source, original.label)
        assert datafile[4].stress is not None and datafile[-1].label == 'frame-9'
        with pytest.raises(IndexError):
            datafile[10]


@pytest.mark.parametrize(
    'kwargs, message',
    [
        ({'structures': []}, 'empty'),
        ({'structures': [bulk('Si')] * 2, 'energies': [1.0]}, '1 energies for 2 structures'),
        ({'structures': ['Si']}, 'cannot convert str'),
    ],
)
def test_invalid_input(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        CrystalDatasetData.from_structures(**kwargs)


def test_invalid_constructor(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        CrystalDatasetData([])
    with pytest.raises(ValueError, match='either'):
        CrystalDatasetData()
    bad = tmp_path / 'bad.h5'
    bad.write_text('not hdf5')
    with pytest.raises(ValueError, match='not a crystalgan dataset file'):
        CrystalDatasetData(filepath=bad)


def test_write_file_and_export(dataset, tmp_path):
    """The raw file round-trips; extxyz keeps energies and forces; CIFs go to a folder or a zip."""
    with DataFile(dataset.write_file(tmp_path / 'copy.h5')) as datafile:
        assert len(datafile) == 10

    from ase.io import read

    frames = read(dataset.export(tmp_path / 'out.extxyz'), index=':')
    assert len(frames) == 10
    assert frames[4].get_potential_energy() == pytest.approx(dataset[4].energy)
    assert np.allclose(frames[4].get_forces(), dataset[4].forces)

    folder = dataset.export(tmp_path / 'cifs', fmt='cif')
    assert len(list(folder.glob('*.cif'))) == 10
    assert Structure.from_file(folder / '000001_NbO.cif').composition.reduced_formula == 'NbO'
    with zipfile.ZipFile(dataset.export(tmp_path / 'cifs.zip', fmt='cif')) as archive:
        assert len(archive.namelist()) == 10
    with pytest.raises(ValueError, match='unknown export format'):
        dataset.export(tmp_path / 'x', fmt='pdb')


def test_splits_reproducible():
    """Splits are a seeded partition; the same seed gives the same split, another seed another one."""
    splits = compute_splits(100, (0.8, 0.1, 0.1), seed=3)
    assert [len(splits[name]) for name in ('train', 'validation', 'test')] == [80, 10, 10]
    assert sorted(sum(splits.values(), [])) == list(range(100))
    assert compute_splits(100, seed=3) == splits
    assert compute_splits(100, seed=4) != splits
    with pytest.raises(ValueError, match='summing to 1'):
        compute_splits(10, (0.5, 0.1, 0.1))


def test_splits_grouped():
    """With keys, structures of one group stay in one split."""
    keys = [f'traj-{i // 10}' for i in range(100)]
    splits = compute_splits(100, (0.6, 0.2, 0.2), seed=0, keys=keys)
    for indices in splits.values():
        groups = {keys[i] for i in indices}
        assert sum(keys.count(group) for group in groups) == len(indices)


def test_folds():
    folds = compute_folds(23, 5, seed=1)
    assert sorted(sum(folds, [])) == list(range(23))
    assert {len(fold) for fold in folds} <= {4, 5}
    assert compute_folds(23, 5, seed=1) == folds
    with pytest.raises(ValueError, match='between 2'):
        compute_folds(3, 5)


def test_splits_on_node():
    """Splits and folds are set before storing, survive storing, and are refused afterwards."""
    dataset = CrystalDatasetData(make_records(), splits=(0.6, 0.2, 0.2), folds=5, seed=7, group_by='source')
    dataset.store()
    reloaded = orm.load_node(dataset.pk)
    train, val, test = (reloaded.get_split(name) for name in ('train', 'val', 'test'))
    assert sorted(train + val + test) == list(range(10))
    sources = [record.source for record in reloaded]
    assert not {sources[i] for i in train} & {sources[i] for i in val + test}
    assert reloaded.num_folds == 5
    fold_train, fold_val = reloaded.get_fold(2)
    assert sorted(fold_train + fold_val) == list(range(10))
    assert reloaded.base.attributes.get('split_options')['seed'] == 7
    with pytest.raises(ModificationNotAllowed):
        reloaded.set_splits()
    with pytest.raises(ValueError, match='unknown split'):
        reloaded.get_split('holdout')


def test_no_splits(dataset):
    with pytest.raises(AttributeError, match='no splits'):
        dataset.get_split('train')
    with pytest.raises(AttributeError, match='no folds'):
        dataset.get_fold(0)


def test_disordered_structuredata():
    node = orm.StructureData(cell=np.eye(3) * 3)
    node.append_atom(position=(0, 0, 0), symbols=['Nb', 'Ti'], weights=[0.5, 0.5])
    with pytest.raises(ValueError, match='disordered'):
        CrystalDatasetData.from_structures([node])


def test_ase_atoms_without_calculator():
    dataset = CrystalDatasetData.from_structures([Atoms('NbO', positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 3])])
    assert dataset.base.attributes.get('has_energies') is False
    assert 'energy_per_atom' not in dataset.base.attributes.all
