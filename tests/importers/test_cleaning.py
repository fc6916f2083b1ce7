"""Cleaning: each filter drops what it must and reports why; the calcfunction keeps the provenance."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.importers.cleaning import (
    CleaningOptions,
    CleaningReport,
    build_dataset,
    deduplicate_minima,
    select_clean,
)
from aiida_crystalgan.importers.transforms import clean_dataset
from aiida_crystalgan.io.datafile import LABELLED, MINIMUM, StructureRecord


def rocksalt(
    a: float = 4.2,
    energy: float | None = -20.0,
    numbers=(41, 8),
    close: bool = False,
    label: str = '',
    role: str = LABELLED,
) -> StructureRecord:
    second = [0.3, 0, 0] if close else [a / 2, a / 2, a / 2]
    return StructureRecord(
        numbers=list(numbers),
        positions=[[0, 0, 0], second],
        cell=np.eye(3) * a,
        energy=energy,
        forces=np.zeros((2, 3)) if energy else None,
        source=label,
        label=label,
        role=role,
    )


@pytest.fixture
def records() -> list[StructureRecord]:
    return [
        rocksalt(label='ok'),
        rocksalt(energy=-20.5, label='duplicate-lower-energy'),
        rocksalt(a=4.0, label='smaller'),
        rocksalt(energy=None, label='no-energy'),
        rocksalt(numbers=(41, 9), label='fluoride'),
        rocksalt(close=True, label='too-close'),
        rocksalt(a=9.0, label='huge'),
    ]


def dataset_of(records) -> CrystalDatasetData:
    return CrystalDatasetData(records)


def test_default_options_only_check_distances(records):
    with dataset_of(records).open() as datafile:
        kept, report = select_clean(datafile, CleaningOptions())
    assert len(kept) == 6
    assert report.counts == {'min_distance': 1}
    assert report.dropped[0]['label'] == 'too-close' and 'Å apart' in report.dropped[0]['detail']


def test_all_filters(records):
    """Every filter reports its own reason; the duplicate with the lower energy is the one kept."""
    options = CleaningOptions(
        allowed_elements=['Nb', 'O'], require_energies=True, max_volume_per_atom=100.0, dedupe=True
    )
    with dataset_of(records).open() as datafile:
        kept, report = select_clean(datafile, options)
    reasons = {item['label']: item['reason'] for item in report.dropped}
    assert reasons == {
        'ok': 'duplicate',
        'no-energy': 'missing_energy',
        'fluoride': 'unsupported_element',
        'too-close': 'min_distance',
        'huge': 'volume',
        'smaller': 'duplicate',
    }
    assert kept == [1]
    assert report.summary() == (
        '1 of 7 structures kept; dropped: 2 duplicate, 1 min_distance, 1 missing_energy, '
        '1 unsupported_element, 1 volume'
    )


def test_volume_outlier():
    records = [rocksalt(a=4.2 + 0.01 * i, label=str(i)) for i in range(8)] + [rocksalt(a=6.0, label='outlier')]
    with dataset_of(records).open() as datafile:
        kept, report = select_clean(datafile, CleaningOptions(max_volume_zscore=5.0))
    assert len(kept) == 8 and report.dropped[0]['label'] == 'outlier'
    assert report.dropped[0]['reason'] == 'volume_outlier'


def test_build_dataset_report(records):
    """The report, with the options used, lands in the dataset metadata."""
    report = CleaningReport()
    report.num_input += 1
    report.drop('disordered', 'partial occupancies', source='x.cif')
    dataset = build_dataset(records, {'provider': 'test'}, CleaningOptions(require_energies=True), report)
    cleaning = dataset.metadata['cleaning']
    assert cleaning['num_input'] == 8 and cleaning['num_kept'] == dataset.size == 5
    assert cleaning['counts'] == {'disordered': 1, 'missing_energy': 1, 'min_distance': 1}
    assert cleaning['options']['require_energies'] is True
    with pytest.raises(ValueError, match='unknown cleaning options'):
        CleaningOptions.from_dict({'dedup': True})
    with pytest.raises(ValueError, match='unknown reason'):
        report.drop('ugly', '')


def test_clean_dataset_calcfunction(records):
    """Cleaning a stored dataset makes a new node linked to the parent, with the report."""
    parent = CrystalDatasetData(records, metadata={'provider': 'test'}).store()
    child = clean_dataset(parent, orm.Dict({'dedupe': True}))
    assert child.size == 3 and child.metadata['parent'] == parent.uuid
    assert child.metadata['provider'] == 'test'
    assert child.metadata['cleaning']['counts'] == {'min_distance': 1, 'duplicate': 3}
    assert child.creator.inputs.dataset.uuid == parent.uuid
    _, node = clean_dataset.run_get_node(parent, orm.Dict({'colour': 'red'}))
    assert node.exit_status == 300 and 'unknown cleaning options' in node.exit_message


def test_dedupe_keeps_roles_apart():
    """A minimum and a labelled copy of one structure are not duplicates; within a role the lowest energy is kept,
    and the kept records keep their roles."""
    records = [
        rocksalt(energy=-20.0, label='minimum-high', role=MINIMUM),
        rocksalt(energy=-20.5, label='labelled-low'),
        rocksalt(a=4.1, energy=-21.0, label='minimum-low', role=MINIMUM),
        rocksalt(energy=-19.0, label='labelled-high'),
    ]
    dataset = build_dataset(records, options=CleaningOptions(dedupe=True))
    assert [(r.label, r.role) for r in dataset] == [('labelled-low', LABELLED), ('minimum-low', MINIMUM)]
    assert dataset.roles == {'minimum': 1, 'labelled': 1}
    reasons = {item['label']: item['detail'] for item in dataset.metadata['cleaning']['dropped']}
    assert reasons == {'minimum-high': 'equivalent to structure 2', 'labelled-high': 'equivalent to structure 1'}


def test_deduplicate_minima():
    """Equivalent minima merge across cell sizes (primitive and conventional rock salt), keeping the lowest energy per
    atom; another polymorph and another formula stay; a group without energies keeps its first member."""
    from ase.build import bulk

    def minimum(atoms, energy_per_atom, label):
        record = StructureRecord.from_ase(atoms, label=label, role=MINIMUM)
        record.energy = None if energy_per_atom is None else energy_per_atom * record.num_atoms
        return record

    records = [
        minimum(bulk('NbO', 'rocksalt', a=4.2), -10.0, 'rocksalt-primitive'),
        minimum(bulk('NbO', 'cesiumchloride', a=2.6), -9.0, 'cscl'),
        minimum(bulk('NbO', 'rocksalt', a=4.2, cubic=True), -10.2, 'rocksalt-conventional'),
        minimum(bulk('TiO', 'rocksalt', a=4.2), None, 'tio-a'),
        minimum(bulk('NbO', 'rocksalt', a=4.21), -10.1, 'rocksalt-strained'),
        minimum(bulk('TiO', 'rocksalt', a=4.2, cubic=True), None, 'tio-b'),
    ]
    kept, replaced = deduplicate_minima(records)
    assert [records[i].label for i in kept] == ['cscl', 'rocksalt-conventional', 'tio-a']
    assert replaced == {0: 2, 4: 2, 5: 3}
    assert deduplicate_minima([]) == ([], {})
    kept, replaced = deduplicate_minima(records, ltol=0.0001, stol=0.0001, angle_tol=0.01)
    assert 4 in kept
