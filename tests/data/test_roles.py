"""Roles of the structures in a ``CrystalDatasetData``: counts, selection, construction, export, old nodes and files;
and the split of records into minima and labelled data for training."""

from __future__ import annotations

import zipfile

import h5py
import pytest
from aiida import orm
from ase.build import bulk
from ase.io import read

from aiida_crystalgan.data.dataset import CrystalDatasetData, to_record
from aiida_crystalgan.gan.data import split_by_role
from aiida_crystalgan.io.datafile import LABELLED, MINIMUM, StructureRecord, write_datafile

ROLES = [MINIMUM, LABELLED, LABELLED, MINIMUM, LABELLED, LABELLED]


def make_records(roles=ROLES) -> list[StructureRecord]:
    """Rock-salt NbO records, one per role; the third has no energy."""
    records = []
    for i, role in enumerate(roles):
        atoms = bulk('NbO', 'rocksalt', a=4.2 + 0.01 * i)
        records.append(StructureRecord.from_ase(atoms, label=f's{i}', role=role))
        records[-1].energy = None if i == 2 else -20.0 - i
    return records


@pytest.fixture
def dataset() -> CrystalDatasetData:
    return CrystalDatasetData(make_records()).store()


def test_role_counts_are_queryable(dataset):
    reloaded = orm.load_node(dataset.pk)
    assert reloaded.roles == {'minimum': 2, 'labelled': 4}
    assert reloaded.num_minima == 2 and reloaded.num_labelled == 4
    found = (
        orm.QueryBuilder()
        .append(CrystalDatasetData, filters={'id': dataset.pk, 'attributes.num_minima': {'>': 0}})
        .count()
    )
    assert found == 1


def test_get_roles_and_records_by_role(dataset):
    assert dataset.get_roles().tolist() == ROLES
    assert [r.label for r in dataset.records(role='minimum')] == ['s0', 's3']
    assert [r.label for r in dataset.records(role=LABELLED)] == ['s1', 's2', 's4', 's5']
    assert len(list(dataset.records())) == 6
    assert dataset[3].role == MINIMUM
    with pytest.raises(ValueError, match='unknown structure role'):
        list(dataset.records(role='relaxed'))


def test_from_structures_roles():
    """One role for all, one per structure, or the role the structure carries (else labelled)."""
    structures = [bulk('Si', 'diamond', a=5.43), bulk('Cu', 'fcc', a=3.6)]
    assert CrystalDatasetData.from_structures(structures, roles='minimum').roles == {'minimum': 2, 'labelled': 0}
    mixed = CrystalDatasetData.from_structures(structures, roles=['labelled', 'minimum'])
    assert mixed.get_roles().tolist() == ['labelled', 'minimum']
    structures[0].info['role'] = 'minimum'
    carried = CrystalDatasetData.from_structures(structures)
    assert carried.get_roles().tolist() == ['minimum', 'labelled']
    with pytest.raises(ValueError, match='1 roles for 2 structures'):
        CrystalDatasetData.from_structures(structures, roles=['minimum'])
    with pytest.raises(ValueError, match='unknown structure role'):
        CrystalDatasetData.from_structures(structures, roles='ground-state')


def test_to_record_role():
    record = make_records()[0]
    assert to_record(record).role == MINIMUM
    assert to_record(record, role=LABELLED).role == LABELLED
    assert to_record(bulk('Si')).role == LABELLED
    assert to_record(orm.StructureData(ase=bulk('Si')), role=MINIMUM).role == MINIMUM


def test_export_writes_roles(dataset, tmp_path):
    """The role goes to the extxyz comment line (read back by ASE) and into a comment of every CIF."""
    frames = read(dataset.export(tmp_path / 'out.extxyz'), index=':')
    assert [frame.info['role'] for frame in frames] == ROLES
    assert [StructureRecord.from_ase(frame).role for frame in frames] == ROLES
    folder = dataset.export(tmp_path / 'cifs', fmt='cif')
    text = (folder / '000003_NbO.cif').read_text()
    assert text.startswith('# role: minimum\n') and '# label: s3\n' in text
    from pymatgen.core import Structure

    assert Structure.from_str(text, fmt='cif').composition.reduced_formula == 'NbO'
    with zipfile.ZipFile(dataset.export(tmp_path / 'cifs.zip', fmt='cif')) as archive:
        assert archive.read('000001_NbO.cif').decode().startswith('# role: labelled\n')


def test_version_1_file_and_old_node(tmp_path):
    """A file without roles is adopted with every structure labelled; a node without role attributes counts its
    structures as labelled."""
    path = tmp_path / 'v1.h5'
    write_datafile(path, make_records())
    with h5py.File(path, 'a') as handle:
        del handle['roles']
        handle.attrs['format_version'] = 1
    dataset = CrystalDatasetData(filepath=path)
    assert dataset.roles == {'minimum': 0, 'labelled': 6}
    assert set(dataset.get_roles()) == {LABELLED}
    for key in ('roles', 'num_minima', 'num_labelled'):
        dataset.base.attributes.delete(key)
    assert dataset.num_minima == 0 and dataset.num_labelled == 6


def test_split_by_role():
    """Minima are the ``minimum`` records; labelled data is every record with an energy, minima included."""
    records = make_records()
    minima, labelled = split_by_role(records)
    assert [r.label for r in minima] == ['s0', 's3']
    assert [r.label for r in labelled] == ['s0', 's1', 's3', 's4', 's5']
    assert split_by_role([]) == ([], [])
