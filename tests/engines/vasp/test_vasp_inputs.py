"""INCAR, KPOINTS, POTCAR mapping and settings of every operation and protocol, against stored expectations."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import yaml
from aiida import orm
from aiida.engine import run_get_node
from aiida_vasp.data.potcar import PotcarData

from aiida_crystalgan.engines.vasp import VaspBaseWorkChain, VaspEngineWorkChain
from aiida_crystalgan.engines.vasp.calculation import VaspMdCalculation, read_contcar_velocities
from aiida_crystalgan.engines.vasp.inputs import get_incar

EXPECTATIONS = Path(__file__).parent / 'expectations'
CASES = {
    'md-fast': ('md', 'fast', {'temperature': 1200, 'steps': 500, 'timestep': 2.0, 'sample_interval': 10}, {}),
    'md-langevin-balanced': (
        'md',
        'balanced',
        {'temperature': 600, 'steps': 100, 'timestep': 1.5, 'thermostat': 'langevin', 'seed': 7},
        {},
    ),
    'relax-fast': ('relax', 'fast', {'fmax': 0.02, 'relax_cell': True, 'max_steps': 150}, {}),
    'relax-precise-fixed-cell': (
        'relax',
        'precise',
        {'fmax': 0.01, 'relax_cell': False, 'max_steps': 200, 'trajectory_frames': 0},
        {},
    ),
    'forces-fast': ('forces', 'fast', {}, {}),
    'forces-balanced': ('forces', 'balanced', {}, {}),
    'forces-precise': ('forces', 'precise', {}, {}),
    'forces-overrides': (
        'forces',
        'fast',
        {},
        {
            'incar': {'ENCUT': 650, 'lreal': False},
            'kpoints_spacing': 0.15,
            'max_iterations': 3,
            'max_relax_continuations': 1,
        },
    ),
}


def plain(mapping: Mapping) -> dict:
    """Nested builder namespaces as nested dictionaries."""
    return {key: plain(value) if isinstance(value, Mapping) else value for key, value in mapping.items()}


def builder_content(builder) -> dict:
    """The parts of a ``VaspBaseWorkChain`` builder that decide what VASP computes, as plain data."""
    return {
        'incar': builder.parameters.get_dict()['incar'],
        'kpoints_mesh': [
            list(map(int, builder.kpoints.get_kpoints_mesh()[0])),
            list(map(float, builder.kpoints.get_kpoints_mesh()[1])),
        ],
        'potential_family': builder.potential_family.value,
        'potential_mapping': builder.potential_mapping.get_dict(),
        'settings': builder.settings.get_dict(),
        'options': plain(builder.calc.metadata.options),
        'max_iterations': builder.max_iterations.value if isinstance(builder.max_iterations, orm.Int) else None,
        'max_relax_continuations': builder.max_relax_continuations.value,
    }


@pytest.mark.parametrize('case', list(CASES))
def test_builder_matches_expectation(case, aiida_localhost, potcar_family, rocksalt_nbo, vasp_options):
    """Each (operation, protocol, overrides) gives the INCAR/KPOINTS/POTCAR stored in ``expectations/<case>.yaml``."""
    operation, protocol, parameters, overrides = CASES[case]
    code = orm.InstalledCode(label='vasp', computer=aiida_localhost, filepath_executable='/bin/vasp_std')
    builder = VaspBaseWorkChain.get_builder_from_protocol(
        code,
        rocksalt_nbo(),
        operation=operation,
        parameters=parameters,
        protocol=protocol,
        overrides=overrides,
        potential_family=potcar_family,
        potential_mapping={'O': 'O_s'} if case == 'forces-overrides' else None,
        options=vasp_options,
    )
    expected = yaml.safe_load((EXPECTATIONS / f'{case}.yaml').read_text(encoding='utf8'))
    assert builder_content(builder) == expected


def test_md_ionic_convergence_checks_off():
    """A finished MD runs exactly NSW steps: neither the parser nor the workchain may call it unconverged."""
    settings = yaml.safe_load((EXPECTATIONS / 'md-fast.yaml').read_text(encoding='utf8'))['settings']
    assert settings['CHECK_IONIC_CONVERGENCE'] is False
    assert settings['parser_settings']['check_ionic_convergence'] is False
    assert 'trajectory' in settings['parser_settings']['include_node']


@pytest.mark.parametrize(
    ('operation', 'parameters', 'protocol', 'message'),
    [
        (
            'md',
            {'temperature': 300, 'steps': 10, 'timestep': 1, 'thermostat': 'berendsen'},
            'fast',
            'unknown thermostat',
        ),
        ('forces', {}, 'sloppy', 'unknown protocol'),
    ],
)
def test_invalid_incar_requests(rocksalt_nbo, operation, parameters, protocol, message):
    with pytest.raises(ValueError, match=message):
        get_incar(operation, parameters, rocksalt_nbo(), protocol)


@pytest.mark.parametrize(
    ('inputs', 'message'),
    [
        ({'protocol': 'sloppy'}, 'unknown protocol'),
        ({'settings': {'potcar_family': 'PBE'}}, 'unknown VASP engine settings'),
    ],
)
def test_engine_rejects_bad_inputs(aiida_localhost, bcc_niobium, inputs, message):
    code = orm.InstalledCode(label='vasp', computer=aiida_localhost, filepath_executable='/bin/vasp_std')
    inputs = {key: orm.to_aiida_type(value) for key, value in inputs.items()}
    with pytest.raises(ValueError, match=message):
        run_get_node(
            VaspEngineWorkChain,
            code=code,
            operation=orm.Str('forces'),
            parameters=orm.Dict({}),
            structures={'nb': bcc_niobium()},
            **inputs,
        )


def test_dry_run_writes_vasp_inputs(vasp_code, potcar_family, bcc_niobium, vasp_options, tmp_path, monkeypatch):
    """``dry_run`` of the calculation: INCAR/KPOINTS/POTCAR as VASP reads them, and MD velocities after POSCAR."""
    monkeypatch.chdir(tmp_path)  # dry_run writes its `submit_test` folder into the working directory
    structure = bcc_niobium()
    builder = VaspBaseWorkChain.get_builder_from_protocol(
        vasp_code,
        structure,
        operation='md',
        parameters={'temperature': 300, 'steps': 4, 'timestep': 2.0},
        potential_family=potcar_family,
        options=vasp_options,
    )
    velocities = np.array([[0.001, -0.002, 0.003], [-0.001, 0.002, -0.003]])
    inputs = {
        'code': vasp_code,
        'structure': structure,
        'kpoints': builder.kpoints,
        'settings': builder.settings,
        'parameters': orm.Dict(builder.parameters['incar']),
        'potential': PotcarData.get_potcars_from_structure(structure, potcar_family, {'Nb': 'Nb_pv'}),
        'velocities': orm.ArrayData({'velocities': velocities}),
        'metadata': {'dry_run': True, 'store_provenance': False, 'options': vasp_options},
    }
    _, node = run_get_node(VaspMdCalculation, **inputs)
    folder = Path(node.dry_run_info['folder'])
    incar = (folder / 'INCAR').read_text()
    for line in ('IBRION = 0', 'ISYM = 0', 'MDALGO = 2', 'NSW = 4', 'POTIM = 2.0', 'TEBEG = 300.0'):
        assert line in incar
    assert (folder / 'KPOINTS').read_text().splitlines()[2].strip().lower().startswith('g')
    assert 'PAW_PBE Nb_pv' in (folder / 'POTCAR').read_text()
    assert np.allclose(read_contcar_velocities((folder / 'POSCAR').read_text(), 2), velocities)
