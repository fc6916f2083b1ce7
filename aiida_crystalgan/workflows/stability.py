"""``crystalgan.stability``: is a structure a local minimum? Relax, check the forces, check the phonons."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_crystalgan.engines.base import (
    check_number,
    expose_engine_inputs,
    require_structures,
    submit_engine,
    validate_operation_parameters,
)
from aiida_crystalgan.workflows.phonons import PhononWorkChain
from aiida_crystalgan.workflows.phonons import validate_parameters as validate_phonon_parameters
from aiida_crystalgan.workflows.protocols import ProtocolMixin

#: Keys of the ``parameters`` input, each required (values in ``protocols/stability.yaml`` and ``phonons.yaml``).
PARAMETER_KEYS = ('relax', 'force_tolerance', 'check_phonons', 'max_concurrent_phonons', 'phonons')


@calcfunction
def summarize_stability(force_tolerance: orm.Float, phonons_checked: orm.Bool, **nodes: orm.Data) -> orm.Dict:
    """Per structure: energy per atom, largest force, phonon minimum frequency, and whether it is a local minimum.

    ``nodes`` holds ``results_<key>`` (relaxation results) and, where phonons ran, ``frequency_<key>`` (THz) and
    ``stable_<key>`` (no imaginary mode). When phonons were checked, a structure without a phonon verdict (its force
    check failed, or its phonon calculation did) is not a local minimum.
    """
    summary = {}
    for name, results in nodes.items():
        if not name.startswith('results_'):
            continue
        key = name.removeprefix('results_')
        max_force = float(results.base.attributes.get('max_force'))
        frequency = nodes.get(f'frequency_{key}')
        stable = nodes.get(f'stable_{key}')
        forces_ok = max_force < force_tolerance.value
        summary[key] = {
            'energy': results.base.attributes.get('energy'),
            'energy_per_atom': results.base.attributes.get('energy_per_atom'),
            'max_force': max_force,
            'converged': results.base.attributes.get('converged'),
            'forces_below_tolerance': forces_ok,
            'min_frequency': None if frequency is None else frequency.value,
            'dynamically_stable': None if stable is None else stable.value,
            'is_local_minimum': bool(forces_ok and (stable.value if stable is not None else not phonons_checked.value)),
        }
    return orm.Dict(summary)


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Every key is given; the relaxation parameters and the force tolerance have the engine's types and bounds."""
    parameters = value.get_dict()
    unknown, missing = set(parameters) - set(PARAMETER_KEYS), set(PARAMETER_KEYS) - set(parameters)
    if unknown or missing:
        return (
            f'stability parameters: unknown {sorted(unknown)}, missing {sorted(missing)}; build them with '
            '`StabilityWorkChain.get_protocol_inputs`'
        )
    relax = parameters['relax']
    if not isinstance(relax, dict):
        return f'`relax` must be a mapping of relaxation parameters, got {relax!r}'
    message = validate_operation_parameters('relax', relax) or check_number(
        'force_tolerance', parameters['force_tolerance'], float, 0, 100
    )
    if message:
        return f'stability parameters: {message}'
    if not isinstance(parameters['phonons'], dict):
        return f'`phonons` must be a mapping of phonon parameters, got {parameters["phonons"]!r}'
    message = validate_phonon_parameters(orm.Dict(parameters['phonons']), None)
    if message:
        return f'stability parameters: phonons: {message}'
    if not isinstance(parameters['check_phonons'], bool):
        return f'`check_phonons` must be true or false, got {parameters["check_phonons"]!r}'
    limit = parameters.get('max_concurrent_phonons')
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return f'`max_concurrent_phonons` must be a positive integer or null, got {limit}'
    return None


class StabilityWorkChain(ProtocolMixin, WorkChain):
    """Keep the structures that are local minima: largest force below a tolerance and no imaginary phonon mode."""

    _protocol_file = 'stability.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='Structures to check.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters,
            help='`relax` (fmax, relax_cell, max_steps), `force_tolerance`, `check_phonons`, `phonons`, '
            '`max_concurrent_phonons` (phonon workchains at a time; null: all).',
        )
        expose_engine_inputs(spec)
        spec.inputs.validator = require_structures
        spec.outline(
            cls.relax,
            cls.inspect_relax,
            if_(cls.should_check_phonons)(
                while_(cls.phonons_pending)(cls.run_phonons),
                cls.inspect_phonons,
            ),
            cls.results,
        )
        spec.output_namespace('relaxed_structures', valid_type=orm.StructureData, dynamic=True)
        spec.output_namespace('results', valid_type=orm.ArrayData, dynamic=True)
        spec.output_namespace(
            'minima',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='The relaxed structures that are local minima.',
        )
        spec.output('summary', valid_type=orm.Dict, help='Energy, forces, phonons and verdict per structure.')
        spec.output(
            'failures',
            valid_type=orm.Dict,
            required=False,
            help="The structures whose relaxation failed (the engine's `failures`): they are left out.",
        )
        spec.exit_code(620, 'ERROR_RELAXATION_FAILED', message='The relaxation engine call failed: {message}')

    @classmethod
    def get_child_protocols(cls) -> dict[str, type[ProtocolMixin]]:
        """``phonons`` is ``PhononWorkChain``'s own protocol of the same name."""
        return {'phonons': PhononWorkChain}

    @classmethod
    def get_builder_from_protocol(
        cls,
        structures: dict[str, orm.StructureData],
        engine: dict[str, Any],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder that checks ``structures`` with the ``parameters`` of ``protocol`` (``stability.yaml``).

        :param engine: the ``engine`` inputs (``code``, and optionally ``name``, ``protocol``, ``settings``...).
        """
        return cls.get_builder_with_parameters(protocol, overrides, structures=structures, engine=engine)

    def relax(self):
        """Relax the whole batch in one engine call."""
        node = submit_engine(self, 'relax', dict(self.inputs.structures), self.inputs.parameters['relax'])
        self.report(f'relaxing {len(self.inputs.structures)} structures')
        return ToContext(relax=node)

    def inspect_relax(self):
        """Keep the relaxation results; pick the structures whose forces are below the tolerance.

        The structures whose relaxation failed (see the engine's ``failures``) are left out; the stage fails only with
        the engine, that is when too few structures were relaxed (``engine.quorum``).
        """
        node = self.ctx.relax
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_RELAXATION_FAILED.format(message=node.exit_message or node.process_state)
        if 'failures' in node.outputs:
            self.out('failures', node.outputs.failures)
        tolerance = self.inputs.parameters['force_tolerance']
        self.ctx.relaxed = dict(node.outputs.relaxed_structures)
        self.ctx.results = dict(node.outputs.results)
        self.ctx.candidates = [
            key for key, r in self.ctx.results.items() if r.base.attributes.get('max_force') < tolerance
        ]
        self.ctx.phonon_queue = list(self.ctx.candidates)
        self.ctx.phonon_parameters = orm.Dict(self.inputs.parameters['phonons']).store()  # a checkpointable context
        self.report(
            f'{len(self.ctx.candidates)} of {len(self.ctx.results)} structures have forces below {tolerance} eV/Å'
        )
        return None

    def should_check_phonons(self) -> bool:
        return bool(self.inputs.parameters['check_phonons']) and bool(self.ctx.candidates)

    def phonons_pending(self) -> bool:
        return bool(self.ctx.phonon_queue)

    def run_phonons(self):
        """One phonon workchain per structure that passed the force check, at most ``max_concurrent_phonons`` at a time.

        On a laptop every MLIP calculation loads its model and competes for the same cores; on a cluster leave the
        limit unset and let them all run.
        """
        limit = self.inputs.parameters['max_concurrent_phonons'] or len(self.ctx.phonon_queue)
        batch, self.ctx.phonon_queue = self.ctx.phonon_queue[:limit], self.ctx.phonon_queue[limit:]
        parameters = self.ctx.phonon_parameters
        calls = {}
        for key in batch:
            inputs = {'structure': self.ctx.relaxed[key], 'parameters': parameters, 'engine': dict(self.inputs.engine)}
            calls[f'phonons_{key}'] = self.submit(PhononWorkChain, **inputs)
        return ToContext(**calls)

    def inspect_phonons(self) -> None:
        """A failed phonon calculation leaves the structure unverified (not a local minimum)."""
        self.ctx.phonons = {}
        for key in self.ctx.candidates:
            node = self.ctx[f'phonons_{key}']
            if node.is_finished_ok:
                self.ctx.phonons[key] = node
            else:
                self.report(f'phonons of `{key}` failed ({node.exit_status}): it is not counted as a local minimum')

    def results(self) -> None:
        """Summarise through a calcfunction and expose the local minima."""
        nodes = {f'results_{key}': results for key, results in self.ctx.results.items()}
        for key, node in self.ctx.get('phonons', {}).items():
            nodes[f'frequency_{key}'] = node.outputs.min_frequency
            nodes[f'stable_{key}'] = node.outputs.is_stable
        parameters = self.inputs.parameters
        summary = summarize_stability(
            force_tolerance=orm.Float(parameters['force_tolerance']),
            phonons_checked=orm.Bool(parameters['check_phonons']),
            **nodes,
        )
        minima = {
            key: self.ctx.relaxed[key] for key, verdict in summary.get_dict().items() if verdict['is_local_minimum']
        }
        self.out('relaxed_structures', self.ctx.relaxed)
        self.out('results', self.ctx.results)
        self.out('minima', minima)
        self.out('summary', summary)
        self.report(f'{len(minima)} of {len(self.ctx.results)} structures are local minima')
