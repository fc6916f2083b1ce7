"""The ``vasp`` engine: one aiida-vasp ``vasp.vasp`` run (with restarts) per structure of the batch, in parallel."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ExitCode

from ..base import EngineWorkChain
from .base import VaspBaseWorkChain
from .inputs import PROTOCOLS
from .results import get_forces_result, get_md_trajectory

OVERRIDE_KEYS = {'incar', 'kpoints_spacing', 'max_iterations'}
SETTINGS_KEYS = {'potential_family', 'potential_mapping', *OVERRIDE_KEYS}


def _validate_settings(settings: orm.Dict | None, _) -> str | None:
    if settings is None:
        return None
    unknown = set(settings.get_dict()) - SETTINGS_KEYS
    if unknown:
        return f'unknown VASP engine settings {sorted(unknown)}: use {sorted(SETTINGS_KEYS)}'
    return None


def _validate_protocol(protocol: orm.Str, _) -> str | None:
    if protocol.value not in PROTOCOLS:
        return f'unknown protocol `{protocol.value}`: choose one of {", ".join(PROTOCOLS)}'
    return None


class VaspEngineWorkChain(EngineWorkChain):
    """Engine that runs VASP through aiida-vasp: ``md``, ``relax`` and ``forces`` with the standard outputs.

    ``settings``: ``potential_family`` (default ``PBE.54``), ``potential_mapping`` (POTCAR per element, e.g.
    ``{'Nb': 'Nb_pv'}``), ``incar`` (tags over the protocol), ``kpoints_spacing`` (1/Å), ``max_iterations``.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['settings'].validator = _validate_settings
        spec.inputs['protocol'].validator = _validate_protocol
        spec.outline(cls.run_vasp, cls.inspect_vasp)

    def _builder(self, key: str, structure: orm.StructureData):
        """The ``VaspBaseWorkChain`` builder of one structure from the engine inputs."""
        settings: dict[str, Any] = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        builder = VaspBaseWorkChain.get_builder_from_protocol(
            self.inputs.code, structure,
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
        """Submit one ``VaspBaseWorkChain`` per structure."""
        for key, structure in self.inputs.structures.items():
            node = self.submit(self._builder(key, structure))
            self.report(f'launched VaspBaseWorkChain<{node.pk}> for `{key}`')
            self.to_context(**{f'vasp_{key}': node})

    def inspect_vasp(self) -> ExitCode | None:
        """Map every finished run to the standard outputs; fail when one of them failed."""
        operation = self.inputs.operation.value
        failed = {}
        for key in self.inputs.structures:
            node = self.ctx[f'vasp_{key}']
            if not node.is_finished_ok:
                failed[key] = f'{node.process_label}<{node.pk}> exit status {node.exit_status}'
                continue
            if operation == 'md':
                self.out(f'trajectories.{key}', self._trajectory(node))
                continue
            self.out(f'results.{key}', get_forces_result(node.outputs.misc))
            if operation == 'relax':
                self.out(f'relaxed_structures.{key}', node.outputs.structure)
        if failed:
            message = '; '.join(f'{key}: {value}' for key, value in failed.items())
            return self.exit_codes.ERROR_CALCULATION_FAILED.format(message=message)
        return None

    def _trajectory(self, node: orm.WorkChainNode) -> orm.TrajectoryData:
        segments = node.outputs.md_segments if 'md_segments' in node.outputs else {}
        parts = [*(segments[key] for key in sorted(segments)), node.outputs.trajectory]
        kwargs = {}
        for index, trajectory in enumerate(parts):
            kwargs[f'trajectory_{index:03d}'] = trajectory
            kwargs[f'retrieved_{index:03d}'] = trajectory.creator.outputs.retrieved
        return get_md_trajectory(self.inputs.parameters, **kwargs)
