"""The engine interface: three operations (``md``, ``relax``, ``forces``) with engine-independent outputs.

An engine is a ``WorkChain`` subclass of :class:`EngineWorkChain` registered in the ``crystalgan.engines`` entry
point group. It takes a batch of structures and one operation, and returns, for each input key, the standard outputs:

============  ===================================================================================================
operation     outputs (one per key of the ``structures`` input namespace)
============  ===================================================================================================
``md``        ``trajectories.<key>``: ``TrajectoryData`` with ``positions``/``cells``/``symbols`` and the arrays
              ``energies`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å^3), ``temperatures`` (K), ``times`` (fs),
              ``steps`` (MD step of each frame) and, where the engine has them, ``velocities`` (Å/fs)
``relax``     ``relaxed_structures.<key>``: ``StructureData``; ``results.<key>``: ``ArrayData`` (see below);
              with ``trajectory_frames`` > 0, ``trajectories.<key>``: steps of the relaxation before the last (the
              relaxed structure), evenly spaced from the start, with ``energies``, ``forces``, ``stress`` and
              ``steps`` (optimiser step of each frame), no ``times``
``forces``    ``results.<key>``: ``ArrayData`` with arrays ``forces`` (N, 3) eV/Å, ``stress`` (3, 3) eV/Å^3 and
              attributes ``energy`` (eV), ``energy_per_atom`` (eV/atom), ``max_force`` (eV/Å), ``converged`` and,
              where the engine counts them, ``steps`` (optimiser steps)
============  ===================================================================================================

``engines/outputs.py`` builds these outputs for every engine and reads them back for every consumer.

Operation parameters (the ``parameters`` input, engine independent):

* ``md``: ``temperature`` (K, > 0), ``steps`` (> 0), ``timestep`` (fs, > 0), ``sample_interval`` (steps between
  stored frames), ``thermostat`` (``nose-hoover`` | ``langevin``), ``seed``
* ``relax``: ``fmax`` (eV/Å), ``relax_cell`` (bool), ``max_steps`` (ionic steps), ``trajectory_frames`` (relaxation
  steps returned as a trajectory, at most; 0 for none)
* ``forces``: none

A structure that fails on its own (an element the engine cannot evaluate, NaN or infinite results, an exploding
relaxation, VASP's "ions too close"...) does not fail the batch: it has no standard outputs, and an entry in the
``failures`` output ``{key: {exit_status, exit_label, message}}`` (the codes 520-539 of ``exit_codes.py``). The engine
fails with ``ERROR_TOO_FEW_SUCCEEDED`` only when no structure, or fewer than the ``quorum`` fraction, succeeded.

Numerical settings of the engine itself (cut-offs, k-points, MLIP model) come from the engine's ``protocol`` and
``settings``; scheduler options from ``options``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import ExitCode, WorkChain
from aiida.plugins.entry_point import load_entry_point

from aiida_crystalgan.engines.outputs import record_failures
from aiida_crystalgan.exit_codes import ENGINE_EXIT_CODES, define_exit_codes
from aiida_crystalgan.workflows.protocols.utils import DEFAULT_PROTOCOL

OPERATIONS = ('md', 'relax', 'forces')
ENGINE_GROUP = 'crystalgan.engines'

_REQUIRED_PARAMETERS = {
    'md': {'temperature', 'steps', 'timestep'},
    'relax': {'fmax', 'max_steps'},
    'forces': set(),
}
#: ``name: (type, lower bound (exclusive), upper bound (inclusive))`` of the numerical operation parameters: the upper
#: bounds stop a typo (a temperature in °C * 1000, a timestep in s) from becoming days of cluster time.
PARAMETER_BOUNDS: dict[str, tuple[type, float, float]] = {
    'temperature': (float, 0, 10_000),  # K
    'timestep': (float, 0, 10),  # fs
    'steps': (int, 0, 10_000_000),
    'sample_interval': (int, 0, 10_000_000),
    'fmax': (float, 0, 100),  # eV/Å
    'max_steps': (int, 0, 100_000),
    'trajectory_frames': (int, -1, 10_000),
}
THERMOSTATS = ('nose-hoover', 'langevin')


def check_number(name: str, value: Any, kind: type, lower: float, upper: float) -> str | None:
    """A message when ``value`` is not a number of ``kind`` (``int`` or ``float``) in ``(lower, upper]``, else None."""
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        what = 'an integer' if kind is int else 'a number'
        return f'`{name}` must be {what}, got {value!r} ({type(value).__name__})'
    if not lower < value <= upper:
        bounds = {0: f'positive and at most {upper}', -1: f'between 0 and {upper}'}.get(lower, f'in ({lower}, {upper}]')
        return f'`{name}` must be {bounds}, got {value}'
    return None


def validate_operation_parameters(operation: str, parameters: dict[str, Any]) -> str | None:
    """Return an error message when ``parameters`` are not valid for ``operation``, else ``None`` (never raises)."""
    if operation not in OPERATIONS:
        return f'unknown operation `{operation}`: choose one of {", ".join(OPERATIONS)}'
    missing = _REQUIRED_PARAMETERS[operation] - set(parameters)
    if missing:
        return f'operation `{operation}` needs the parameters {sorted(missing)}'
    for key, (kind, lower, upper) in PARAMETER_BOUNDS.items():
        if key in parameters:
            message = check_number(key, parameters[key], kind, lower, upper)
            if message:
                return f'parameter {message}'
    if 'relax_cell' in parameters and not isinstance(parameters['relax_cell'], bool):
        return f'parameter `relax_cell` must be true or false, got {parameters["relax_cell"]!r}'
    if parameters.get('thermostat', THERMOSTATS[0]) not in THERMOSTATS:
        return f'parameter `thermostat` must be one of {", ".join(THERMOSTATS)}, got {parameters["thermostat"]!r}'
    if 'seed' in parameters and (isinstance(parameters['seed'], bool) or not isinstance(parameters['seed'], int)):
        return f'parameter `seed` must be an integer, got {parameters["seed"]!r}'
    return None


def validate_quorum(value: orm.Float, _) -> str | None:
    """The quorum is a fraction in [0, 1]."""
    if not 0 <= value.value <= 1:
        return f'`quorum` must be a fraction in [0, 1], got {value.value}'
    return None


def require_structures(inputs: dict[str, Any], _=None) -> str | None:
    """Validator of a process whose ``structures`` namespace must hold at least one structure."""
    if not inputs.get('structures'):
        return 'the `structures` namespace is empty: give at least one structure'
    return None


def validate_engine_inputs(inputs: dict[str, Any], _) -> str | None:
    """Validator of the engine inputs: a non-empty batch and valid parameters for the operation."""
    return require_structures(inputs) or validate_operation_parameters(
        inputs['operation'].value, inputs['parameters'].get_dict()
    )


class EngineWorkChain(WorkChain):
    """Base class of every engine: the shared input/output spec and exit codes."""

    #: The ``settings`` key that limits how many jobs one engine call runs at a time; ``None`` for an engine that
    #: runs a whole batch as one job (``mlip``).
    concurrency_setting: str | None = None

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('operation', valid_type=orm.Str, help='One of `md`, `relax`, `forces`.')
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The batch of structures, keyed by a label that the outputs repeat.',
        )
        spec.input('parameters', valid_type=orm.Dict, help='Engine-independent parameters of the operation.')
        spec.input('code', valid_type=orm.AbstractCode, help='The code that runs the engine.')
        spec.input(
            'protocol',
            valid_type=orm.Str,
            default=lambda: orm.Str(DEFAULT_PROTOCOL),
            help='Engine protocol for its numerical settings: `fast`, `balanced` or `precise`.',
        )
        spec.input('settings', valid_type=orm.Dict, required=False, help='Engine-specific settings and overrides.')
        spec.input('options', valid_type=orm.Dict, required=False, help='Scheduler options of the calculations.')
        spec.input(
            'quorum',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.0),
            validator=validate_quorum,
            help='Fraction of the structures that must succeed; at least one always must.',
        )
        spec.inputs.validator = validate_engine_inputs
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True, required=False)
        spec.output_namespace('relaxed_structures', valid_type=orm.StructureData, dynamic=True, required=False)
        spec.output_namespace('results', valid_type=orm.ArrayData, dynamic=True, required=False)
        spec.output(
            'failures',
            valid_type=orm.Dict,
            required=False,
            help='The structures that failed: `{key: {exit_status, exit_label, message}}`.',
        )
        define_exit_codes(spec, *ENGINE_EXIT_CODES)

    def finish_batch(self, failures: dict[str, dict[str, Any]]) -> ExitCode | None:
        """Output the ``failures`` (the other structures' outputs are already attached); check the quorum."""
        total = len(self.inputs.structures)
        if failures:
            self.out(
                'failures',
                record_failures(
                    orm.Dict(failures),
                    **{
                        f'structure_{key}': self.inputs.structures[key]
                        for key in failures
                        if key in self.inputs.structures
                    },
                ),
            )
            summary = '; '.join(f'{key}: {entry["exit_label"]} ({entry["message"]})' for key, entry in failures.items())
            self.report(f'{len(failures)} of {total} structures failed: {summary}')
        succeeded = total - len(failures)
        required = max(1, math.ceil(self.inputs.quorum.value * total))
        if succeeded < required:
            return self.exit_codes.ERROR_TOO_FEW_SUCCEEDED.format(
                succeeded=succeeded, total=total, required=required, failures=', '.join(sorted(failures))
            )
        return None


def load_engine(name: str) -> type[EngineWorkChain]:
    """Load the engine workchain registered under ``name`` in the ``crystalgan.engines`` group."""
    try:
        engine = load_entry_point(ENGINE_GROUP, name)
    except Exception as exception:
        raise ValueError(f'unknown engine `{name}`: no `{ENGINE_GROUP}` entry point of that name') from exception
    return engine


def expose_engine_inputs(spec, namespace: str = 'engine') -> None:
    """Add the ``engine`` input namespace that every stage workflow takes."""
    spec.input_namespace(namespace, help='Which engine computes energies and forces, and how.')
    spec.input(
        f'{namespace}.name',
        valid_type=orm.Str,
        default=lambda: orm.Str('mlip'),
        help='Engine entry point name in `crystalgan.engines`: `mlip` or `vasp`.',
    )
    spec.input(f'{namespace}.code', valid_type=orm.AbstractCode, help='The code that runs the engine.')
    spec.input(
        f'{namespace}.protocol',
        valid_type=orm.Str,
        default=lambda: orm.Str(DEFAULT_PROTOCOL),
        help='Engine protocol for numerical settings.',
    )
    spec.input(f'{namespace}.settings', valid_type=orm.Dict, required=False, help='Engine-specific settings.')
    spec.input(f'{namespace}.options', valid_type=orm.Dict, required=False, help='Scheduler options.')
    spec.input(
        f'{namespace}.quorum',
        valid_type=orm.Float,
        required=False,
        validator=validate_quorum,
        help='Fraction of each engine batch that must succeed (default: at least one structure).',
    )


def limit_engine_jobs(engine_inputs: Mapping[str, Any], max_jobs: int | None) -> dict[str, Any]:
    """The ``engine`` inputs with at most ``max_jobs`` jobs in flight per engine call (``None``: as they are).

    The engine's ``concurrency_setting`` gets the smaller of ``max_jobs`` and its value in ``settings``; an engine
    that runs a batch as one job has no such setting and is returned as it is.
    """
    inputs = dict(engine_inputs)
    setting = load_engine(inputs['name'].value).concurrency_setting
    if max_jobs is None or setting is None:
        return inputs
    settings = inputs['settings'].get_dict() if 'settings' in inputs else {}
    inputs['settings'] = orm.Dict({**settings, setting: min(settings.get(setting) or max_jobs, max_jobs)})
    return inputs


def submit_engine(
    workchain: WorkChain,
    operation: str,
    structures: dict[str, orm.StructureData],
    parameters: dict[str, Any],
    namespace: str = 'engine',
    max_jobs: int | None = None,
):
    """Submit the engine of ``workchain``'s ``engine`` inputs for ``operation`` on ``structures``.

    ``max_jobs``: at most that many engine jobs in flight (see :func:`limit_engine_jobs`).
    """
    engine_inputs = limit_engine_jobs(workchain.inputs[namespace], max_jobs)
    engine = load_engine(engine_inputs['name'].value)
    inputs = {
        'operation': orm.Str(operation),
        'structures': structures,
        'parameters': orm.Dict(parameters),
        'code': engine_inputs['code'],
        'protocol': engine_inputs['protocol'],
    }
    for optional in ('settings', 'options', 'quorum'):
        if optional in engine_inputs:
            inputs[optional] = engine_inputs[optional]
    return workchain.submit(engine, **inputs)
