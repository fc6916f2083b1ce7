"""Tests of the dataset file format: the per-structure roles, their round trip and files of format version 1."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aiida_crystalgan.io.datafile import (
    FORMAT_VERSION,
    LABELLED,
    MINIMUM,
    ROLES,
    DataFile,
    StructureRecord,
    check_role,
    read_datafile,
    write_datafile,
)


def record(role: str = LABELLED, label: str = '') -> StructureRecord:
    return StructureRecord(
        numbers=[41, 8],
        positions=[[0, 0, 0], [2.1, 2.1, 2.1]],
        cell=np.eye(3) * 4.2,
        energy=-20.0,
        forces=np.zeros((2, 3)),
        label=label,
        role=role,
    )


def test_roles_are_minimum_and_labelled():
    assert ROLES == ('minimum', 'labelled')
    assert check_role('minimum') == MINIMUM
    with pytest.raises(ValueError, match="unknown structure role 'relaxed': choose one of minimum, labelled"):
        check_role('relaxed')


def test_record_role_default_and_validation():
    assert record().role == LABELLED
    assert StructureRecord(numbers=[1], positions=[[0, 0, 0]], cell=np.eye(3)).role == 'labelled'
    with pytest.raises(ValueError, match='unknown structure role'):
        record(role='Minimum')


def test_roles_round_trip(tmp_path):
    """Roles survive writing and reading, by iteration, by index and as a column, across read blocks."""
    roles = [MINIMUM, LABELLED, LABELLED, MINIMUM, LABELLED]
    path = tmp_path / 'roles.h5'
    write_datafile(path, [record(role, f'r{i}') for i, role in enumerate(roles)])
    with h5py.File(path, 'r') as handle:
        assert handle.attrs['format_version'] == FORMAT_VERSION == 2
        assert handle['roles'].dtype == np.int8 and h5py.check_enum_dtype(handle['roles'].dtype) == {
            'minimum': 0,
            'labelled': 1,
        }
    assert [r.role for r in read_datafile(path)] == roles
    with DataFile(path) as datafile:
        datafile._BLOCK = 2
        assert datafile.format_version == 2
        assert [r.role for r in datafile] == roles
        assert datafile[3].role == MINIMUM and datafile[-1].role == LABELLED
        assert datafile.roles().tolist() == roles


def test_roles_round_trip_through_ase_and_pymatgen():
    """``to_ase``/``from_ase`` keep the role in ``atoms.info``; an explicit role wins; pymatgen gets it as property."""
    atoms = record(MINIMUM).to_ase()
    assert atoms.info['role'] == MINIMUM
    assert StructureRecord.from_ase(atoms).role == MINIMUM
    assert StructureRecord.from_ase(atoms, role=LABELLED).role == LABELLED
    del atoms.info['role']
    assert StructureRecord.from_ase(atoms).role == LABELLED
    structure = record(MINIMUM).to_pymatgen()
    assert structure.properties['role'] == MINIMUM
    assert StructureRecord.from_pymatgen(structure, role=MINIMUM).role == MINIMUM
    assert StructureRecord.from_pymatgen(structure).role == LABELLED


def write_version_1(path) -> None:
    """A file as written before roles existed: no ``roles`` dataset, format version 1."""
    write_datafile(path, [record(MINIMUM, 'a'), record(MINIMUM, 'b')], metadata={'provider': 'old'})
    with h5py.File(path, 'a') as handle:
        del handle['roles']
        handle.attrs['format_version'] = 1


def test_version_1_files_read_as_labelled(tmp_path):
    path = tmp_path / 'v1.h5'
    write_version_1(path)
    with DataFile(path) as datafile:
        assert datafile.format_version == 1 and datafile.metadata == {'provider': 'old'}
        assert [r.role for r in datafile] == [LABELLED, LABELLED]
        assert datafile[1].label == 'b' and datafile[1].role == LABELLED
        assert datafile.roles().tolist() == [LABELLED, LABELLED]


def test_unsupported_version_and_bad_codes(tmp_path):
    path = tmp_path / 'future.h5'
    write_datafile(path, [record()])
    with h5py.File(path, 'a') as handle:
        handle.attrs['format_version'] = 3
    with pytest.raises(ValueError, match='unsupported dataset file format version 3'):
        DataFile(path)
    with h5py.File(path, 'a') as handle:
        handle.attrs['format_version'] = 2
        handle['roles'][0] = 5
    with DataFile(path) as datafile, pytest.raises(ValueError, match='invalid role codes'):
        datafile.roles()
