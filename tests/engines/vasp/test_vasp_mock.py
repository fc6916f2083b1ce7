"""Full ``vasp.vasp`` runs of the VASP engine through aiida-vasp's ``mock-vasp`` and this folder's ``registry``."""

from __future__ import annotations

import io

import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_vasp.calcs.vasp import VaspCalculation

from aiida_crystalgan.engines.base import limit_engine_jobs, load_engine
from aiida_crystalgan.engines.vasp import VaspBaseWorkChain, VaspEngineWorkChain
from aiida_crystalgan.engines.vasp.calculation import VaspMdCalculation, read_contcar_velocities
from aiida_crystalgan.engines.vasp.results import EV_PER_A3_PER_GPA
from aiida_crystalgan.workflows.generation import GenerationWorkChain, arm_share, validation_budget
from aiida_crystalgan.workflows.phonons import PhononWorkChain


@pytest.fixture
def run_engine(vasp_code, potcar_family, vasp_options):
    """Run the VASP engine on a batch with the fake POTCAR family and return ``(results, node)``."""

    def run(operation: str, parameters: dict, structures: dict, incar: dict | None = None, **settings):
        settings = {'potential_family': potcar_family, 'incar': incar or {}, **settings}
        return run_get_node(
            VaspEngineWorkChain,
            code=vasp_code,
            operation=orm.Str(operation),
            parameters=orm.Dict(parameters),
            structures=structures,
            settings=orm.Dict(settings),
            options=orm.Dict(vasp_options),
        )

    return run


def calculations(engine: orm.WorkChainNode, key: str) -> list[orm.CalcJobNode]:
    """The ``VaspCalculation``s run for structure ``key``, in order."""
    vasp = engine.base.links.get_outgoing(link_label_filter=f'vasp_{key}').one().node
    return sorted((node for node in vasp.called if isinstance(node, orm.CalcJobNode)), key=lambda node: node.ctime)


def test_entry_point():
    assert load_engine('vasp') is VaspEngineWorkChain


def test_forces(run_engine, bcc_niobium):
    """Static run: energy, forces and the stress converted from VASP's kBar (compression positive) to eV/Å^3."""
    results, node = run_engine('forces', {}, {'nb': bcc_niobium()})
    assert node.is_finished_ok, node.exit_message
    result = results['results']['nb']
    misc = calculations(node, 'nb')[0].outputs.misc.get_dict()
    assert np.allclose(result.get_array('forces'), misc['forces'])
    assert np.allclose(result.get_array('stress'), -0.1 * EV_PER_A3_PER_GPA * np.array(misc['stress']))
    assert result.base.attributes.get('energy') == pytest.approx(misc['total_energies']['energy_extrapolated'])
    assert result.base.attributes.get('energy_per_atom') == pytest.approx(result.base.attributes.get('energy') / 2)
    assert result.base.attributes.get('converged')
    assert calculations(node, 'nb')[0].process_class is VaspMdCalculation, 'loadable without an entry point'


def test_relax(run_engine, bcc_niobium):
    """Relaxation: EDIFFG=-fmax, the relaxed structure and its forces below fmax."""
    results, node = run_engine('relax', {'fmax': 0.05, 'relax_cell': False, 'max_steps': 20}, {'nb': bcc_niobium(3.31)})
    assert node.is_finished_ok, node.exit_message
    incar = calculations(node, 'nb')[0].inputs.parameters.get_dict()
    assert (incar['ediffg'], incar['isif'], incar['nsw'], incar['ibrion']) == (-0.05, 2, 20, 2)
    assert results['results']['nb'].base.attributes.get('max_force') < 0.05
    assert isinstance(results['relaxed_structures']['nb'], orm.StructureData)


def contcar_positions(calculation: orm.CalcJobNode) -> np.ndarray:
    """The Cartesian positions of the CONTCAR that ``calculation`` retrieved."""
    content = calculation.outputs.retrieved.base.repository.get_object_content('CONTCAR')
    return ase.io.read(io.StringIO(content), format='vasp').get_positions()


def test_relaxation_continues_from_its_contcar(run_engine, bcc_niobium):
    """Stopped by NSW (3 steps, 7 needed) or by the wall clock (after 2 steps), a relaxation continues from the
    geometry of its CONTCAR, not from the start, until it converges within ``max_relax_continuations``; these
    continuations do not use up ``max_iterations`` (1 here), the budget of the error handlers.
    """
    relax = {'fmax': 0.05, 'relax_cell': False, 'max_steps': 3}
    structures = {'nsw': bcc_niobium(3.31), 'walltime': bcc_niobium(3.32, label='walltime')}
    results, node = run_engine('relax', relax, structures, max_relax_continuations=2, max_iterations=1)
    assert node.is_finished_ok, node.exit_message
    ionic_not_converged = VaspCalculation.exit_codes.ERROR_IONIC_NOT_CONVERGED.status
    did_not_finish = VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH.status
    expected = {
        'nsw': [ionic_not_converged, ionic_not_converged, 0],
        'walltime': [did_not_finish, ionic_not_converged, 0],
    }
    for key, statuses in expected.items():
        runs = calculations(node, key)
        assert [run.exit_status for run in runs] == statuses, key
        for previous, continued in zip(runs, runs[1:]):
            start = continued.inputs.structure.get_ase().get_positions()
            assert np.allclose(start, contcar_positions(previous), atol=1e-8), f'{key}: not from the CONTCAR'
            assert not np.allclose(start, previous.inputs.structure.get_ase().get_positions(), atol=1e-4)
        assert results['results'][key].base.attributes.get('max_force') < 0.05

    _, capped = run_engine('relax', relax, {'nsw': bcc_niobium(3.31)}, max_relax_continuations=1)
    assert len(calculations(capped, 'nsw')) == 2, "the cap, not aiida-vasp's max_iterations (5), stops it"
    assert capped.exit_status == VaspEngineWorkChain.exit_codes.ERROR_TOO_FEW_SUCCEEDED.status
    failure = capped.outputs.failures.get_dict()['nsw']
    assert failure['exit_status'] == VaspEngineWorkChain.exit_codes.ERROR_RELAX_NOT_CONVERGED.status


def test_md(run_engine, bcc_niobium):
    """MD of exactly NSW steps is a success (no ionic-convergence check), sampled every `sample_interval`."""
    parameters = {'temperature': 300, 'steps': 4, 'timestep': 2.0, 'sample_interval': 2}
    results, node = run_engine('md', parameters, {'nb': bcc_niobium(3.32)})
    assert node.is_finished_ok, node.exit_message
    calculation = calculations(node, 'nb')[0]
    incar = calculation.inputs.parameters.get_dict()
    assert {key: incar[key] for key in ('ibrion', 'isym', 'mdalgo', 'nsw', 'potim', 'tebeg', 'teend')} == {
        'ibrion': 0,
        'isym': 0,
        'mdalgo': 2,
        'nsw': 4,
        'potim': 2.0,
        'tebeg': 300.0,
        'teend': 300.0,
    }
    trajectory = results['trajectories']['nb']
    assert trajectory.numsteps == 2
    assert np.allclose(trajectory.get_array('times'), [0.0, 4.0])
    assert trajectory.get_array('forces').shape == (2, 2, 3)
    assert trajectory.get_array('stress').shape == (2, 3, 3)
    assert trajectory.get_array('energies').shape == (2,)
    assert trajectory.get_array('temperatures')[0] == pytest.approx(300.0)
    raw = calculation.outputs.trajectory
    cartesian = raw.get_array('positions')[2] @ raw.get_array('cells')[2]
    assert np.allclose(trajectory.get_array('positions')[1], cartesian)


def test_md_walltime_continues_with_velocities(run_engine, bcc_niobium):
    """An MD cut after 2 of 4 steps continues from the CONTCAR positions and velocities for the 2 steps left, and
    the continuation does not use up ``max_iterations`` (1 here)."""
    parameters = {'temperature': 300, 'steps': 4, 'timestep': 2.0}
    results, node = run_engine('md', parameters, {'nb': bcc_niobium(3.33, label='walltime')}, max_iterations=1)
    assert node.is_finished_ok, node.exit_message
    first, second = calculations(node, 'nb')
    assert first.exit_status == 700
    assert second.inputs.parameters['nsw'] == 2
    velocities = second.inputs.velocities.get_array('velocities')
    assert velocities.shape == (2, 3) and np.abs(velocities).max() > 0
    poscar = second.base.repository.get_object_content('POSCAR')
    assert np.allclose(read_contcar_velocities(poscar, 2), velocities, atol=1e-9)
    vasp = node.base.links.get_outgoing(link_label_filter='vasp_nb').one().node
    assert vasp.outputs.md_segments['part_000'].uuid == first.outputs.trajectory.uuid
    trajectory = results['trajectories']['nb']
    assert trajectory.numsteps == 4
    assert np.allclose(trajectory.get_array('times'), [0, 2, 4, 6])
    assert np.isfinite(trajectory.get_array('temperatures')).all()


def test_error_handlers(run_engine, bcc_niobium):
    """One batch: ZPOTRF fixed by this package's handler, NELM by aiida-vasp's, ions too close abort that structure.

    The batch succeeds: the structure with ions too close is reported in ``failures``, the others keep their results.
    The other handlers are unit-tested on the failed outputs of ``registry/errors`` (``test_vasp_handlers.py``).
    """
    lattice = {'zpotrf': 3.40, 'nelm': 3.44, 'too_close': 3.45}  # distinct inputs: distinct registry entries
    structures = {case: bcc_niobium(a, label=case) for case, a in lattice.items()}
    results, node = run_engine('forces', {}, structures, incar={'nelm': 8})
    assert node.is_finished_ok, node.exit_message
    assert set(results['results']) == {'zpotrf', 'nelm'}
    failures = results['failures'].get_dict()
    assert set(failures) == {'too_close'}
    assert failures['too_close']['exit_status'] == VaspEngineWorkChain.exit_codes.ERROR_IONS_TOO_CLOSE.status
    assert results['failures'].creator.inputs.structure_too_close.uuid == structures['too_close'].uuid

    changed = {}
    for case in ('zpotrf', 'nelm'):
        first, second = calculations(node, case)
        old, new = first.inputs.parameters.get_dict(), second.inputs.parameters.get_dict()
        changed[case] = {key: new[key] for key in new if old.get(key) != new[key]}
    assert changed == {'zpotrf': {'isym': 0}, 'nelm': {'algo': 'normal'}}
    too_close = node.base.links.get_outgoing(link_label_filter='vasp_too_close').one().node
    assert too_close.exit_status == VaspBaseWorkChain.exit_codes.ERROR_IONS_TOO_CLOSE.status
    assert len(too_close.called) == 1


def test_phonons_through_the_vasp_engine(vasp_code, potcar_family, vasp_options):
    """``PhononWorkChain`` is engine-agnostic: its displaced supercells go through VASP in one engine call."""
    structure = orm.StructureData(cell=[[-1.66, 1.66, 1.66], [1.66, -1.66, 1.66], [1.66, 1.66, -1.66]])
    structure.append_atom(position=(0, 0, 0), symbols='Nb')
    engine = {
        'name': orm.Str('vasp'),
        'code': vasp_code,
        'settings': orm.Dict({'potential_family': potcar_family}),
        'options': orm.Dict(vasp_options),
    }
    builder = PhononWorkChain.get_builder_from_protocol(
        structure, engine, 'balanced', {'supercell_matrix': [2, 2, 2], 'mesh': [4, 4, 4]}
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert set(results['supercells_forces']) == {'forces_0', 'forces_1'}
    # The registry's forces come from a Lennard-Jones model, under which this bcc Nb cell has an imaginary mode.
    assert results['min_frequency'].value == pytest.approx(-1.564, abs=0.01)
    assert results['is_stable'].value is False


@pytest.mark.parametrize(
    ('max_jobs', 'arms', 'phonons', 'expected'),
    [
        (None, 2, 2, (2, None)),  # no limit: the stability protocol's own
        (8, 1, 2, (2, 4)),  # two phonon workchains of four VASP jobs each
        (8, 2, None, (4, 1)),  # per arm 4: four phonon workchains of one job (the MLIP engine's case)
        (3, 2, 4, (1, 1)),  # per arm 1
    ],
)
def test_validation_budget(max_jobs, arms, phonons, expected):
    """The generation's ``max_concurrent_jobs`` split into phonon workchains and jobs per engine call, per arm."""
    assert validation_budget(max_jobs, arms, phonons) == expected
    if max_jobs is not None:
        phonon_workchains, per_call = expected
        assert arms * phonon_workchains * per_call <= max_jobs


def test_generation_limit_caps_vasp_jobs_in_flight(run_engine, vasp_code, bcc_niobium):
    """``max_concurrent_jobs`` of the generation protocol reaches the VASP engine (``max_concurrent``, the smaller
    of the two): count the VASP jobs in flight."""
    builder = GenerationWorkChain.get_builder_from_protocol(
        vasp_code, {'name': orm.Str('vasp'), 'code': vasp_code}, overrides={'max_concurrent_jobs': 2}
    )
    per_call = arm_share(builder.max_concurrent_jobs.value, 1)  # the cheap pass of the GAN arm alone
    engine = limit_engine_jobs({'name': orm.Str('vasp'), 'settings': orm.Dict({'max_concurrent': 5})}, per_call)
    assert engine['settings']['max_concurrent'] == 2
    assert limit_engine_jobs({'name': orm.Str('mlip')}, per_call) == {'name': orm.Str('mlip')}

    structures = {f's{index}': bcc_niobium() for index in range(5)}
    results, node = run_engine('forces', {}, structures, max_concurrent=engine['settings']['max_concurrent'])
    assert node.is_finished_ok, node.exit_message
    jobs = [job for key in structures for job in calculations(node, key)]
    assert len(jobs) == 5 and set(results['results']) == set(structures)
    events = sorted([(job.ctime, 1) for job in jobs] + [(job.mtime, -1) for job in jobs])
    in_flight = np.cumsum([change for _, change in events])
    assert in_flight.max() == 2, 'two at a time: never more, and the limit is used'
