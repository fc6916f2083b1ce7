"""``crystalgan.mlip``: one engine operation on a batch of structures with a universal MLIP (CHGNet by default).

The executable has no defaults: :meth:`MlipCalculation.get_builder_from_protocol` completes the operation parameters,
the MLIP settings and the scheduler options with the values of the ``mlip`` protocol (``mlip.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import CalcInfo
from aiida.engine import CalcJob

from aiida_crystalgan.calculations._common import SOFT_WALLTIME_FRACTION, set_serial_defaults, single_code_calcinfo
from aiida_crystalgan.engines.base import OPERATIONS, validate_engine_inputs
from aiida_crystalgan.exit_codes import EXECUTABLE_EXIT_CODES, define_exit_codes
from aiida_crystalgan.io import DataFileWriter, StructureRecord
from aiida_crystalgan.mlip.restart import RESTART_SUFFIX
from aiida_crystalgan.workflows.protocols import ProtocolMixin

INPUT_FILE = 'input.json'
STRUCTURES_FILE = 'structures.h5'
RESULTS_FOLDER = 'results'
STDOUT_FILE = 'mlip.out'
STDERR_FILE = 'mlip.err'


def validate_inputs(inputs: dict[str, Any], context) -> str | None:
    """The engine inputs, and restart files only for MD and for structures of the batch."""
    message = validate_engine_inputs(inputs, context)
    restarts = inputs.get('restarts') or {}
    if message or not restarts:
        return message
    if inputs['operation'].value != 'md':
        return '`restarts` continue MD trajectories: give them only with the `md` operation'
    unknown = sorted(set(restarts) - set(inputs['structures']))
    if unknown:
        return f'`restarts` for structures not in the batch: {", ".join(unknown)}'
    return None


class MlipCalculation(ProtocolMixin, CalcJob):
    """Run ``crystalgan-mlip`` on a batch: the model is loaded once for every structure of the batch."""

    _protocol_file = 'mlip.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'operation',
            valid_type=orm.Str,
            validator=lambda v, _: (
                None
                if v.value in OPERATIONS
                else f'unknown operation `{v.value}`: choose one of {", ".join(OPERATIONS)}'
            ),
        )
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True)
        spec.input('parameters', valid_type=orm.Dict, help='Engine-independent operation parameters.')
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            help='MLIP settings: `model` (chgnet, mace, sevennet), `model_path`, `model_version`, `device`, '
            '`num_threads` (CPU threads per calculation). The executable needs every setting of its model: '
            '`get_builder_from_protocol` takes those not given from the `mlip` protocol.',
        )
        spec.input_namespace(
            'restarts',
            valid_type=orm.SinglefileData,
            dynamic=True,
            required=False,
            help='MD restart files by structure key (the `restarts` output of a run stopped by the soft wall-clock '
            'limit): those trajectories continue from their last step instead of starting again.',
        )
        spec.inputs.validator = validate_inputs
        set_serial_defaults(spec, 'crystalgan.mlip')
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True, required=False)
        spec.output_namespace('relaxed_structures', valid_type=orm.StructureData, dynamic=True, required=False)
        spec.output_namespace('results', valid_type=orm.ArrayData, dynamic=True, required=False)
        spec.output_namespace(
            'restarts',
            valid_type=orm.SinglefileData,
            dynamic=True,
            required=False,
            help='Restart files of the MD trajectories that the soft wall-clock limit stopped, by structure key.',
        )
        spec.output(
            'failures',
            valid_type=orm.Dict,
            required=False,
            help='The structures that failed on their own: `{key: {exit_status, exit_label, message}}`.',
        )
        define_exit_codes(spec, *EXECUTABLE_EXIT_CODES)

    @classmethod
    def get_protocol_values(
        cls,
        operation: str,
        parameters: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        settings: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """The ``parameters``, ``settings`` and scheduler ``options`` of a calculation, each completed with the values
        of ``protocol`` (``mlip.yaml``) that it leaves out.

        Settings and options replace the protocol's key by key; the settings of the chosen model (``model_settings``)
        are added. Without ``sample_interval``, MD stores ``md_frames`` frames (every ``steps // md_frames`` steps).

        :raises ValueError: for an unknown protocol.
        """
        inputs = cls.get_protocol_inputs(protocol)
        parameters = {**inputs['parameters'].get(operation, {}), **(parameters or {})}
        if operation == 'md' and 'sample_interval' not in parameters and isinstance(parameters.get('steps'), int):
            parameters['sample_interval'] = max(1, parameters['steps'] // inputs['md_frames'])
        settings = dict(settings or {})
        model = settings.get('model', inputs['settings']['model'])
        settings = {**inputs['settings'], **inputs['model_settings'].get(model, {}), **settings}
        return {'parameters': parameters, 'settings': settings, 'options': {**inputs['options'], **(options or {})}}

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structures: Mapping[str, orm.StructureData],
        operation: str,
        parameters: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        settings: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ):
        """A builder for ``operation`` on ``structures`` with the values of :meth:`get_protocol_values`.

        :param parameters: the engine-independent operation parameters (``temperature``, ``fmax``...).
        :param settings: MLIP settings over the protocol's.
        :param options: scheduler options over the protocol's.
        """
        values = cls.get_protocol_values(operation, parameters, protocol, settings, options)
        builder = cls.get_builder()
        builder.code = code
        builder.operation = orm.Str(operation)
        builder.structures = dict(structures)
        builder.parameters = orm.Dict(values['parameters'])
        builder.settings = orm.Dict(values['settings'])
        builder.metadata.options = values['options']
        return builder

    def prepare_for_submission(self, folder) -> CalcInfo:
        """Write the structures as one dataset file and the run description as JSON."""
        with DataFileWriter(folder.get_abs_path(STRUCTURES_FILE)) as writer:
            for key, structure in self.inputs.structures.items():
                writer.append(StructureRecord.from_ase(structure.get_ase(), source=structure.uuid, label=key))
        restarts = self.inputs.get('restarts', {})
        local_copy_list = [(node.uuid, node.filename, f'{key}{RESTART_SUFFIX}') for key, node in restarts.items()]
        options = self.inputs.metadata.options
        walltime = options.get('max_wallclock_seconds')
        config = {
            'operation': self.inputs.operation.value,
            'parameters': self.inputs.parameters.get_dict(),
            'settings': self.inputs.settings.get_dict() if 'settings' in self.inputs else {},
            'structures': STRUCTURES_FILE,
            'max_wallclock_seconds': walltime * SOFT_WALLTIME_FRACTION if walltime else None,
            'restarts': {key: f'{key}{RESTART_SUFFIX}' for key in restarts},
        }
        with folder.open(INPUT_FILE, 'w') as handle:
            json.dump(config, handle, indent=2)

        calcinfo = single_code_calcinfo(self.inputs.code, [INPUT_FILE], STDOUT_FILE, STDERR_FILE, [RESULTS_FOLDER])
        calcinfo.local_copy_list = local_copy_list
        return calcinfo
