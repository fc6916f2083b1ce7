"""Fixtures of the engine tests: for VASP a fake POTCAR family, the ``mock-vasp`` code and small structures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm

REGISTRY = Path(__file__).parent / 'vasp' / 'registry'
POTCAR_FAMILY = 'PBE.fake'
FAKE_POTCARS = {'Nb_pv': ('Nb', 92.906, 11.0), 'O': ('O', 16.0, 6.0), 'Si': ('Si', 28.085, 4.0)}
OPTIONS = {
    'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
    'withmpi': False,
    'max_wallclock_seconds': 600,
}


def fake_potcar(symbol: str, element: str, mass: float, valence: float) -> str:
    """The header of a PAW POTCAR with made-up numbers: enough for aiida-vasp, useless for VASP."""
    return (
        f'  PAW_PBE {symbol} 01Jan2000\n {valence:.16f}\n parameters from PSCTR are:\n'
        f'   VRHFIN ={element}: fake\n   LEXCH  = PE\n   TITEL  = PAW_PBE {symbol} 01Jan2000\n'
        f'   POMASS = {mass:8.3f}; ZVAL   = {valence:8.3f}    mass and valenz\n'
        '   ENMAX  =  400.000; ENMIN  =  300.000 eV\n END of PSCTR-controll parameters\n'
        f' fake potential of {symbol} for tests\n End of Dataset\n'
    )


@pytest.fixture
def potcar_family(tmp_path_factory) -> str:
    """Upload (once per profile) a POTCAR family of fake potentials, as aiida-vasp's own tests do."""
    from aiida_vasp.data.potcar import PotcarData

    if PotcarData.get_potcar_group(POTCAR_FAMILY) is None:
        root = tmp_path_factory.mktemp('potcars') / 'fake_family'
        for symbol, (element, mass, valence) in FAKE_POTCARS.items():
            (root / symbol).mkdir(parents=True)
            (root / symbol / 'POTCAR').write_text(fake_potcar(symbol, element, mass, valence), encoding='utf8')
        PotcarData.upload_potcar_family(str(root), POTCAR_FAMILY, 'fake potentials for tests', stop_if_existing=False)
    return POTCAR_FAMILY


@pytest.fixture
def vasp_code(aiida_localhost) -> orm.InstalledCode:
    """aiida-vasp's ``mock-vasp`` on localhost, answering from this folder's ``registry``."""
    label = 'mock-vasp'
    try:
        return orm.load_code(f'{label}@{aiida_localhost.label}')
    except Exception:  # noqa: BLE001 - not created yet in this profile
        code = orm.InstalledCode(
            label=label,
            computer=aiida_localhost,
            default_calc_job_plugin='vasp.vasp',
            filepath_executable=str(Path(sys.executable).parent / 'mock-vasp'),
            prepend_text=f'export MOCK_VASP_REG_BASE={REGISTRY}',
        )
        return code.store()


@pytest.fixture
def vasp_options() -> dict:
    """Scheduler options of the mock runs on localhost."""
    return dict(OPTIONS)


@pytest.fixture
def bcc_niobium():
    """Factory of two-atom bcc Nb cells, the second atom moved by ``shift`` (fractional y) off its ideal site."""
    return _bcc_niobium


@pytest.fixture
def rocksalt_nbo():
    """Factory of two-atom primitive rock-salt NbO cells."""
    return _rocksalt_nbo


def _bcc_niobium(a: float = 3.30, label: str = '', shift: float = 0.02) -> orm.StructureData:
    structure = orm.StructureData(cell=np.eye(3) * a)
    structure.append_atom(position=(0, 0, 0), symbols='Nb')
    structure.append_atom(position=(a / 2, a * (0.5 + shift), a / 2), symbols='Nb')
    structure.label = label
    return structure


def _rocksalt_nbo(a: float = 4.21) -> orm.StructureData:
    cell = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    structure = orm.StructureData(cell=cell)
    structure.append_atom(position=(0, 0, 0), symbols='Nb')
    structure.append_atom(position=(a / 2, 0, 0), symbols='O')
    return structure
