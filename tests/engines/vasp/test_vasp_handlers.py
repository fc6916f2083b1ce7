"""Each restart handler of ``VaspBaseWorkChain``, handed a failed calculation node: what does it change?

The failed nodes carry the files of this folder's registry (``registry/errors``, ``registry/md-walltime``) and the
exit status that the engine's parser gives them: the code of the VASP error named in ``vasp_output``, if any.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.common import LinkType
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from aiida_vasp.calcs.vasp import VaspCalculation
from plumpy import ProcessState

from aiida_crystalgan.engines.vasp import VaspBaseWorkChain
from aiida_crystalgan.engines.vasp.calculation import VaspMdCalculation, read_contcar_velocities
from aiida_crystalgan.parsers.vasp import named_vasp_error

REGISTRY = Path(__file__).parent / 'registry'
DID_NOT_FINISH = VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH.status
ELECTRONIC_NOT_CONVERGED = VaspCalculation.exit_codes.ERROR_ELECTRONIC_NOT_CONVERGED.status
IONIC_NOT_CONVERGED = VaspCalculation.exit_codes.ERROR_IONIC_NOT_CONVERGED.status
MD = {'temperature': 300, 'steps': 4, 'timestep': 2.0}
RELAX = {'fmax': 0.05, 'max_steps': 20}


@pytest.fixture
def generate_workchain(vasp_code, potcar_family, vasp_options, bcc_niobium):
    """A ``VaspBaseWorkChain`` for ``operation``, set up as just before its first calculation."""

    def generate(operation: str = 'forces', parameters: dict | None = None, incar: dict | None = None):
        builder = VaspBaseWorkChain.get_builder_from_protocol(
            vasp_code,
            bcc_niobium(),
            operation=operation,
            parameters=parameters or {},
            potential_family=potcar_family,
            overrides={'incar': incar or {}},
            options=vasp_options,
        )
        process = instantiate_process(get_manager().get_runner(), builder)
        process.setup()
        process.init_inputs()
        return process

    return generate


@pytest.fixture
def failed_calculation(aiida_localhost, tmp_path, bcc_niobium):
    """A finished ``VaspCalculation`` node with the retrieved files of a registry folder.

    Its exit status is the parser's: the code of the VASP error in ``vasp_output``, else aiida-vasp's ``exit_status``.
    """

    def generate(
        exit_status: int, registry_folder: str, incar: dict | None = None, **outputs: orm.Data
    ) -> orm.CalcJobNode:
        with (REGISTRY / registry_folder / 'out' / 'vasp_output').open() as stdout:
            named = named_vasp_error(stdout)
        if named is not None:
            exit_status = VaspMdCalculation.exit_codes[named].status
        node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:vasp.vasp')
        if incar is not None:
            node.base.links.add_incoming(orm.Dict(incar).store(), LinkType.INPUT_CALC, 'parameters')
        node.set_process_state(ProcessState.FINISHED)
        node.set_exit_status(exit_status)
        node.store()
        retrieved = orm.FolderData()
        retrieved.base.repository.put_object_from_tree(str(REGISTRY / registry_folder / 'out'))
        outputs = {
            'retrieved': retrieved,
            'remote_folder': orm.RemoteData(computer=aiida_localhost, remote_path=str(tmp_path)),
            **outputs,
        }
        for label, output in outputs.items():
            output.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label=label)
            output.store()
        return node

    return generate


def md_trajectory(frames: int) -> orm.TrajectoryData:
    """A trajectory of ``frames`` steps as the VASP parser makes it (only its length matters here)."""
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(['Nb', 'Nb'], np.zeros((frames, 2, 3)), cells=np.stack([np.eye(3) * 3.3] * frames))
    return trajectory


@pytest.mark.parametrize(
    ('case', 'incar', 'changed'),
    [
        ('zpotrf', {}, {'isym': 0}),
        ('edddav', {}, {'algo': 'All'}),
        ('subspace', {}, {'algo': 'Normal'}),
        ('subspace', {'algo': 'Normal'}, {'algo': 'All'}),
        ('wfinit', {}, {'encut': 440.0, 'algo': 'Normal'}),
    ],
)
def test_error_handler_changes(generate_workchain, failed_calculation, case, incar, changed):
    """The handler of each VASP error changes exactly these INCAR tags and asks for a restart."""
    process = generate_workchain(incar=incar)
    before = dict(process.ctx.inputs.parameters)
    node = failed_calculation(DID_NOT_FINISH, f'errors/{case}/calc-000')
    handler = {
        'zpotrf': process.handle_zpotrf,
        'edddav': process.handle_edddav_zhegv,
        'subspace': process.handle_subspace_rotation,
        'wfinit': process.handle_wfinit_linear_dependence,
    }[case]
    report = handler(node)
    assert report.do_break and report.exit_code.status == 0
    after = dict(process.ctx.inputs.parameters)
    assert {key: after[key] for key in after if before.get(key) != after[key]} == changed


def test_zpotrf_in_relaxation_halves_potim_and_continues(generate_workchain, failed_calculation, bcc_niobium):
    process = generate_workchain('relax', RELAX)
    last = bcc_niobium(3.35)
    report = process.handle_zpotrf(failed_calculation(DID_NOT_FINISH, 'errors/zpotrf/calc-000', structure=last))
    assert report.do_break
    assert process.ctx.inputs.parameters['potim'] == 0.25
    assert process.ctx.inputs.parameters['isym'] == 0
    assert process.ctx.inputs.structure.uuid == last.uuid


@pytest.mark.parametrize(
    ('handler', 'incar'),
    [
        ('handle_edddav_zhegv', {'algo': 'All'}),
        ('handle_subspace_rotation', {'algo': 'All'}),
    ],
)
def test_error_handler_gives_up(generate_workchain, failed_calculation, handler, incar):
    """When the fix is already in place the handler aborts instead of looping."""
    process = generate_workchain(incar=incar)
    case = 'edddav' if 'edddav' in handler else 'subspace'
    report = getattr(process, handler)(failed_calculation(DID_NOT_FINISH, f'errors/{case}/calc-000'))
    assert report.exit_code.status == VaspBaseWorkChain.exit_codes.ERROR_OTHER_INTERVENTION_NEEDED.status


def test_ions_too_close_aborts(generate_workchain, failed_calculation):
    process = generate_workchain()
    node = failed_calculation(DID_NOT_FINISH, 'errors/too-close/calc-000')
    too_close = VaspBaseWorkChain.exit_codes.ERROR_IONS_TOO_CLOSE.status
    assert process.handle_ions_too_close(node).exit_code.status == too_close
    assert node.exit_status == VaspMdCalculation.exit_codes.ERROR_VASP_IONS_TOO_CLOSE.status, (
        'the ZPOTRF that follows is found too, but ions too close takes precedence'
    )
    assert process.handle_zpotrf(node) is None


def test_handlers_ignore_other_errors(generate_workchain, failed_calculation):
    """An unfinished run without these messages is left to aiida-vasp's handlers."""
    process = generate_workchain()
    node = failed_calculation(DID_NOT_FINISH, 'errors/nelm/calc-000')
    for handler in (
        'handle_ions_too_close',
        'handle_zpotrf',
        'handle_edddav_zhegv',
        'handle_subspace_rotation',
        'handle_wfinit_linear_dependence',
        'handle_md_out_of_walltime',
    ):
        assert getattr(process, handler)(node) is None


def test_electronic_non_convergence_uses_aiida_vasp_handler(generate_workchain, failed_calculation):
    """aiida-vasp's ``handler_electronic_conv`` is kept: ALGO=Fast becomes Normal."""
    process = generate_workchain()
    misc = orm.Dict(
        {
            'run_status': {
                'nelm': 8,
                'electronic_converged': False,
                'finished': True,
                'consistent_nelm_breach': False,
                'contains_nelm_breach': True,
            }
        }
    )
    node = failed_calculation(ELECTRONIC_NOT_CONVERGED, 'errors/nelm/calc-000', incar={'algo': 'Fast'}, misc=misc)
    report = process.handler_electronic_conv(node)
    assert report.do_break
    assert process.ctx.inputs.parameters['algo'] == 'normal'


def test_md_out_of_walltime_continues_with_velocities(generate_workchain, failed_calculation):
    """The MD continues from the CONTCAR positions and velocities for the steps it has still to run."""
    process = generate_workchain('md', MD)
    trajectory = md_trajectory(2)
    node = failed_calculation(DID_NOT_FINISH, 'md-walltime/calc-000', trajectory=trajectory)
    report = process.handle_md_out_of_walltime(node)
    assert report.do_break and report.exit_code.status == 0
    contcar = (REGISTRY / 'md-walltime/calc-000/out/CONTCAR').read_text()
    assert process.ctx.inputs.parameters['nsw'] == 2
    assert np.allclose(process.ctx.inputs.velocities.get_array('velocities'), read_contcar_velocities(contcar, 2))
    lines = contcar.splitlines()
    fractional = np.array([line.split() for line in lines[8:10]], dtype=float)
    assert np.allclose(process.ctx.inputs.structure.get_ase().get_scaled_positions(wrap=False), fractional)
    assert process.ctx.md_segments == [trajectory.uuid]


def test_md_out_of_walltime_needs_steps_left(generate_workchain, failed_calculation):
    process = generate_workchain('md', MD)
    node = failed_calculation(DID_NOT_FINISH, 'md-walltime/calc-000', trajectory=md_trajectory(4))
    assert (
        process.handle_md_out_of_walltime(node).exit_code.status
        == VaspBaseWorkChain.exit_codes.ERROR_OTHER_INTERVENTION_NEEDED.status
    )


@pytest.mark.parametrize('exit_status', [DID_NOT_FINISH, IONIC_NOT_CONVERGED])
def test_unfinished_relaxation_continues_from_contcar(generate_workchain, failed_calculation, exit_status):
    """A relaxation stopped by the wall clock or NSW continues from its CONTCAR, not from its input or from the
    vasprun.xml structure (aiida-vasp's handlers), and only ``max_relax_continuations`` times."""
    process = generate_workchain('relax', RELAX)
    folder = 'relax-continuation/walltime/calc-000'
    node = failed_calculation(exit_status, folder)
    assert process.handle_md_out_of_walltime(node) is None
    report = process.handle_unfinished_relaxation(node)
    assert report.do_break and report.exit_code.status == 0
    contcar = ase.io.read(REGISTRY / folder / 'out' / 'CONTCAR', format='vasp')
    assert np.allclose(process.ctx.inputs.structure.get_ase().get_positions(), contcar.get_positions())
    assert np.allclose(process.ctx.inputs.structure.get_ase().cell, contcar.cell)

    process.ctx.relax_continuations = process.inputs.max_relax_continuations.value
    report = process.handle_unfinished_relaxation(failed_calculation(exit_status, folder))
    assert report.exit_code.status == VaspBaseWorkChain.exit_codes.ERROR_RELAX_NOT_CONVERGED.status


def test_unfinished_relaxation_without_contcar_starts_again(generate_workchain, failed_calculation, tmp_path):
    """Stopped before its first ionic step ended (no CONTCAR): the same input again, counted as a continuation."""
    shutil.copytree(REGISTRY / 'relax-continuation/walltime/calc-000', tmp_path / 'run')
    (tmp_path / 'run' / 'out' / 'CONTCAR').unlink()
    process = generate_workchain('relax', RELAX)
    start = process.ctx.inputs.structure
    report = process.handle_unfinished_relaxation(failed_calculation(DID_NOT_FINISH, str(tmp_path / 'run')))
    assert report.do_break and report.exit_code.status == 0
    assert process.ctx.inputs.structure is start
    assert process.ctx.relax_continuations == 1
