"""The ``vasp`` engine: one aiida-vasp ``vasp.vasp`` run (with restarts) per structure of the batch, in parallel.

A structure whose run fails (``ERROR_IONS_TOO_CLOSE``, a handler that gave up, NaN energies) is reported in the
``failures`` output; the others' outputs are kept and the batch fails only below the quorum. ``settings.max_concurrent``
limits the VASP runs in flight: the batch is submitted in rounds of that many.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ExitCode, ToContext, while_

from aiida_crystalgan.exit_codes import define_exit_codes

from ..base import EngineWorkChain, check_number
from ..outputs import NonFiniteError, failure, require_finite
from .base import VaspBaseWorkChain
from .inputs import PROTOCOLS, trajectory_frames
from .results import get_forces_result, get_md_trajectory, get_relax_trajectory

OVERRIDE_KEYS = {'incar', 'kpoints_spacing', 'max_iterations', 'max_relax_continuations'}
SETTINGS_KEYS = {'potential_family', 'potential_mapping', 'max_concurrent', *OVERRIDE_KEYS}
#: Upper bounds of the numerical settings: ``name: (type, lower (exclusive), upper (inclusive))``.
SETTINGS_BOUNDS = {
    'kpoints_spacing': (float, 0, 2),
    'max_iterations': (int, 0, 50),
    'max_relax_continuations': (int, -1, 50),
    'max_concurrent': (int, 0, 10_000),
}
#: The codes of ``VaspBaseWorkChain`` that are also the structure's code in the ``failures`` output.
STRUCTURE_EXIT_CODES = ('ERROR_IONS_TOO_CLOSE', 'ERROR_RELAX_NOT_CONVERGED')


def _validate_settings(settings: orm.Dict | None, _) -> str | None:
    if settings is None:
        return None
    values = settings.get_dict()
    unknown = set(values) - SETTINGS_KEYS
    if unknown:
        return f'unknown VASP engine settings {sorted(unknown)}: use {sorted(SETTINGS_KEYS)}'
    for key, bounds in SETTINGS_BOUNDS.items():
        if key in values:
            message = check_number(key, values[key], *bounds)
            if message:
                return f'VASP engine setting {message}'
    for key in ('incar', 'potential_mapping'):
        if key in values and not isinstance(values[key], dict):
            return f'VASP engine setting `{key}` must be a mapping, got {values[key]!r}'
    return None


def _validate_protocol(protocol: orm.Str, _) -> str | None:
    if protocol.value not in PROTOCOLS:
        return f'unknown protocol `{protocol.value}`: choose one of {", ".join(PROTOCOLS)}'
    return None


class VaspEngineWorkChain(EngineWorkChain):
    """Engine that runs VASP through aiida-vasp: ``md``, ``relax`` and ``forces`` with the standard outputs.

    ``settings``: ``potential_family`` (default ``PBE.54``), ``potential_mapping`` (POTCAR per element, e.g.
    ``{'Nb': 'Nb_pv'}``), ``incar`` (tags over the protocol), ``kpoints_spacing`` (1/Å), ``max_iterations``,
    ``max_relax_continuations`` (over the protocol's), ``max_concurrent`` (VASP runs in flight at a time; default:
    the whole batch).
    """

    concurrency_setting = 'max_concurrent'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['settings'].validator = _validate_settings
        spec.inputs['protocol'].validator = _validate_protocol
        define_exit_codes(spec, *STRUCTURE_EXIT_CODES)  # the codes of such structures in the `failures` output
        spec.outline(cls.setup, while_(cls.runs_pending)(cls.run_vasp), cls.inspect_vasp)

    def setup(self) -> None:
        """Queue every structure of the batch."""
        self.ctx.queue = list(self.inputs.structures)

    def runs_pending(self) -> bool:
        return bool(self.ctx.queue)

    def _builder(self, key: str, structure: orm.StructureData):
        """The ``VaspBaseWorkChain`` builder of one structure from the engine inputs."""
        settings: dict[str, Any] = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        builder = VaspBaseWorkChain.get_builder_from_protocol(
            self.inputs.code,
            structure,
            operation=self.inputs.operation.value,
            parameters=self.inputs.parameters.get_dict(),
            protocol=self.inputs.protocol.value,
            overrides={key: value for key, value in settings.items() if key in OVERRIDE_KEYS},
            potential_family=settings.get('potential_family'),
            potential_mapping=settings.get('potential_mapping'),
            options=self.inputs.options.get_dict() if 'options' in self.inputs else None,
        )
        builder.metadata.call_link_label = f'vasp_{key}'
        return builder

    def run_vasp(self):
        """Submit one ``VaspBaseWorkChain`` per structure, at most ``settings.max_concurrent`` in this round."""
        limit = self.inputs.settings.get('max_concurrent') if 'settings' in self.inputs else None
        limit = limit or len(self.ctx.queue)
        batch, self.ctx.queue = self.ctx.queue[:limit], self.ctx.queue[limit:]
        calls = {}
        for key in batch:
            calls[f'vasp_{key}'] = node = self.submit(self._builder(key, self.inputs.structures[key]))
            self.report(f'launched VaspBaseWorkChain<{node.pk}> for `{key}`')
        return ToContext(**calls)

    def inspect_vasp(self) -> ExitCode | None:
        """Map every successful run to the standard outputs, every failed one to an entry of ``failures``."""
        operation = self.inputs.operation.value
        labels = {VaspBaseWorkChain.exit_codes[label].status: label for label in STRUCTURE_EXIT_CODES}
        failures = {}
        for key in self.inputs.structures:
            node = self.ctx[f'vasp_{key}']
            if not node.is_finished_ok:
                label = labels.get(node.exit_status, 'ERROR_STRUCTURE_FAILED')
                failures[key] = failure(
                    label,
                    f'{node.process_label}<{node.pk}> exit status {node.exit_status}: '
                    f'{node.exit_message or node.process_state.value}',
                )
                continue
            try:
                if operation == 'md':
                    self.out(f'trajectories.{key}', self._trajectory(node))
                    continue
                misc = node.outputs.misc.get_dict()
                require_finite(
                    energy=misc['total_energies']['energy_extrapolated'], forces=misc['forces'], stress=misc['stress']
                )
            except NonFiniteError as exception:
                failures[key] = failure('ERROR_STRUCTURE_NON_FINITE', f'{node.process_label}<{node.pk}>: {exception}')
                continue
            self.out(f'results.{key}', get_forces_result(node.outputs.misc))
            if operation == 'relax':
                self.out(f'relaxed_structures.{key}', node.outputs.structure)
                steps = self._relaxation_steps(node)
                if steps is not None:
                    self.out(f'trajectories.{key}', steps)
        return self.finish_batch(failures)

    def _relaxation_steps(self, node: orm.WorkChainNode) -> orm.TrajectoryData | None:
        """The steps of the relaxation ``node`` over all its runs (``trajectory_frames`` of them), if it has any."""
        frames = trajectory_frames(self.inputs.parameters.get_dict())
        runs = sorted(
            (run for run in node.called if isinstance(run, orm.CalcJobNode) and 'trajectory' in run.outputs),
            key=lambda run: run.ctime,
        )
        if not frames or not runs or sum(run.outputs.trajectory.numsteps for run in runs) < 2:
            return None
        parts = {f'trajectory_{index:03d}': run.outputs.trajectory for index, run in enumerate(runs)}
        return get_relax_trajectory(orm.Int(frames), **parts)

    def _trajectory(self, node: orm.WorkChainNode) -> orm.TrajectoryData:
        segments = node.outputs.md_segments if 'md_segments' in node.outputs else {}
        parts = [*(segments[key] for key in sorted(segments)), node.outputs.trajectory]
        kwargs = {}
        for index, trajectory in enumerate(parts):
            kwargs[f'trajectory_{index:03d}'] = trajectory
            kwargs[f'retrieved_{index:03d}'] = trajectory.creator.outputs.retrieved
        return get_md_trajectory(self.inputs.parameters, **kwargs)
