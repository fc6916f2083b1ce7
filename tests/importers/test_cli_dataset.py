"""The ``dataset`` command group, run with click's ``CliRunner``."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from click.testing import CliRunner

from aiida_crystalgan.cli.dataset import dataset
from aiida_crystalgan.data.dataset import CrystalDatasetData


def run(*args: str, expect_ok: bool = True):
    result = CliRunner().invoke(dataset, [str(arg) for arg in args], catch_exceptions=False)
    assert (result.exit_code == 0) is expect_ok, result.output
    return result


def last_dataset() -> CrystalDatasetData:
    builder = orm.QueryBuilder().append(CrystalDatasetData, tag='d').order_by({'d': {'ctime': 'desc'}})
    return builder.first()[0]


@pytest.fixture
def extxyz(tmp_path):
    frames = []
    for i in range(8):
        atoms = bulk('NbO', 'rocksalt', a=4.2 + 0.02 * i) if i % 2 else bulk('Nb', 'bcc', a=3.3 + 0.02 * i)
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 * len(atoms) + 0.1 * i, forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    frames[3].positions[1] = frames[3].positions[0] + [0.2, 0, 0]
    path = tmp_path / 'train.extxyz'
    write(path, frames, format='extxyz')
    return path


def test_import_files_show_export_stats(extxyz, tmp_path):
    """Import with cleaning, then show, export in every format and plot."""
    result = run('import', 'files', extxyz, '--splits', 0.5, 0.25, 0.25, '--seed', 3, '-L', 'nbo-train')
    assert 'dropped train.extxyz:3: min_distance' in result.output
    assert '7 structures (7 of 8 kept; 0 minima, 7 labelled)' in result.output
    node = last_dataset()
    assert node.label == 'nbo-train' and len(node.get_split('train')) == 3

    result = run('show', node.pk, '--dropped')
    assert 'elements                         Nb O' in result.output
    assert 'roles                            0 minima, 7 labelled' in result.output
    assert '7 of 8 kept; dropped: 1 min_distance' in result.output
    assert 'train 3, validation 2, test 2' in result.output

    run('export', node.pk, tmp_path / 'out.extxyz')
    run('export', node.pk, tmp_path / 'out.extxyz', expect_ok=False)
    run('export', node.pk, tmp_path / 'cifs.zip', '-F', 'cif')
    run('export', node.pk, tmp_path / 'raw.h5', '-F', 'h5')
    assert all((tmp_path / name).exists() for name in ('out.extxyz', 'cifs.zip', 'raw.h5'))

    result = run('stats', node.pk, '-o', tmp_path / 'plots')
    assert 'structures: 7 (0 minima, 7 labelled)' in result.output and 'energy per atom (eV): -10.0000' in result.output
    assert sorted(p.name for p in (tmp_path / 'plots').iterdir()) == [
        'compositions.png',
        'energy_per_atom.png',
        'volume_per_atom.png',
    ]


def test_clean_and_split(extxyz):
    run('import', 'files', extxyz, '--no-clean')
    parent = last_dataset()
    assert parent.size == 8
    run('clean', parent.pk, '--max-volume-per-atom', 20.0)
    cleaned = last_dataset()
    assert cleaned.size == 6 and cleaned.metadata['parent'] == parent.uuid
    run('split', cleaned.pk, '--fractions', 0.5, 0.5, 0.0, '--folds', 3)
    split = last_dataset()
    assert split.num_folds == 3 and split.get_split('test') == []
    result = run('split', cleaned.pk, '--seed', 2, expect_ok=False)
    assert 'give `fractions`' in result.output


def test_import_group():
    group = orm.Group(label='cli-structures').store()
    group.add_nodes([orm.StructureData(ase=bulk('Nb', 'bcc', a=3.3)).store()])
    target = orm.Group(label='cli-datasets').store()
    run('import', 'group', 'cli-structures', '-G', 'cli-datasets')
    assert last_dataset().uuid in {node.uuid for node in target.nodes}


def test_import_optimade(provider):
    url = f'http://127.0.0.1:{provider.server_port}'
    result = run('import', 'optimade', url, '-e', 'Nb,O', '--page-limit', 2)
    assert 'elements HAS ONLY "Nb", "O"' in result.output and 'dropped oqmd-99999: disordered' in result.output
    assert last_dataset().size == 3 and last_dataset().num_minima == 3
    run('import', 'optimade', url, '-e', 'Nb,O', '--role', 'labelled')
    assert last_dataset().roles == {'minimum': 0, 'labelled': 3}
    result = run('import', 'optimade', url, '--filter', 'nonsense_property=1', expect_ok=False)
    assert 'HTTP 400' in result.output


def test_import_errors(tmp_path):
    (tmp_path / 'bad.cif').write_text('not a cif')
    result = run('import', 'files', tmp_path / 'bad.cif', expect_ok=False)
    assert 'bad.cif: cannot read as cif' in result.output


def test_import_role(extxyz):
    """``--role`` sets the role of every imported structure; only the known roles are accepted."""
    result = run('import', 'files', extxyz, '--role', 'minimum')
    assert '(7 of 8 kept; 7 minima, 0 labelled)' in result.output
    assert set(last_dataset().get_roles()) == {'minimum'}
    result = run('import', 'files', extxyz, '--role', 'relaxed', expect_ok=False)
    assert "Invalid value for '--role'" in result.output
