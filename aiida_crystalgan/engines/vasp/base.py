"""aiida-vasp's ``VaspWorkChain`` with MD-aware restarts and handlers for the VASP failures of structure searches.

aiida-vasp's own handlers stay active and are reused: electronic non-convergence (``handler_electronic_conv``: ALGO
Fast->Normal, NELM->150, smaller AMIX, then ALGO=All) and VASP that did not start. Relaxations stopped by NSW or the
wall clock are continued here rather than by aiida-vasp's ``handler_unfinished_calc_ionic`` / ``handler_ionic_conv``,
so that they start from the CONTCAR and stop after ``max_relax_continuations``. Continuations that advanced (an MD
that ran steps, a relaxation that left a CONTCAR) do not count toward ``max_iterations``, which stays the budget of
the error handlers: an MD of any length runs across any number of wall-clock stops, and a relaxation is bounded by
``max_relax_continuations`` alone.
The handlers added here select on the exit codes by which the parser (``parsers/vasp.py``) names VASP's errors, and
run before aiida-vasp's:

==========================  ===========================================================================================
handler                     what it changes
==========================  ===========================================================================================
ions too close              nothing: aborts with ``ERROR_IONS_TOO_CLOSE`` (the structure is unphysical)
ZPOTRF / ZTRTRI             ISYM=0, POTIM halved for relaxations, continue from the last structure, fresh wavefunctions
ZHEGV in EDDDAV             ALGO=All (conjugate gradient, no Davidson), fresh wavefunctions
PSSYEVX/subspace rotation   ALGO=Normal (from Fast/VeryFast), else ALGO=All
linearly dependent WFINIT   ENCUT x 1.1 (more plane waves per band), ALGO=Normal, fresh wavefunctions
MD out of walltime          continue from the CONTCAR positions and velocities with NSW = the steps still to run; the
                            interrupted trajectory becomes an ``md_segments`` output
relaxation at NSW/walltime  continue from the CONTCAR geometry (cell and positions), at most
                            ``max_relax_continuations`` times (protocol ``defaults``), then fail with
                            ``ERROR_RELAX_NOT_CONVERGED``
==========================  ===========================================================================================
"""

from __future__ import annotations

import io
from typing import Any

import ase.io
from aiida import orm
from aiida.engine import ProcessHandlerReport, calcfunction, process_handler
from aiida_vasp.workchains.v2.vasp import VaspWorkChain

from aiida_crystalgan.exit_codes import define_exit_codes
from aiida_crystalgan.workflows.protocols.utils import DEFAULT_PROTOCOL
from aiida_crystalgan.workflows.restarts import WallclockRestartsMixin

from .calculation import VaspMdCalculation, read_contcar_velocities
from .inputs import get_incar, get_kpoints, get_potential_mapping, get_settings
from .protocols import load_protocols

_CODES = VaspMdCalculation.exit_codes


def read_contcar_atoms(retrieved: orm.FolderData):
    """The ASE atoms of the CONTCAR in ``retrieved``; ``None`` when there is none or it cannot be read."""
    try:
        return ase.io.read(io.StringIO(retrieved.get_object_content('CONTCAR')), format='vasp')
    except (FileNotFoundError, OSError, ValueError, IndexError, StopIteration):
        return None


@calcfunction
def get_contcar_restart(retrieved: orm.FolderData) -> dict[str, orm.Data]:
    """The last ionic geometry of an interrupted run and, after MD, its velocities (Cartesian Å/fs): its CONTCAR."""
    content = retrieved.get_object_content('CONTCAR')
    atoms = ase.io.read(io.StringIO(content), format='vasp')
    outputs = {'structure': orm.StructureData(ase=atoms)}
    velocities = read_contcar_velocities(content, len(atoms))
    if velocities is not None:
        outputs['velocities'] = orm.ArrayData({'velocities': velocities})
    return outputs


class VaspBaseWorkChain(WallclockRestartsMixin, VaspWorkChain):
    """``vasp.vasp`` with restarts for MD and the errors of random / generated structures (see module docstring)."""

    _process_class = VaspMdCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.output_namespace(
            'md_segments',
            valid_type=orm.TrajectoryData,
            dynamic=True,
            required=False,
            help='Trajectories of MD runs interrupted and continued, in order; the last part is '
            'the `trajectory` output.',
        )
        spec.input(
            'max_relax_continuations',
            valid_type=orm.Int,
            help='How many times a relaxation stopped by NSW or the wall clock continues from its CONTCAR.',
        )
        define_exit_codes(spec, 'ERROR_IONS_TOO_CLOSE', 'ERROR_RELAX_NOT_CONVERGED')

    def setup(self) -> None:
        super().setup()
        self.ctx.md_segments = []
        self.ctx.relax_continuations = 0

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        operation: str = 'forces',
        parameters: dict[str, Any] | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        potential_family: str | None = None,
        potential_mapping: dict[str, str] | None = None,
        options: dict[str, Any] | None = None,
        **_,
    ):
        """Return a builder for ``operation`` on ``structure`` with the INCAR/KPOINTS of ``protocol``.

        :param parameters: the engine-independent operation parameters (``temperature``, ``fmax``...).
        :param overrides: ``incar`` (tags that win over everything), ``kpoints_spacing`` (1/Å), ``max_iterations``,
            ``max_relax_continuations``.
        :param potential_family: POTCAR family uploaded with ``aiida-vasp potcar uploadfamily``.
        :param potential_mapping: POTCAR symbol per element or kind, over aiida-vasp's recommended ones.
        :param options: scheduler options of the ``VaspCalculation`` (``resources``, ``max_wallclock_seconds``...),
            over the protocol's ``default_options``.
        """
        protocols = load_protocols()
        protocol = protocol or DEFAULT_PROTOCOL
        overrides = overrides or {}
        incar = get_incar(operation, parameters or {}, structure, protocol, overrides.get('incar'))
        spacing = overrides.get('kpoints_spacing', protocols['protocols'][protocol]['kpoints_spacing'])

        builder = cls.get_builder()
        builder.code = code
        builder.structure = structure
        builder.parameters = orm.Dict({'incar': incar})
        builder.kpoints = get_kpoints(structure, spacing)
        builder.potential_family = orm.Str(potential_family or protocols['default_potential_family'])
        builder.potential_mapping = orm.Dict(get_potential_mapping(structure, potential_mapping))
        builder.settings = orm.Dict(get_settings(operation, parameters))
        builder.calc.metadata.options = {**protocols['default_options'], **(options or {})}
        if 'max_iterations' in overrides:
            builder.max_iterations = orm.Int(overrides['max_iterations'])
        builder.max_relax_continuations = orm.Int(
            overrides.get('max_relax_continuations', protocols['defaults']['max_relax_continuations'])
        )
        return builder

    def _is_md(self) -> bool:
        return self.ctx.inputs.parameters.get('ibrion') == 0 and self.ctx.inputs.parameters.get('nsw', 0) > 0

    def _abort(self, message: str) -> ProcessHandlerReport:
        self.report(message)
        return ProcessHandlerReport(True, self.exit_codes.ERROR_OTHER_INTERVENTION_NEEDED.format(message=message))

    def _continue_md(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Continue an MD from the CONTCAR positions and velocities for the steps it has still to run."""
        if 'trajectory' not in node.outputs:
            return self._abort('the interrupted MD has no trajectory to continue from')
        done = node.outputs.trajectory.numsteps
        remaining = int(self.ctx.inputs.parameters['nsw']) - done
        if remaining < 1:
            return self._abort(f'the interrupted MD already ran {done} steps: nothing to continue')
        restart = get_contcar_restart(node.outputs.retrieved)
        self.ctx.md_segments.append(node.outputs.trajectory.uuid)
        self.ctx.inputs.structure = restart['structure']
        if 'velocities' in restart:
            self.ctx.inputs.velocities = restart['velocities']
        else:
            self.ctx.inputs.pop('velocities', None)
            self.report('the CONTCAR has no velocities: VASP draws new ones at TEBEG')
        self.ctx.inputs.parameters['nsw'] = remaining
        self.report(f'continuing the MD after {done} steps from the last positions and velocities, NSW={remaining}')
        self.free_restart(f'the interrupted MD ran {done} steps')
        return ProcessHandlerReport(True)

    @process_handler(priority=1050, exit_codes=[_CODES.ERROR_VASP_IONS_TOO_CLOSE])
    def handle_ions_too_close(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Abort: VASP found ions closer than their cores allow, no INCAR tag makes this structure sensible."""
        self.report('VASP reports ions too close to each other: aborting, the structure must be discarded')
        return ProcessHandlerReport(True, self.exit_codes.ERROR_IONS_TOO_CLOSE)

    @process_handler(priority=1040, exit_codes=[_CODES.ERROR_VASP_ZPOTRF])
    def handle_zpotrf(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """ZPOTRF/ZTRTRI (Cholesky of the overlap failed): ISYM=0, halve POTIM of a relaxation, restart fresh."""
        parameters = self.ctx.inputs.parameters
        if self._is_md():
            report = self._continue_md(node)
            if report.exit_code.status:
                return report
        else:
            if parameters.get('nsw', 0) > 0 and parameters.get('ibrion', -1) in (1, 2, 3):
                parameters['potim'] = float(parameters.get('potim', 0.5)) / 2
            if 'structure' in node.outputs:
                self.ctx.inputs.structure = node.outputs.structure
        parameters['isym'] = 0
        self.report(f'ZPOTRF/ZTRTRI: restarting from scratch with ISYM=0, POTIM={parameters.get("potim")}')
        return ProcessHandlerReport(True)

    @process_handler(priority=1030, exit_codes=[_CODES.ERROR_VASP_EDDDAV_ZHEGV])
    def handle_edddav_zhegv(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """ZHEGV failed in the Davidson solver (EDDDAV): switch to ALGO=All and restart from scratch."""
        if str(self.ctx.inputs.parameters.get('algo', 'normal')).lower() == 'all':
            return self._abort('ZHEGV failed in EDDDAV although ALGO=All')
        self.ctx.inputs.parameters['algo'] = 'All'
        self.report('ZHEGV failed in EDDDAV: restarting from scratch with ALGO=All')
        return ProcessHandlerReport(True)

    @process_handler(priority=1020, exit_codes=[_CODES.ERROR_VASP_SUBSPACE_ROTATION])
    def handle_subspace_rotation(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """PSSYEVX/PDSYEVX in the subspace rotation: ALGO=Normal (from Fast/VeryFast), otherwise ALGO=All."""
        algo = str(self.ctx.inputs.parameters.get('algo', 'normal')).lower()
        if algo == 'all':
            return self._abort('the subspace rotation failed although ALGO=All')
        self.ctx.inputs.parameters['algo'] = 'Normal' if algo in ('fast', 'veryfast') else 'All'
        self.report(f'subspace rotation failed: ALGO {algo} -> {self.ctx.inputs.parameters["algo"]}')
        return ProcessHandlerReport(True)

    @process_handler(priority=1010, exit_codes=[_CODES.ERROR_VASP_WFINIT_LINEAR_DEPENDENCE])
    def handle_wfinit_linear_dependence(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Orbitals linearly dependent at WFINIT: ENCUT x 1.1 and ALGO=Normal, restart from scratch."""
        parameters = self.ctx.inputs.parameters
        if 'encut' not in parameters:
            return self._abort('orbitals linearly dependent at WFINIT and no ENCUT to raise')
        parameters['encut'] = round(float(parameters['encut']) * 1.1, 1)
        parameters['algo'] = 'Normal'
        self.report(f'orbitals linearly dependent at WFINIT: ENCUT={parameters["encut"]}, ALGO=Normal')
        return ProcessHandlerReport(True)

    @process_handler(priority=915, exit_codes=[_CODES.ERROR_DID_NOT_FINISH, _CODES.ERROR_IONIC_NOT_CONVERGED])
    def handle_unfinished_relaxation(self, node: orm.CalcJobNode) -> ProcessHandlerReport | None:
        """A relaxation stopped by NSW or the wall clock: continue from its CONTCAR, ``max_relax_continuations`` times.

        Without a readable CONTCAR (VASP stopped before its first ionic step ended) the run starts again from the
        geometry it started from; that counts as a continuation too.
        """
        parameters = self.ctx.inputs.parameters
        if self._is_md() or parameters.get('nsw', 0) < 1 or parameters.get('ibrion', -1) not in (1, 2, 3):
            return None
        done, limit = self.ctx.relax_continuations, self.inputs.max_relax_continuations.value
        if done >= limit:
            self.report(f'the relaxation is not converged after {done} continuations (max_relax_continuations)')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_RELAX_NOT_CONVERGED)
        self.ctx.relax_continuations += 1
        if read_contcar_atoms(node.outputs.retrieved) is None:
            self.report('the relaxation stopped without a readable CONTCAR: starting it again from its last input')
        else:
            self.ctx.inputs.structure = get_contcar_restart(node.outputs.retrieved)['structure']
            self.report(f'continuing the relaxation from its CONTCAR ({done + 1} of {limit} continuations)')
            self.free_restart('the relaxation advanced to a new geometry')
        self._setup_restart(node)
        self.update_magmom(node)
        return ProcessHandlerReport(True)

    @process_handler(priority=920, exit_codes=[_CODES.ERROR_DID_NOT_FINISH])
    def handle_md_out_of_walltime(self, node: orm.CalcJobNode) -> ProcessHandlerReport | None:
        """An MD stopped before NSW (walltime): continue from its last positions and velocities.

        Relaxations that ran out of walltime are continued by ``handle_unfinished_relaxation``.
        """
        if not self._is_md():
            return None
        return self._continue_md(node)

    def results(self):
        """Expose the last calculation's outputs and the trajectories of the interrupted MD parts."""
        exit_code = super().results()
        if self.ctx.md_segments:
            self.out(
                'md_segments',
                {f'part_{index:03d}': orm.load_node(uuid) for index, uuid in enumerate(self.ctx.md_segments)},
            )
        return exit_code
