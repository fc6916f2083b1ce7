"""The engine interface: three operations (``md``, ``relax``, ``forces``) with engine-independent outputs.

An engine is a ``WorkChain`` subclass of :class:`EngineWorkChain` registered in the ``crystalgan.engines`` entry
point group. It takes a batch of structures and one operation, and returns, for each input key, the standard outputs:

============  ===================================================================================================
operation     outputs (one per key of the ``structures`` input namespace)
============  ===================================================================================================
``md``        ``trajectories.<key>``: ``TrajectoryData`` with ``positions``/``cells``/``symbols`` and the arrays
              ``energies`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å^3), ``temperatures`` (K), ``times`` (fs),
              ``steps`` (MD step of each frame) and, where the engine has them, ``velocities`` (Å/fs)
``relax``     ``relaxed_structures.<key>``: ``StructureData``; ``results.<key>``: ``ArrayData`` (see below)
``forces``    ``results.<key>``: ``ArrayData`` with arrays ``forces`` (N, 3) eV/Å, ``stress`` (3, 3) eV/Å^3 and
              attributes ``energy`` (eV), ``energy_per_atom`` (eV/atom), ``max_force`` (eV/Å), ``converged`` and,
              where the engine counts them, ``steps`` (optimiser steps)
============  ===================================================================================================

``engines/outputs.py`` builds these outputs for every engine and reads them back for every consumer.

Operation parameters (the ``parameters`` input, engine independent):

* ``md``: ``temperature`` (K, > 0), ``steps`` (> 0), ``timestep`` (fs, > 0), ``sample_interval`` (steps between
  stored frames), ``thermostat`` (``nose-hoover`` | ``langevin``), ``seed``
* ``relax``: ``fmax`` (eV/Å), ``relax_cell`` (bool), ``max_steps`` (ionic steps)
* ``forces``: none

Numerical settings of the engine itself (cut-offs, k-points, MLIP model) come from the engine's ``protocol`` and
``settings``; scheduler options from ``options``.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import WorkChain
from aiida.plugins.entry_point import load_entry_point

from aiida_crystalgan.exit_codes import define_exit_codes
from aiida_crystalgan.workflows.protocols.utils import DEFAULT_PROTOCOL

OPERATIONS = ('md', 'relax', 'forces')
ENGINE_GROUP = 'crystalgan.engines'

_REQUIRED_PARAMETERS = {
    'md': {'temperature', 'steps', 'timestep'},
    'relax': {'fmax', 'max_steps'},
    'forces': set(),
}


def validate_operation_parameters(operation: str, parameters: dict[str, Any]) -> str | None:
    """Return an error message when ``parameters`` are not valid for ``operation``, else ``None``."""
    if operation not in OPERATIONS:
        return f'unknown operation `{operation}`: choose one of {", ".join(OPERATIONS)}'
    missing = _REQUIRED_PARAMETERS[operation] - set(parameters)
    if missing:
        return f'operation `{operation}` needs the parameters {sorted(missing)}'
    for key in ('temperature', 'steps', 'timestep', 'fmax', 'max_steps', 'sample_interval'):
        if key in parameters and not parameters[key] > 0:
            return f'parameter `{key}` must be positive, got {parameters[key]}'
    return None


def require_structures(inputs: dict[str, Any], _=None) -> str | None:
    """Validator of a process whose ``structures`` namespace must hold at least one structure."""
    if not inputs.get('structures'):
        return 'the `structures` namespace is empty: give at least one structure'
    return None


def validate_engine_inputs(inputs: dict[str, Any], _) -> str | None:
    """Validator of the engine inputs: a non-empty batch and valid parameters for the operation."""
    return require_structures(inputs) or validate_operation_parameters(inputs['operation'].value,
                                                                       inputs['parameters'].get_dict())


class EngineWorkChain(WorkChain):
    """Base class of every engine: the shared input/output spec and exit codes."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('operation', valid_type=orm.Str, help='One of `md`, `relax`, `forces`.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='The batch of structures, keyed by a label that the outputs repeat.')
        spec.input('parameters', valid_type=orm.Dict, help='Engine-independent parameters of the operation.')
        spec.input('code', valid_type=orm.AbstractCode, help='The code that runs the engine.')
        spec.input('protocol', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_PROTOCOL),
                   help='Engine protocol for its numerical settings: `fast`, `balanced` or `precise`.')
        spec.input('settings', valid_type=orm.Dict, required=False, help='Engine-specific settings and overrides.')
        spec.input('options', valid_type=orm.Dict, required=False, help='Scheduler options of the calculations.')
        spec.inputs.validator = validate_engine_inputs
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True, required=False)
        spec.output_namespace('relaxed_structures', valid_type=orm.StructureData, dynamic=True, required=False)
        spec.output_namespace('results', valid_type=orm.ArrayData, dynamic=True, required=False)
        define_exit_codes(spec, 'ERROR_CALCULATION_FAILED', 'ERROR_MISSING_ENGINE_OUTPUT')


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
    spec.input(f'{namespace}.name', valid_type=orm.Str, default=lambda: orm.Str('mlip'),
               help='Engine entry point name in `crystalgan.engines`: `mlip` or `vasp`.')
    spec.input(f'{namespace}.code', valid_type=orm.AbstractCode, help='The code that runs the engine.')
    spec.input(f'{namespace}.protocol', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_PROTOCOL),
               help='Engine protocol for numerical settings.')
    spec.input(f'{namespace}.settings', valid_type=orm.Dict, required=False, help='Engine-specific settings.')
    spec.input(f'{namespace}.options', valid_type=orm.Dict, required=False, help='Scheduler options.')


def submit_engine(workchain: WorkChain, operation: str, structures: dict[str, orm.StructureData],
                  parameters: dict[str, Any], namespace: str = 'engine'):
    """Submit the engine of ``workchain``'s ``engine`` inputs for ``operation`` on ``structures``."""
    engine_inputs = workchain.inputs[namespace]
    engine = load_engine(engine_inputs['name'].value)
    inputs = {
        'operation': orm.Str(operation),
        'structures': structures,
        'parameters': orm.Dict(parameters),
        'code': engine_inputs['code'],
        'protocol': engine_inputs['protocol'],
    }
    for optional in ('settings', 'options'):
        if optional in engine_inputs:
            inputs[optional] = engine_inputs[optional]
    return workchain.submit(engine, **inputs)
