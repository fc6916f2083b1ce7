"""``crystalgan.sampling``: molecular dynamics of every seed at several temperatures, collected as snapshots."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.engines.base import expose_engine_inputs, require_structures, submit_engine
from aiida_crystalgan.engines.outputs import read_trajectory
from aiida_crystalgan.workflows.protocols import ProtocolMixin

MD_KEYS = ('steps', 'timestep', 'sample_interval', 'thermostat', 'seed')


@calcfunction
def collect_snapshots(**trajectories: orm.TrajectoryData) -> CrystalDatasetData:
    """Every stored MD frame as one dataset entry with its energy (eV), forces (eV/Å) and stress (eV/Å^3)."""

    def records():
        for key, trajectory in trajectories.items():
            yield from read_trajectory(trajectory, label=key)

    return CrystalDatasetData(records(), metadata={'origin': 'md snapshots', 'trajectories': len(trajectories)})


def validate_parameters(value: orm.Dict, _) -> str | None:
    """Temperatures, steps and time step must be positive."""
    parameters = value.get_dict()
    temperatures = parameters.get('temperatures')
    if not temperatures:
        return '`temperatures` must be a non-empty list of temperatures in K'
    if any(not isinstance(t, int | float) or t <= 0 for t in temperatures):
        return f'every temperature must be positive (K), got {temperatures}'
    if len({int(t) for t in temperatures}) != len(temperatures):
        return f'temperatures must differ by at least 1 K, got {temperatures}'
    for key in ('steps', 'timestep', 'sample_interval'):
        if key in parameters and not parameters[key] > 0:
            return f'`{key}` must be positive, got {parameters[key]}'
    if 'steps' not in parameters or 'timestep' not in parameters:
        return '`steps` and `timestep` (fs) are required'
    return None


class SamplingWorkChain(ProtocolMixin, WorkChain):
    """Run one batched ``md`` engine call per temperature and gather every stored frame into a dataset."""

    _protocol_file = 'sampling.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, help='Structures to sample.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters,
            help='`temperatures` (K), `steps`, `timestep` (fs), `sample_interval`, `thermostat`, `seed`.',
        )
        expose_engine_inputs(spec)
        spec.inputs.validator = require_structures
        spec.outline(cls.run_md, cls.inspect_md, cls.collect)
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True)
        spec.output('snapshots', valid_type=CrystalDatasetData, help='Every stored frame with energies and forces.')
        spec.exit_code(610, 'ERROR_MD_FAILED', message='The MD at {temperature} K failed.')

    @classmethod
    def get_builder_from_protocol(
        cls,
        structures: dict[str, orm.StructureData],
        engine: dict[str, Any],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder for MD of ``structures`` with the ``parameters`` of ``protocol`` (``sampling.yaml``).

        :param engine: the ``engine`` inputs (``code``, and optionally ``name``, ``protocol``, ``settings``...).
        """
        return cls.get_builder_with_parameters(protocol, overrides, structures=structures, engine=engine)

    def run_md(self):
        """One engine call per temperature, with every structure in the batch."""
        parameters = self.inputs.parameters.get_dict()
        md = {key: parameters[key] for key in MD_KEYS if key in parameters}
        calls = {}
        for temperature in parameters['temperatures']:
            node = submit_engine(self, 'md', dict(self.inputs.structures), {**md, 'temperature': temperature})
            calls[f'md_{int(temperature)}K'] = node
        self.report(f'running MD of {len(self.inputs.structures)} structures at {parameters["temperatures"]} K')
        return ToContext(**calls)

    def inspect_md(self):
        """Every temperature must have finished."""
        for temperature in self.inputs.parameters['temperatures']:
            if not self.ctx[f'md_{int(temperature)}K'].is_finished_ok:
                return self.exit_codes.ERROR_MD_FAILED.format(temperature=temperature)
        return None

    def collect(self) -> None:
        """Expose the trajectories and build the snapshot dataset from them."""
        trajectories = {}
        for temperature in self.inputs.parameters['temperatures']:
            node = self.ctx[f'md_{int(temperature)}K']
            for key, trajectory in node.outputs.trajectories.items():
                trajectories[f'{key}_{int(temperature)}K'] = trajectory
        self.out('trajectories', trajectories)
        snapshots = collect_snapshots(**trajectories)
        self.out('snapshots', snapshots)
        self.report(f'{snapshots.size} snapshots from {len(trajectories)} trajectories')
