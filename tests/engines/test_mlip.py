"""The ``mlip`` engine: runner, CalcJob and engine workchain on real CHGNet calculations."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.calculators.lj import LennardJones
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.calculations.mlip import MlipCalculation
from aiida_crystalgan.engines.base import load_engine
from aiida_crystalgan.engines.mlip.workchain import MlipEngineWorkChain
from aiida_crystalgan.io import StructureRecord, write_datafile
from aiida_crystalgan.io.status import EXIT_INVALID_INPUT, EXIT_OK, EXIT_SOFT_WALLCLOCK
from aiida_crystalgan.mlip import runner
from aiida_crystalgan.mlip.restart import FRAME_ARRAYS, RESTART_SUFFIX, MdRestart


def bcc_niobium(perturb: float = 0.0, seed: int = 0) -> Structure:
    structure = Structure(Lattice.cubic(3.32), ['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if perturb:
        rng = np.random.default_rng(seed)
        structure = Structure(
            structure.lattice,
            structure.species,
            structure.cart_coords + rng.normal(0, perturb, (2, 3)),
            coords_are_cartesian=True,
        )
    return structure


def protocol_settings() -> dict:
    """The MLIP settings of the default protocol: the runner needs every one of them."""
    return MlipCalculation.get_protocol_values('forces')['settings']


def engine_inputs(code, operation: str, parameters: dict, structures: dict, **extra) -> dict:
    return {
        'code': code,
        'operation': orm.Str(operation),
        'parameters': orm.Dict(parameters),
        'structures': {key: orm.StructureData(pymatgen=s) for key, s in structures.items()},
        **extra,
    }


def calculations_of(engine: orm.WorkChainNode) -> list[orm.CalcJobNode]:
    """The ``MlipCalculation``s that ``engine`` ran, in order."""
    return sorted((n for n in engine.called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)


def test_load_engine():
    assert load_engine('mlip') is MlipEngineWorkChain
    with pytest.raises(ValueError, match='unknown engine `nope`'):
        load_engine('nope')


def test_relax_and_forces(mlip_code):
    """A distorted bcc cell relaxes below fmax; forces of the ideal cell vanish by symmetry."""
    inputs = engine_inputs(
        mlip_code,
        'relax',
        {'fmax': 0.05, 'relax_cell': True, 'max_steps': 200},
        {'distorted': bcc_niobium(0.08), 'ideal': bcc_niobium()},
    )
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
    results, node = run_get_node(
        MlipEngineWorkChain, **engine_inputs(mlip_code, 'md', parameters, {'nb': bcc_niobium()})
    )
    assert node.is_finished_ok, node.exit_message
    trajectory = results['trajectories']['nb']
    assert trajectory.numsteps == 3
    assert trajectory.get_array('energies').shape == (3,)
    assert trajectory.get_array('forces').shape == (3, 2, 3)
    assert trajectory.get_array('stress').shape == (3, 3, 3)
    assert np.allclose(trajectory.get_array('times'), [0, 10, 20])
    calculation = calculations_of(node)[0]
    assert calculation.inputs.parameters.get_dict() == {**parameters, 'thermostat': 'nose-hoover'}
    assert calculation.inputs.settings.get_dict() == protocol_settings()


def test_protocol_completes_what_the_caller_leaves_out():
    """Parameters, settings and options the caller leaves out are the protocol's; the caller's win key by key."""
    values = MlipCalculation.get_protocol_values(
        'md', {'temperature': 300, 'steps': 60, 'timestep': 2.0}, 'precise', {'num_threads': 4}, {'queue_name': 'q'}
    )
    protocol = MlipCalculation.get_protocol_inputs('precise')
    assert values['parameters'] == {
        'temperature': 300,
        'steps': 60,
        'timestep': 2.0,
        **protocol['parameters']['md'],
        'sample_interval': 60 // protocol['md_frames'],
    }
    assert values['settings'] == {**protocol['settings'], **protocol['model_settings']['chgnet'], 'num_threads': 4}
    assert values['options'] == {**protocol['options'], 'queue_name': 'q'}
    mace = MlipCalculation.get_protocol_values('forces', settings={'model': 'mace', 'model_path': 'mace.model'})
    assert 'model_version' not in mace['settings'], 'the settings of another model are not added'
    with pytest.raises(ValueError, match='unknown protocol `sloppy`'):
        MlipCalculation.get_protocol_values('forces', protocol='sloppy')


def test_engine_refuses_an_unknown_protocol(mlip_code):
    inputs = engine_inputs(mlip_code, 'forces', {}, {'nb': bcc_niobium()}, protocol=orm.Str('sloppy'))
    with pytest.raises(ValueError, match='unknown protocol `sloppy`'):
        run_get_node(MlipEngineWorkChain, **inputs)


def test_walltime_restart_keeps_finished_work(mlip_code):
    """A soft wall-clock stop after each structure is resumed by the handler until every structure is done; a stop
    that finished a structure does not use up ``max_iterations`` (1 here)."""
    inputs = engine_inputs(
        mlip_code,
        'forces',
        {},
        {'a': bcc_niobium(), 'b': bcc_niobium(0.05, seed=2)},
        options=orm.Dict({'max_wallclock_seconds': 1}),
    )
    inputs['max_iterations'] = orm.Int(1)
    results, node = run_get_node(MlipEngineWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    calculations = node.called
    assert len(calculations) == 2
    assert calculations[0].exit_status == MlipCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
    assert set(results['results']) == {'a', 'b'}


@pytest.mark.parametrize(
    ('operation', 'parameters', 'message'),
    [
        ('md', {'temperature': -5, 'steps': 10, 'timestep': 1}, 'must be positive'),
        ('md', {'temperature': 300, 'steps': 0, 'timestep': 1}, 'must be positive'),
        ('relax', {}, 'needs the parameters'),
        ('anneal', {}, 'unknown operation'),
    ],
)
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
    (tmp_path / 'input.json').write_text(
        json.dumps(
            {
                'operation': 'forces',
                'parameters': {},
                'structures': 's.h5',
                'settings': {**protocol_settings(), 'model': 'nonsense'},
            }
        )
    )
    assert runner.main(['input.json']) == EXIT_INVALID_INPUT
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert status['status'] == 'invalid_input'
    assert 'unknown MLIP model `nonsense`' in status['message']


def test_runner_refuses_an_incomplete_input(tmp_path, monkeypatch):
    """The runner has no defaults: an input without a parameter or setting names it, and nothing is run."""
    monkeypatch.chdir(tmp_path)
    write_datafile('s.h5', [StructureRecord.from_pymatgen(bcc_niobium(), label='nb')])
    settings = {key: value for key, value in protocol_settings().items() if key != 'num_threads'}
    parameters = {'temperature': 300, 'steps': 4, 'timestep': 1.0, 'thermostat': 'langevin', 'seed': 0}
    (tmp_path / 'input.json').write_text(
        json.dumps({'operation': 'md', 'parameters': parameters, 'structures': 's.h5', 'settings': settings})
    )
    assert runner.main(['input.json']) == EXIT_INVALID_INPUT
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert status['status'] == 'invalid_input'
    assert '`parameters.sample_interval`, `settings.num_threads`' in status['message']
    assert not (tmp_path / 'results' / 'nb.npz').exists()


def test_runner_keeps_the_steps_of_a_relaxation():
    """``trajectory_frames`` steps, evenly spaced from the start, before the relaxed structure; none without it."""
    from ase.build import bulk

    def rattled():
        atoms = bulk('Ar', 'fcc', a=5.4, cubic=True)
        atoms.rattle(0.2, seed=3)
        return atoms

    calculator = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0, smooth=True)
    parameters = {'fmax': 0.001, 'max_steps': 200, 'relax_cell': False}
    result = runner.run_relax(rattled(), calculator, {**parameters, 'trajectory_frames': 4})
    steps = result['trajectory']
    assert len(steps['steps']) == 4 and steps['steps'][0] == 0 and steps['steps'][-1] < result['steps']
    assert np.allclose(steps['positions'][0], rattled().get_positions())
    assert steps['energies'][0] > steps['energies'][-1] > result['energy']
    assert np.asarray(steps['forces']).shape == (4, 4, 3) and np.asarray(steps['stress']).shape == (4, 3, 3)
    assert 'trajectory' not in runner.run_relax(rattled(), calculator, parameters), 'inputs without the parameter'

    recorded = {name: [np.zeros(1)] * 5 for name in runner.RELAX_FRAME_ARRAYS}
    recorded['steps'] = [0, 1, 2, 3, 4]
    recorded['energies'] = [0.0, np.nan, 0.0, 0.0, 0.0]
    assert runner.relaxation_frames(recorded, 10)['steps'] == [0, 2, 3], 'non-finite and last steps left out'


def test_runner_help():
    """``crystalgan-mlip --help`` prints the usage instead of reading `--help` as an input file."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / 'crystalgan-mlip'), '--help'], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and 'usage: crystalgan-mlip' in result.stdout
    assert not Path('results').exists()


def test_missing_status_is_a_crash_not_a_walltime_stop(aiida_localhost):
    """An executable that ends without `status.json` (here `true`) crashed: it did not reach a soft wall-clock stop."""
    code = orm.InstalledCode(
        label='true',
        computer=aiida_localhost,
        filepath_executable='/bin/true',
        default_calc_job_plugin='crystalgan.mlip',
    ).store()
    _, node = run_get_node(
        MlipCalculation,
        code=code,
        operation=orm.Str('forces'),
        parameters=orm.Dict({}),
        structures={'nb': orm.StructureData(pymatgen=bcc_niobium())},
    )
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
    code = orm.InstalledCode(
        label='crashing-mlip',
        computer=aiida_localhost,
        filepath_executable=str(script),
        default_calc_job_plugin='crystalgan.mlip',
    ).store()
    results, node = run_get_node(
        MlipEngineWorkChain, **engine_inputs(code, 'forces', {}, {'a': bcc_niobium(), 'b': bcc_niobium(0.05, seed=2)})
    )
    assert node.is_finished_ok, node.exit_message
    crashed = MlipCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED.status
    assert [calculation.exit_status for calculation in node.called] == [crashed, crashed]
    assert set(results['results']) == {'a', 'b'}


def test_runner_imports_no_aiida():
    """The executable runs on compute nodes without AiiDA: neither it nor the status module may import it."""
    check = (
        'import sys, aiida_crystalgan.mlip.runner, aiida_crystalgan.io.status; '
        'sys.exit(any(name.split(".")[0] == "aiida" for name in sys.modules))'
    )
    assert subprocess.run([sys.executable, '-c', check], check=False).returncode == 0


def test_unsupported_element_fails_alone_and_quorum(mlip_code):
    """A structure with an element CHGNet does not know fails alone (521); the batch keeps the others' results.

    With a quorum of 1 (every structure must succeed) the same batch fails with ERROR_TOO_FEW_SUCCEEDED.
    """
    einsteinium = Structure(Lattice.cubic(3.32), ['Nb', 'Es'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = {'good': bcc_niobium(), 'bad': einsteinium}
    results, node = run_get_node(MlipEngineWorkChain, **engine_inputs(mlip_code, 'forces', {}, structures))
    assert node.is_finished_ok, node.exit_message
    assert set(results['results']) == {'good'}
    failures = results['failures'].get_dict()
    assert set(failures) == {'bad'}
    assert failures['bad']['exit_status'] == MlipEngineWorkChain.exit_codes.ERROR_STRUCTURE_UNSUPPORTED_ELEMENT.status
    assert 'Es' in failures['bad']['message']
    assert len(calculations_of(node)) == 1, 'a structure the model cannot evaluate is not rerun'

    _, node = run_get_node(
        MlipEngineWorkChain, **engine_inputs(mlip_code, 'forces', {}, structures, quorum=orm.Float(1.0))
    )
    assert node.exit_status == MlipEngineWorkChain.exit_codes.ERROR_TOO_FEW_SUCCEEDED.status
    assert '1 of 2' in node.exit_message and 'bad' in node.exit_message


class ScriptedCalculator:
    """An ASE calculator for the runner tests: NaN for cells larger than 40 Å^3, a huge tensile stress when asked."""

    def __new__(cls, pull: float = 0.0):
        from ase.calculators.calculator import Calculator, all_changes

        class _Scripted(Calculator):
            implemented_properties = ('energy', 'forces', 'stress')

            def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                energy = np.nan if self.atoms.get_volume() > 40 else -1.0
                self.results = {
                    'energy': energy,
                    'forces': np.zeros((len(self.atoms), 3)),
                    'stress': np.array([-pull] * 3 + [0.0] * 3),
                }

        return _Scripted()


@pytest.mark.parametrize(
    ('operation', 'parameters', 'pull', 'reason'),
    [
        ('forces', {}, 0.0, 'non_finite'),
        ('relax', {'fmax': 0.01, 'max_steps': 300, 'relax_cell': True}, 5.0, 'exploded'),
    ],
)
def test_runner_isolates_failing_structures(tmp_path, monkeypatch, operation, parameters, pull, reason):
    """A structure with NaN results or an exploding relaxation is written as `<key>.failed.json`; the batch goes on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, 'load_calculator', lambda settings: ScriptedCalculator(pull))
    small = StructureRecord.from_pymatgen(bcc_niobium(), label='small')  # 36.6 Å^3
    large = StructureRecord.from_pymatgen(
        Structure(Lattice.cubic(3.6), ['Nb', 'Nb'], [[0, 0, 0], [0.5, 0.5, 0.5]]), label='large'
    )  # 46.7 Å^3: NaN energy
    write_datafile('s.h5', [large, small] if reason == 'non_finite' else [small])
    (tmp_path / 'input.json').write_text(
        json.dumps(
            {'operation': operation, 'parameters': parameters, 'structures': 's.h5', 'settings': protocol_settings()}
        )
    )
    assert runner.main(['input.json']) == 0
    failed = 'large' if reason == 'non_finite' else 'small'
    assert json.loads((tmp_path / 'results' / f'{failed}.failed.json').read_text())['reason'] == reason
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert status['failed'] == 1
    assert not (tmp_path / 'results' / 'running.json').exists()
    if reason == 'non_finite':
        assert (tmp_path / 'results' / 'small.json').exists()


FAULTY_RUNNER = '''#!{python}
"""A stand-in for crystalgan-mlip: `crash*` kills the run, `boom*` explodes unless the cell is fixed, others succeed."""
import json, os, sys
from aiida_crystalgan.io import DataFile
from aiida_crystalgan.io.status import write_failure, write_status

config = json.load(open(sys.argv[1]))
os.makedirs('results', exist_ok=True)
with DataFile(config['structures']) as structures:
    for record in structures:
        json.dump({{'key': record.label}}, open('results/running.json', 'w'))
        if record.label.startswith('crash'):
            os._exit(9)
        if record.label.startswith('boom') and config['parameters'].get('relax_cell', True):
            write_failure('results', record.label, 'exploded', 'volume x 10')
            continue
        n = len(record.numbers)
        result = {{'energy': -1.0, 'forces': [[0.0] * 3] * n, 'stress': [[0.0] * 3] * 3, 'converged': True, 'steps': 1,
                  'cell': record.cell.tolist(), 'positions': record.positions.tolist()}}
        json.dump(result, open(f'results/{{record.label}}.json', 'w'))
write_status('results', 0, 'done')
'''


def test_crash_and_explosion_are_isolated(aiida_localhost, tmp_path):
    """The structure a runner dies on fails alone (525); an exploded relaxation is retried once with a fixed cell."""
    script = tmp_path / 'faulty-mlip'
    script.write_text(FAULTY_RUNNER.format(python=sys.executable))
    script.chmod(0o755)
    code = orm.InstalledCode(
        label='faulty-mlip',
        computer=aiida_localhost,
        filepath_executable=str(script),
        default_calc_job_plugin='crystalgan.mlip',
    ).store()
    structures = {'a': bcc_niobium(), 'crash': bcc_niobium(0.01), 'boom': bcc_niobium(0.02), 'b': bcc_niobium(0.03)}
    parameters = {'fmax': 0.05, 'max_steps': 10, 'relax_cell': True}
    results, node = run_get_node(MlipEngineWorkChain, **engine_inputs(code, 'relax', parameters, structures))
    assert node.is_finished_ok, node.exit_message
    assert set(results['relaxed_structures']) == {'a', 'boom', 'b'}
    assert (
        results['failures'].get_dict()['crash']['exit_status']
        == MlipEngineWorkChain.exit_codes.ERROR_STRUCTURE_CRASHED.status
    )
    calculations = calculations_of(node)
    assert sorted(calculations[0].inputs.structures) == ['a', 'b', 'boom', 'crash']
    assert all('crash' not in c.inputs.structures for c in calculations[1:]), 'the culprit is not rerun'
    assert list(calculations[-1].inputs.structures) == ['boom']
    assert calculations[-1].inputs.parameters['relax_cell'] is False
    assert len(calculations) <= 3


# --- an MD that the soft wall-clock limit cuts continues from its last step ------------------------------------------
# What is bit for bit: on one machine and thread count, CHGNet gives the same forces for the same positions, so a
# continued trajectory equals the uninterrupted one exactly, with the Nose-Hoover chain (its `eta`/`p_eta` are
# restored) and with Langevin (the random generator's state is restored). Across machines or thread counts the
# floating-point sums may differ in the last bits, as between any two runs of the same MD.

#: A limit that every step overshoots: each run of the runner makes exactly one MD step (it always makes one).
NO_TIME = 1e-9


@pytest.fixture(scope='module')
def chgnet_model():
    """CHGNet loaded once for the runner tests (the runner itself loads it once per run)."""
    from chgnet.model import CHGNet

    return CHGNet.load(model_name='0.3.0', use_device='cpu', verbose=False)


def run_runner(directory: Path, parameters: dict, limit: float | None = None, restart: str | None = None) -> int:
    """Run ``crystalgan-mlip`` in ``directory`` on one perturbed bcc Nb cell `nb`; return its exit code."""
    directory.mkdir(exist_ok=True)
    if not (directory / 's.h5').exists():
        write_datafile(str(directory / 's.h5'), [StructureRecord.from_pymatgen(bcc_niobium(0.05, seed=1), label='nb')])
    config = {
        'operation': 'md',
        'parameters': parameters,
        'structures': 's.h5',
        'settings': protocol_settings(),
        'max_wallclock_seconds': limit,
        'restarts': {'nb': restart} if restart else {},
    }
    (directory / 'input.json').write_text(json.dumps(config))
    with contextlib.chdir(directory):
        return runner.main(['input.json'])


def read_frames(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return dict(npz)


@pytest.mark.parametrize('thermostat', ['nose-hoover', 'langevin'])
def test_runner_continues_a_cut_md_bit_for_bit(tmp_path, monkeypatch, chgnet_model, thermostat):
    """Cut after every step, continued four times: the frames of the uncut run, none repeated, bit for bit."""
    from chgnet.model.dynamics import CHGNetCalculator

    monkeypatch.setattr(runner, 'load_calculator', lambda settings: CHGNetCalculator(model=chgnet_model))
    parameters = {'temperature': 900, 'steps': 5, 'timestep': 2.0, 'sample_interval': 2, 'seed': 3}
    parameters['thermostat'] = thermostat

    assert run_runner(tmp_path / 'uncut', parameters) == EXIT_OK
    uncut = read_frames(tmp_path / 'uncut' / 'results' / 'nb.npz')

    cut = tmp_path / 'cut'
    restart_file = cut / 'results' / f'nb{RESTART_SUFFIX}'
    codes, cut_steps = [], []
    while not codes or codes[-1] == EXIT_SOFT_WALLCLOCK:
        codes.append(run_runner(cut, parameters, NO_TIME, str(restart_file) if codes else None))
        if restart_file.exists():
            cut_steps.append(MdRestart.load(restart_file).step)
    assert codes == [EXIT_SOFT_WALLCLOCK] * 4 + [EXIT_OK]
    assert cut_steps == [1, 2, 3, 4], 'one step per run: cuts on frame steps (2, 4) and between them (1, 3)'
    assert not restart_file.exists(), 'the finished run removes the restart file it continued from'
    continued = read_frames(cut / 'results' / 'nb.npz')

    assert list(continued['steps']) == [0, 2, 4], 'steps // sample_interval + 1 frames, none repeated'
    for name in FRAME_ARRAYS:
        assert np.array_equal(continued[name], uncut[name]), name


def test_restart_of_another_md_is_refused(tmp_path, monkeypatch):
    """A restart file that does not belong to the MD (another seed, temperature...) is an input error, not a guess."""
    monkeypatch.setattr(runner, 'load_calculator', lambda settings: LennardJones(sigma=2.6, epsilon=0.3, rc=5.5))
    parameters = {'temperature': 300, 'steps': 4, 'timestep': 1.0, 'sample_interval': 1, 'seed': 1}
    parameters['thermostat'] = 'nose-hoover'
    assert run_runner(tmp_path, parameters, NO_TIME) == EXIT_SOFT_WALLCLOCK
    restart = str(tmp_path / 'results' / f'nb{RESTART_SUFFIX}')
    assert run_runner(tmp_path, {**parameters, 'seed': 2}, NO_TIME, restart) == EXIT_INVALID_INPUT
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert "MD parameters ['seed'] differ" in status['message']


def test_md_cut_by_the_wall_clock_continues_in_the_next_calculation(mlip_code):
    """A real run whose 1 s wall clock cuts a Langevin MD after its first step; the handler continues it.

    The restart file goes from the first calculation's ``restarts`` output to the second one's input; the final
    trajectory has the requested frames, its first frames are those of the cut run, and it equals an uncut run.
    """
    parameters = {'temperature': 900, 'steps': 2, 'timestep': 2.0, 'sample_interval': 1, 'seed': 5}
    parameters['thermostat'] = 'langevin'
    structures = {'nb': bcc_niobium(0.05, seed=1)}
    inputs = engine_inputs(mlip_code, 'md', parameters, structures, options=orm.Dict({'max_wallclock_seconds': 1}))
    inputs['max_iterations'] = orm.Int(1)  # a cut that advanced the MD is a free restart
    results, node = run_get_node(MlipEngineWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    first, second = calculations_of(node)
    assert first.exit_status == MlipCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
    assert second.inputs.restarts['nb'].uuid == first.outputs.restarts['nb'].uuid
    assert 'restarts' not in second.outputs

    trajectory = results['trajectories']['nb']
    assert list(trajectory.get_array('steps')) == [0, 1, 2]
    restart = MdRestart.load(io.BytesIO(first.outputs.restarts['nb'].get_content(mode='rb')))
    assert restart.step == 1
    written = restart.frames
    assert list(written['steps']) == [0, 1], 'the cut run wrote frames 0 and 1; the continuation starts at 2'
    assert np.array_equal(trajectory.get_array('positions')[:2], written['positions'])
    assert np.array_equal(trajectory.get_array('velocities')[:2], written['velocities'])

    uncut_results, uncut = run_get_node(MlipEngineWorkChain, **engine_inputs(mlip_code, 'md', parameters, structures))
    assert uncut.is_finished_ok and len(calculations_of(uncut)) == 1
    reference = uncut_results['trajectories']['nb']
    for name in ('positions', 'velocities', 'energies', 'forces', 'stress', 'temperatures'):
        assert np.array_equal(trajectory.get_array(name), reference.get_array(name)), name
