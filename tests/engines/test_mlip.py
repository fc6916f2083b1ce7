"""The ``mlip`` engine: runner, CalcJob and engine workchain on real CHGNet calculations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.calculations.mlip import MlipCalculation
from aiida_crystalgan.engines.base import load_engine
from aiida_crystalgan.engines.mlip.workchain import MlipEngineWorkChain
from aiida_crystalgan.io import StructureRecord, write_datafile
from aiida_crystalgan.io.status import EXIT_INVALID_INPUT
from aiida_crystalgan.mlip import runner


def bcc_niobium(perturb: float = 0.0, seed: int = 0) -> Structure:
    structure = Structure(Lattice.cubic(3.32), ['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if perturb:
        rng = np.random.default_rng(seed)
        structure = Structure(structure.lattice, structure.species,
                              structure.cart_coords + rng.normal(0, perturb, (2, 3)), coords_are_cartesian=True)
    return structure


def engine_inputs(code, operation: str, parameters: dict, structures: dict, **extra) -> dict:
    return {
        'code': code, 'operation': orm.Str(operation), 'parameters': orm.Dict(parameters),
        'structures': {key: orm.StructureData(pymatgen=s) for key, s in structures.items()}, **extra,
    }


def test_load_engine():
    assert load_engine('mlip') is MlipEngineWorkChain
    with pytest.raises(ValueError, match='unknown engine `nope`'):
        load_engine('nope')


def test_relax_and_forces(mlip_code):
    """A distorted bcc cell relaxes below fmax; forces of the ideal cell vanish by symmetry."""
    inputs = engine_inputs(mlip_code, 'relax', {'fmax': 0.05, 'relax_cell': True, 'max_steps': 200},
                           {'distorted': bcc_niobium(0.08), 'ideal': bcc_niobium()})
    results, node = run_get_node(MlipEngineWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    assert set(results['relaxed_structures']) == {'distorted', 'ideal'}
    relaxed = results['results']['distorted']
    assert relaxed.base.attributes.get('converged')
    assert relaxed.base.attributes.get('max_force') < 0.05
    assert relaxed.get_array('forces').shape == (2, 3)
    assert -12.0 < relaxed.base.attributes.get('energy_per_atom') < -8.0
    volume = results['relaxed_structures']['distorted'].get_pymatgen().volume / 2
    assert 15.0 < volume < 21.0, 'bcc Nb is 18 Å^3/atom'

    forces = engine_inputs(mlip_code, 'forces', {}, {'ideal': bcc_niobium()})
    results, node = run_get_node(MlipEngineWorkChain, **forces)
    assert node.is_finished_ok
    assert np.abs(results['results']['ideal'].get_array('forces')).max() < 1e-3


def test_md_trajectory(mlip_code):
    """MD returns a trajectory with energies, forces, stress and temperatures per stored frame."""
    parameters = {'temperature': 600, 'steps': 10, 'timestep': 2.0, 'sample_interval': 5, 'seed': 1}
    results, node = run_get_node(MlipEngineWorkChain,
                                 **engine_inputs(mlip_code, 'md', parameters, {'nb': bcc_niobium()}))
    assert node.is_finished_ok, node.exit_message
    trajectory = results['trajectories']['nb']
    assert trajectory.numsteps == 3
    assert trajectory.get_array('energies').shape == (3,)
    assert trajectory.get_array('forces').shape == (3, 2, 3)
    assert trajectory.get_array('stress').shape == (3, 3, 3)
    assert np.allclose(trajectory.get_array('times'), [0, 10, 20])


def test_walltime_restart_keeps_finished_work(mlip_code):
    """A soft wall-clock stop after each structure is resumed by the handler until every structure is done."""
    inputs = engine_inputs(mlip_code, 'forces', {}, {'a': bcc_niobium(), 'b': bcc_niobium(0.05, seed=2)},
                           options=orm.Dict({'max_wallclock_seconds': 1}))
    results, node = run_get_node(MlipEngineWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    calculations = node.called
    assert len(calculations) == 2
    assert calculations[0].exit_status == MlipCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
    assert set(results['results']) == {'a', 'b'}


@pytest.mark.parametrize(('operation', 'parameters', 'message'), [
    ('md', {'temperature': -5, 'steps': 10, 'timestep': 1}, 'must be positive'),
    ('md', {'temperature': 300, 'steps': 0, 'timestep': 1}, 'must be positive'),
    ('relax', {}, 'needs the parameters'),
    ('anneal', {}, 'unknown operation'),
])
def test_invalid_parameters_rejected(mlip_code, operation, parameters, message):
    with pytest.raises(ValueError, match=message):
        run_get_node(MlipEngineWorkChain, **engine_inputs(mlip_code, operation, parameters, {'nb': bcc_niobium()}))


def test_empty_batch_rejected(mlip_code):
    inputs = engine_inputs(mlip_code, 'forces', {}, {})
    with pytest.raises(ValueError, match='`structures` namespace is empty'):
        run_get_node(MlipEngineWorkChain, **inputs)


def test_runner_bad_input(tmp_path, monkeypatch):
    """The runner reports a bad model name in its status file and exits with code 2."""
    monkeypatch.chdir(tmp_path)
    write_datafile('s.h5', [StructureRecord.from_pymatgen(bcc_niobium(), label='nb')])
    (tmp_path / 'input.json').write_text(json.dumps(
        {'operation': 'forces', 'parameters': {}, 'structures': 's.h5', 'settings': {'model': 'nonsense'}}))
    assert runner.main(['input.json']) == EXIT_INVALID_INPUT
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert status['status'] == 'invalid_input'
    assert 'unknown MLIP model `nonsense`' in status['message']


def test_runner_help():
    """``crystalgan-mlip --help`` prints the usage instead of reading `--help` as an input file."""
    result = subprocess.run([str(Path(sys.executable).parent / 'crystalgan-mlip'), '--help'], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and 'usage: crystalgan-mlip' in result.stdout
    assert not Path('results').exists()


def test_missing_status_is_a_crash_not_a_walltime_stop(aiida_localhost):
    """An executable that ends without `status.json` (here `true`) crashed: it did not reach a soft wall-clock stop."""
    code = orm.InstalledCode(label='true', computer=aiida_localhost, filepath_executable='/bin/true',
                             default_calc_job_plugin='crystalgan.mlip').store()
    _, node = run_get_node(MlipCalculation, code=code, operation=orm.Str('forces'), parameters=orm.Dict({}),
                           structures={'nb': orm.StructureData(pymatgen=bcc_niobium())})
    assert node.exit_status == MlipCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED.status
    assert 'stderr is empty' in node.exit_message


CRASHING_RUNNER = '''#!{python}
"""Write the result of the first structure of the batch, then die without `status.json`."""
import json, sys
from aiida_crystalgan.io import DataFile

config = json.load(open(sys.argv[1]))
with DataFile(config['structures']) as structures:
    record = next(iter(structures))
natoms = len(record.numbers)
result = {{'energy': -1.0, 'forces': [[0.0] * 3] * natoms, 'stress': [[0.0] * 3] * 3, 'converged': True, 'steps': 0}}
__import__('os').makedirs('results')
json.dump(result, open(f'results/{{record.label}}.json', 'w'))
sys.exit(-9)
'''


def test_crash_after_progress_resubmits_the_rest(aiida_localhost, tmp_path):
    """A runner that dies after one structure each time: the finished ones are kept, the rest resubmitted."""
    script = tmp_path / 'crashing-mlip'
    script.write_text(CRASHING_RUNNER.format(python=sys.executable))
    script.chmod(0o755)
    code = orm.InstalledCode(label='crashing-mlip', computer=aiida_localhost, filepath_executable=str(script),
                             default_calc_job_plugin='crystalgan.mlip').store()
    results, node = run_get_node(MlipEngineWorkChain, **engine_inputs(code, 'forces', {}, {
        'a': bcc_niobium(), 'b': bcc_niobium(0.05, seed=2)}))
    assert node.is_finished_ok, node.exit_message
    crashed = MlipCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED.status
    assert [calculation.exit_status for calculation in node.called] == [crashed, crashed]
    assert set(results['results']) == {'a', 'b'}


def test_runner_imports_no_aiida():
    """The executable runs on compute nodes without AiiDA: neither it nor the status module may import it."""
    check = ('import sys, aiida_crystalgan.mlip.runner, aiida_crystalgan.io.status; '
             'sys.exit(any(name.split(".")[0] == "aiida" for name in sys.modules))')
    assert subprocess.run([sys.executable, '-c', check], check=False).returncode == 0
