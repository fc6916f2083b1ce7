"""``PhononWorkChain``: phonopy through aiida-phonopy, forces from an engine (the CHGNet ``mlip`` engine here)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_phonopy.data import ForceConstantsData
from aiida_phonopy.workflows.phonopy import PhonopyWorkChain
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from aiida_crystalgan.workflows.phonons import (
    PhononWorkChain,
    analyse_force_constants,
    supercell_matrix_for_length,
    validate_parameters,
)

SIMPLE_CUBIC = np.eye(3) * 2.62  # Nb at the bcc volume per atom: a saddle point, dynamically unstable


def bcc_primitive(a: float = 3.32) -> np.ndarray:
    return np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) * a / 2


def niobium(cell: np.ndarray) -> orm.StructureData:
    structure = orm.StructureData(cell=cell)
    structure.append_atom(position=(0, 0, 0), symbols='Nb')
    return structure


def synthetic_force_constants(spring: float) -> ForceConstantsData:
    """Force constants of simple-cubic Nb whose displaced atom feels ``-spring * u`` (eV/Å^2), shared by the rest.

    A positive ``spring`` restores (stable); a negative one pushes the atom further (imaginary modes).
    """
    unitcell = PhonopyAtoms(symbols=['Nb'], cell=SIMPLE_CUBIC, scaled_positions=[[0, 0, 0]])
    phonopy = Phonopy(unitcell, supercell_matrix=np.diag([2, 2, 2]))
    phonopy.generate_displacements(distance=0.01)
    forces = []
    for displacement in phonopy.dataset['first_atoms']:
        force = np.tile(spring * np.array(displacement['displacement']) / 7, (8, 1))
        force[displacement['number']] = -spring * np.array(displacement['displacement'])
        forces.append(force)
    phonopy.forces = forces
    phonopy.produce_force_constants()
    data = ForceConstantsData(structure=niobium(SIMPLE_CUBIC), supercell_matrix=np.diag([2, 2, 2]).tolist())
    data.set_force_constants(phonopy.force_constants)
    return data


def test_is_an_aiida_phonopy_workchain():
    assert issubclass(PhononWorkChain, PhonopyWorkChain)
    assert 'supercell_matrix' not in PhononWorkChain.spec().inputs, 'replaced by `parameters`'


def test_supercell_matrix_for_length():
    assert supercell_matrix_for_length(np.eye(3) * 3.3, 6.0) == np.diag([2, 2, 2]).tolist()
    assert supercell_matrix_for_length(np.diag([3.0, 5.0, 11.0]), 10.0) == np.diag([4, 2, 1]).tolist()
    widths_bcc = supercell_matrix_for_length(bcc_primitive(), 4.5)
    assert widths_bcc == np.diag([2, 2, 2]).tolist(), 'perpendicular widths of the bcc primitive cell are 2.35 Å'


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'mesh': [4, 4]}, '`mesh` must be 3'),
        ({'displacement': 0}, '`displacement` must be positive'),
        ({'supercell_matrix': [2, 2]}, '`supercell_matrix` must be'),
        ({'supercell': 2}, 'unknown phonon parameters'),
        ({'mesh': [4, 4, 4]}, 'missing phonon parameters'),
    ],
)
def test_validate_parameters(parameters, message):
    assert message in validate_parameters(orm.Dict(parameters), None)


@pytest.mark.parametrize(('spring', 'stable'), [(2.0, True), (-2.0, False)])
def test_analysis_of_synthetic_force_constants(spring, stable):
    """A restoring spring gives real frequencies; an anti-restoring one imaginary (negative) ones."""
    parameters = PhononWorkChain.get_protocol_inputs(
        'balanced', {'mesh': [4, 4, 4], 'dos': True, 'band_structure': True}
    )
    outputs = analyse_force_constants(synthetic_force_constants(spring), orm.Dict(parameters))
    assert outputs['is_stable'].value is stable
    assert (outputs['min_frequency'].value < -1.0) is not stable
    assert outputs['dos'].get_x()[1].shape == outputs['dos'].get_y()[0][1].shape
    assert outputs['band_structure'].get_bands().shape[1] == 3
    assert outputs['min_frequency'].base.links.get_incoming().all(), 'made by a calcfunction: with provenance'


def run_phonons(mlip_code, cell: np.ndarray, **parameters):
    builder = PhononWorkChain.get_builder_from_protocol(
        niobium(cell),
        {'name': orm.Str('mlip'), 'code': mlip_code},
        protocol='balanced',
        overrides={'supercell_matrix': [2, 2, 2], 'mesh': [4, 4, 4], **parameters},
    )
    return run_get_node(builder)


def test_bcc_niobium_is_stable(mlip_code):
    """bcc Nb with CHGNet: one displaced 2x2x2 supercell and the pristine one, in one engine call; no imaginary mode."""
    results, node = run_phonons(mlip_code, bcc_primitive(), dos=True, band_structure=True)
    assert node.is_finished_ok, node.exit_message
    assert results['is_stable'].value
    assert -0.1 < results['min_frequency'].value < 0.1, 'acoustic modes at Γ are the lowest'
    assert set(results['supercells_forces']) == {'forces_0', 'forces_1'}
    engines = [child for child in node.called if child.process_label == 'MlipEngineWorkChain']
    assert len(engines) == 1
    assert results['phonopy_data'].residual_forces is not None
    assert {'force_constants', 'dos', 'band_structure'} <= set(results)


def test_simple_cubic_niobium_is_unstable(mlip_code):
    """Simple-cubic Nb (a saddle point at the bcc volume) has imaginary modes."""
    results, node = run_phonons(mlip_code, SIMPLE_CUBIC)
    assert node.is_finished_ok, node.exit_message
    assert not results['is_stable'].value
    assert results['min_frequency'].value < -1.0


def test_engine_failure_is_reported(aiida_localhost):
    """A code that cannot run the engine ends the workchain with ERROR_ENGINE_FAILED."""
    code = orm.InstalledCode(
        label='false',
        computer=aiida_localhost,
        filepath_executable='/bin/false',
        default_calc_job_plugin='crystalgan.mlip',
    ).store()
    _, node = run_phonons(code, bcc_primitive())
    assert node.exit_status == PhononWorkChain.exit_codes.ERROR_ENGINE_FAILED.status
