"""The engines' output contract (``engines/base.py``, ``engines/outputs.py``): the same assertions for every engine.

The MLIP engine runs CHGNet on localhost; the VASP engine runs through ``mock-vasp`` and the ``vasp/registry`` entries
of the same structures and parameters as ``vasp/test_vasp_mock.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_crystalgan.engines.mlip.workchain import MlipEngineWorkChain
from aiida_crystalgan.engines.outputs import read_results, read_trajectory
from aiida_crystalgan.engines.vasp import VaspEngineWorkChain

FORCES = {}
RELAX = {'fmax': 0.05, 'relax_cell': False, 'max_steps': 20, 'trajectory_frames': 3}
MD = {'temperature': 300, 'steps': 4, 'timestep': 2.0, 'sample_interval': 2}
LATTICE = {'forces': 3.30, 'relax': 3.31, 'md': 3.32}  # the lattice constants of the mock-vasp registry entries


@pytest.fixture(params=['mlip', 'vasp'])
def run_engine(request, bcc_niobium):
    """Run ``operation`` on one bcc Nb cell with the engine of the parameter; return ``(outputs, structure)``."""
    if request.param == 'mlip':
        code = request.getfixturevalue('mlip_code')
        engine, extra = MlipEngineWorkChain, {}
    else:
        code = request.getfixturevalue('vasp_code')
        engine = VaspEngineWorkChain
        extra = {
            'settings': orm.Dict({'potential_family': request.getfixturevalue('potcar_family'), 'incar': {}}),
            'options': orm.Dict(request.getfixturevalue('vasp_options')),
        }

    def run(operation: str, parameters: dict):
        structure = bcc_niobium(LATTICE[operation])
        results, node = run_get_node(
            engine,
            code=code,
            operation=orm.Str(operation),
            parameters=orm.Dict(parameters),
            structures={'nb': structure},
            **extra,
        )
        assert node.is_finished_ok, node.exit_message
        return results, structure

    return run


def assert_results(results: orm.ArrayData, natoms: int) -> None:
    """Arrays ``forces`` (N, 3) and ``stress`` (3, 3); attributes consistent with them; the reader returns them."""
    forces, stress = results.get_array('forces'), results.get_array('stress')
    assert forces.shape == (natoms, 3) and stress.shape == (3, 3)
    assert np.isfinite(forces).all() and np.isfinite(stress).all()
    attributes = results.base.attributes
    assert attributes.get('energy_per_atom') == pytest.approx(attributes.get('energy') / natoms)
    assert attributes.get('max_force') == pytest.approx(np.linalg.norm(forces, axis=1).max())
    assert isinstance(attributes.get('converged'), bool)
    values = read_results(results)
    assert values['energy'] == attributes.get('energy')
    assert np.array_equal(values['forces'], forces) and np.array_equal(values['stress'], stress)


def test_forces(run_engine):
    outputs, structure = run_engine('forces', FORCES)
    assert set(outputs) == {'results'} and set(outputs['results']) == {'nb'}
    assert_results(outputs['results']['nb'], len(structure.sites))


def test_relax(run_engine):
    outputs, structure = run_engine('relax', RELAX)
    assert set(outputs) == {'results', 'relaxed_structures', 'trajectories'}
    assert_results(outputs['results']['nb'], len(structure.sites))
    relaxed = outputs['relaxed_structures']['nb']
    assert relaxed.get_ase().get_chemical_symbols() == structure.get_ase().get_chemical_symbols()
    assert np.allclose(relaxed.cell, structure.cell), 'relax_cell=False keeps the cell'


def test_md(run_engine):
    outputs, structure = run_engine('md', MD)
    assert set(outputs) == {'trajectories'}
    trajectory = outputs['trajectories']['nb']
    frames, natoms = trajectory.numsteps, len(structure.sites)
    assert frames >= 2
    shapes = {
        'energies': (frames,),
        'forces': (frames, natoms, 3),
        'stress': (frames, 3, 3),
        'temperatures': (frames,),
        'times': (frames,),
        'steps': (frames,),
    }
    assert {name: trajectory.get_array(name).shape for name in shapes} == shapes
    if 'velocities' in trajectory.get_arraynames():
        assert trajectory.get_array('velocities').shape == (frames, natoms, 3)
    steps = trajectory.get_array('steps')
    assert steps[0] == 0 and np.all(steps % MD['sample_interval'] == 0) and np.all(np.diff(steps) > 0)
    assert np.allclose(trajectory.get_array('times'), steps * MD['timestep'])
    records = list(read_trajectory(trajectory, label='nb'))
    assert [record.label for record in records] == [f'nb:{frame}' for frame in range(frames)]
    assert all(record.energy is not None and record.forces.shape == (natoms, 3) for record in records)
    assert np.allclose([record.energy for record in records], trajectory.get_array('energies'))


def test_relaxation_steps(run_engine):
    """``trajectory_frames`` steps of the relaxation before the relaxed structure, from the starting structure on,
    with energies, forces and stress; none with 0."""
    outputs, structure = run_engine('relax', RELAX)
    trajectory = outputs['trajectories']['nb']
    frames, natoms = trajectory.numsteps, len(structure.sites)
    assert 2 <= frames <= RELAX['trajectory_frames']
    shapes = {'energies': (frames,), 'forces': (frames, natoms, 3), 'stress': (frames, 3, 3), 'steps': (frames,)}
    assert {name: trajectory.get_array(name).shape for name in shapes} == shapes
    steps = trajectory.get_array('steps')
    assert steps[0] == 0 and np.all(np.diff(steps) > 0)
    assert np.allclose(trajectory.get_positions()[0], structure.get_ase().get_positions(), atol=1e-6)
    assert trajectory.get_array('energies')[0] > outputs['results']['nb'].base.attributes.get('energy')
    relaxed = outputs['relaxed_structures']['nb'].get_ase().get_positions()
    assert not np.allclose(trajectory.get_positions()[-1], relaxed, atol=1e-6), 'the relaxed structure is not a step'
    assert all(record.forces.shape == (natoms, 3) for record in read_trajectory(trajectory, label='nb'))

    outputs, _ = run_engine('relax', {**RELAX, 'trajectory_frames': 0})
    assert set(outputs) == {'results', 'relaxed_structures'}
