"""Import of structure files: CIF, POSCAR, extxyz with energies and forces, VASP outputs; clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.importers.files import FileImportError, detect_format, import_files, iter_file_records

VASP_DATA = Path('/work/shared/data/vasp-outputs_aiida-vasp')


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A CIF, a POSCAR and a 3-frame extxyz with energies and forces."""
    rutile = Structure.from_spacegroup(
        'P4_2/mnm', Lattice.tetragonal(4.85, 3.03), ['Nb', 'O'], [[0, 0, 0], [0.29, 0.29, 0]]
    )
    rutile.to(filename=str(tmp_path / 'NbO2.cif'))
    write(tmp_path / 'POSCAR', bulk('Nb', 'bcc', a=3.3), format='vasp')
    frames = []
    for i in range(3):
        atoms = bulk('NbO', 'rocksalt', a=4.2 + 0.01 * i)
        atoms.calc = SinglePointCalculator(atoms, energy=-20.0 + i, forces=np.full((2, 3), 0.1 * i))
        frames.append(atoms)
    write(tmp_path / 'md.extxyz', frames, format='extxyz')
    return {'cif': tmp_path / 'NbO2.cif', 'poscar': tmp_path / 'POSCAR', 'extxyz': tmp_path / 'md.extxyz'}


@pytest.mark.parametrize(
    'name, fmt',
    [
        ('a.cif', 'cif'),
        ('b.CIF.gz', 'cif'),
        ('POSCAR', 'poscar'),
        ('CONTCAR_3', 'poscar'),
        ('x.vasp', 'poscar'),
        ('t.extxyz', 'extxyz'),
        ('t.xyz.gz', 'extxyz'),
        ('vasprun.xml', 'vasprun'),
        ('OUTCAR.bz2', 'outcar'),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(Path(name)) == fmt


def test_records(files):
    """Each reader gives records; extxyz keeps energies and forces."""
    (cif,) = iter_file_records(files['cif'])
    assert cif.num_atoms == 6 and sorted(cif.numbers) == [8, 8, 8, 8, 41, 41]
    assert cif.source == str(files['cif'])
    (poscar,) = iter_file_records(files['poscar'])
    assert poscar.num_atoms == 1 and poscar.energy is None
    frames = list(iter_file_records(files['extxyz']))
    assert [frame.energy for frame in frames] == [-20.0, -19.0, -18.0]
    assert np.allclose(frames[2].forces, 0.2)
    assert [frame.label for frame in iter_file_records(files['extxyz'], index='-1')] == ['md.extxyz:0']


def test_import_files(files, tmp_path):
    """Files and directories import into one dataset that records the files read."""
    (tmp_path / 'README.md').write_text('not a structure')
    dataset = import_files([tmp_path], splits=(0.6, 0.2, 0.2), seed=1).store()
    assert dataset.metadata['skipped_files'] == [str(tmp_path / 'README.md')]
    assert dataset.size == 5
    assert dataset.compositions == {'Nb': 1, 'NbO': 3, 'NbO2': 1}
    assert dataset.base.attributes.get('num_with_energies') == 3
    assert sorted(dataset.metadata['files']) == sorted(str(path) for path in files.values())
    assert dataset.metadata['cleaning']['num_kept'] == 5
    assert len(dataset.get_split('train')) == 3


def test_roles(files, tmp_path):
    """CIF and POSCAR structures are minima, trajectory frames labelled, an extxyz frame's own role is kept, and an
    explicit role wins over all."""
    assert [r.role for r in iter_file_records(files['cif'])] == ['minimum']
    assert [r.role for r in iter_file_records(files['poscar'])] == ['minimum']
    assert [r.role for r in iter_file_records(files['extxyz'])] == ['labelled'] * 3
    assert [r.role for r in iter_file_records(files['cif'], role='labelled')] == ['labelled']
    assert [r.role for r in iter_file_records(files['extxyz'], role='minimum')] == ['minimum'] * 3
    tagged = [record.to_ase() for record in iter_file_records(files['extxyz'])]
    tagged[1].info['role'] = 'minimum'
    write(tmp_path / 'tagged.extxyz', tagged, format='extxyz')
    assert [r.role for r in iter_file_records(tmp_path / 'tagged.extxyz')] == ['labelled', 'minimum', 'labelled']
    dataset = import_files(files.values())
    assert dataset.roles == {'minimum': 2, 'labelled': 3}
    assert dataset.metadata['options']['role'] is None
    assert import_files([files['extxyz']], role='minimum').num_minima == 3
    with pytest.raises(ValueError, match='unknown structure role'):
        import_files([files['cif']], role='ground-state')


def test_import_with_cleaning(files):
    """Cleaning drops what it must and says why."""
    dataset = import_files(files.values(), cleaning={'require_energies': True})
    assert dataset.size == 3
    report = dataset.metadata['cleaning']
    assert report['counts'] == {'missing_energy': 2}
    assert {item['source'] for item in report['dropped']} == {str(files['cif']), str(files['poscar'])}


def test_disordered_cif(tmp_path):
    """A disordered CIF is reported, not imported."""
    disordered = Structure(Lattice.cubic(4.2), [{'Nb': 0.5, 'Ta': 0.5}, 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    disordered.to(filename=str(tmp_path / 'dis.cif'))
    Structure(Lattice.cubic(4.2), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(tmp_path / 'ok.cif'))
    dataset = import_files([tmp_path / 'dis.cif', tmp_path / 'ok.cif'])
    assert dataset.size == 1
    assert dataset.metadata['cleaning']['counts'] == {'disordered': 1}
    assert dataset.metadata['cleaning']['num_input'] == 2
    with pytest.raises(ValueError, match=r'no structures to store \(1 dropped'):
        import_files([tmp_path / 'dis.cif'])


def test_errors(tmp_path):
    """Corrupt, empty, missing and unsupported files name the file."""
    corrupt = tmp_path / 'broken.cif'
    corrupt.write_text('data_x\n_cell_length_a 4.2\nloop_\n_atom_site_label\nthis is not a cif')
    with pytest.raises(FileImportError, match=f'{corrupt}: cannot read as cif'):
        import_files([corrupt])
    garbage = tmp_path / 'POSCAR'
    garbage.write_text('garbage\n')
    with pytest.raises(FileImportError, match=f'{garbage}: cannot read as poscar'):
        list(iter_file_records(garbage))
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(FileImportError, match='unsupported file type'):
        list(iter_file_records(tmp_path / 'notes.txt'))
    with pytest.raises(FileImportError, match='no such file'):
        list(iter_file_records(tmp_path / 'missing.cif'))
    with pytest.raises(FileImportError, match='unknown format'):
        list(iter_file_records(corrupt, fmt='pdb'))
    with pytest.raises(FileImportError, match='no structure files given'):
        import_files([])


@pytest.mark.skipif(not VASP_DATA.is_dir(), reason='reference VASP outputs not available')
def test_vasp_outputs():
    """Real vasprun.xml and OUTCAR (aiida-vasp's test data) give energies, forces and stress."""
    dataset = import_files([VASP_DATA / 'vasprun' / 'vasprun.xml', VASP_DATA / 'outcar' / 'OUTCAR'])
    assert dataset.size == 2
    first, second = dataset[0], dataset[1]
    assert first.energy == pytest.approx(second.energy)
    assert first.forces.shape == (first.num_atoms, 3) and first.stress.shape == (3, 3)
    relax = list(iter_file_records(VASP_DATA / 'relax' / 'vasprun.xml'))
    assert all(record.energy is not None for record in relax)


def test_structures_without_a_lattice_are_refused(tmp_path):
    """An XYZ molecule (no lattice) or a NaN lattice is a clear `FileImportError`, not a traceback or a zero volume."""
    molecule = tmp_path / 'water.xyz'
    molecule.write_text('3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n')
    with pytest.raises(FileImportError, match='water.xyz: structure 0 is not a crystal: it has no 3D periodic'):
        import_files([molecule])
    nan_cell = tmp_path / 'nan.extxyz'
    nan_cell.write_text('1\nLattice="nan 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T"\nNb 0 0 0\n')
    with pytest.raises(FileImportError, match='lattice holds NaN'):
        import_files([nan_cell], cleaning=None)


def test_dataset_refuses_records_without_a_lattice():
    """The dataset itself checks its records, whatever importer (or none) made them."""
    from aiida_crystalgan.data.dataset import CrystalDatasetData
    from aiida_crystalgan.io import StructureRecord

    good = StructureRecord.from_ase(bulk('Nb', 'bcc', a=3.3), label='good')
    flat = StructureRecord(numbers=[41], positions=[[0, 0, 0]], cell=np.zeros((3, 3)), label='flat')
    with pytest.raises(ValueError, match=r'structures \[1\] have no 3D lattice'):
        CrystalDatasetData([good, flat])
    drifting = StructureRecord(
        numbers=[41, 41], positions=[[0, 0, 0], [np.inf, 0, 0]], cell=np.eye(3) * 3, label='drifting'
    )
    with pytest.raises(ValueError, match=r'structures \[1\] have NaN or infinite positions'):
        CrystalDatasetData([good, drifting])


def test_decompression_is_bounded(tmp_path, monkeypatch):
    """A compressed file that inflates beyond the limit stops the import instead of filling the disk."""
    import gzip

    from aiida_crystalgan.importers import files as files_module

    path = tmp_path / 'big.extxyz.gz'
    atoms = bulk('Nb', 'bcc', a=3.3)
    write(tmp_path / 'big.extxyz', [atoms] * 50, format='extxyz')
    path.write_bytes(gzip.compress((tmp_path / 'big.extxyz').read_bytes()))
    assert len(list(iter_file_records(path))) == 50
    monkeypatch.setattr(files_module, 'MAX_DECOMPRESSED_BYTES', 1000)
    with pytest.raises(FileImportError, match='decompresses to more than'):
        list(iter_file_records(path))
