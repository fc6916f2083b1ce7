"""``crystalgan.campaign``: the whole chain from seed structures to validated predicted structures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction
from pymatgen.core import Composition

from aiida_crystalgan.data.dataset import CrystalDatasetData, to_record
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import expose_engine_inputs, load_engine
from aiida_crystalgan.engines.outputs import read_results
from aiida_crystalgan.io import MINIMUM
from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.generation import GenerationWorkChain
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.protocols.utils import validate_override_keys
from aiida_crystalgan.workflows.sampling import SamplingWorkChain
from aiida_crystalgan.workflows.seeds import SeedsWorkChain, validate_system
from aiida_crystalgan.workflows.stability import StabilityWorkChain
from aiida_crystalgan.workflows.training import TrainingWorkChain

#: Every stage's input namespace of the campaign and the workchain it feeds; each has its own protocol file.
STAGE_WORKCHAINS = {
    'seeds': SeedsWorkChain,
    'sampling': SamplingWorkChain,
    'stability': StabilityWorkChain,
    'training': TrainingWorkChain,
    'generation': GenerationWorkChain,
}
#: Inputs of the stages that the campaign fills in as it runs (structures, engine, upstream results).
RUNTIME_INPUTS = {
    'seeds': ('system', 'structures'),
    'sampling': ('structures', 'engine'),
    'stability': ('structures', 'engine'),
    'training': ('train.dataset', 'train.parent_model'),
    'generation': ('generate.model', 'training_dataset', 'stability', 'reference_structures', 'reference_results',
                   'engine'),
}


@calcfunction
def merge_training_data(snapshots: CrystalDatasetData, **minima: orm.Data) -> CrystalDatasetData:
    """The training set: MD snapshots plus the relaxed local minima (``structure_<key>`` with ``results_<key>``)."""
    def records():
        yield from snapshots
        for name, structure in minima.items():
            if not name.startswith('structure_'):
                continue
            key = name.removeprefix('structure_')
            yield to_record(structure, **read_results(minima[f'results_{key}']), source=structure.uuid,
                            label=f'minimum:{key}', role=MINIMUM)

    return CrystalDatasetData(records(), metadata={'origin': 'md snapshots and local minima',
                                                   'snapshots': snapshots.uuid})


def generation_targets(structures: list[orm.StructureData], max_formula_units: int, n_max: int) -> list[dict]:
    """Every compound composition among ``structures``, at 1 to ``max_formula_units`` formula units (≤ ``n_max``)."""
    targets = []
    formulas = sorted({s.get_pymatgen().composition.reduced_formula for s in structures
                       if len(s.get_symbols_set()) > 1})
    for formula in formulas:
        atoms_per_unit = int(Composition(formula).num_atoms)
        targets.extend({'composition': formula, 'formula_units': units}
                       for units in range(1, max_formula_units + 1) if units * atoms_per_unit <= n_max)
    return targets


def _without(inputs: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """``inputs`` without the (dotted) ``paths``."""
    for path in paths:
        *parents, name = path.split('.')
        namespace = inputs
        for parent in parents:
            namespace = namespace.get(parent, {})
        namespace.pop(name, None)
    return inputs


class CampaignWorkChain(ProtocolMixin, WorkChain):
    """Seeds → MD sampling and reference relaxations → dataset → GAN training → generation and validation.

    Every stage is a process of its own, so the provenance graph of a predicted structure reaches back to the
    engine calculations that produced the training data. The daemon checkpoints the campaign between stages: it
    survives daemon restarts, and ``verdi process pause/play`` stops and resumes it. Each stage's inputs are exposed
    in a namespace of its name (``seeds``, ``sampling``, ``stability``, ``training``, ``generation``); the stability
    parameters serve both the reference phases and the generated candidates.
    """

    _protocol_file = 'campaign.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('system', valid_type=orm.Str, validator=validate_system, help='Chemical system, e.g. `Nb-O`.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Extra seed structures (files, groups, OPTIMADE).')
        spec.input('max_formula_units', valid_type=orm.Int,
                   help='Generation targets: every compound of the seeds at 1 to this many formula units.')
        spec.input('targets', valid_type=orm.List, required=False,
                   help='Explicit generation targets ({composition, formula_units}), instead of the seeds\' ones.')
        spec.input('group_label', valid_type=orm.Str, required=False,
                   help='Group that receives the predicted structures (default `crystalgan/<system>/<pk>`).')
        expose_engine_inputs(spec)
        for namespace, workchain in STAGE_WORKCHAINS.items():
            spec.expose_inputs(workchain, namespace=namespace, exclude=RUNTIME_INPUTS[namespace])
            spec.inputs[namespace].validator = None  # the stage validates its complete inputs when it is submitted
        spec.inputs['generation']['generate'].validator = None
        spec.outline(
            cls.run_seeds,
            cls.run_sampling_and_references,
            cls.build_dataset,
            cls.run_training,
            cls.run_generation,
            cls.results,
        )
        spec.output_namespace('seeds', valid_type=orm.StructureData, dynamic=True)
        spec.output('dataset', valid_type=CrystalDatasetData, help='The training set.')
        spec.output('model', valid_type=GanModelData, help='The trained GAN.')
        spec.output('candidates', valid_type=CrystalDatasetData, help='Every generated structure.')
        spec.output_namespace('predicted', valid_type=orm.StructureData, dynamic=True, required=False)
        spec.output('evaluation', valid_type=orm.Dict, required=False)
        spec.output_namespace('rejected', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='Validated candidates that did not pass, in `<group>/rejected`.')
        spec.output('metrics', valid_type=orm.Dict, required=False, help='The screening funnel\'s metrics per arm.')
        spec.exit_code(710, 'ERROR_SEEDS_FAILED', message='The seed stage failed.')
        spec.exit_code(711, 'ERROR_SAMPLING_FAILED', message='The MD sampling failed.')
        spec.exit_code(712, 'ERROR_REFERENCES_FAILED', message='The relaxation of the reference phases failed.')
        spec.exit_code(713, 'ERROR_TRAINING_FAILED', message='The GAN training failed.')
        spec.exit_code(714, 'ERROR_GENERATION_FAILED', message='Generation or validation of candidates failed.')
        spec.exit_code(715, 'ERROR_NO_TARGETS', message='No compound composition to generate: give `targets`.')
        spec.exit_code(716, 'ERROR_MISSING_ELEMENTAL_SEED',
                       message='No seed of pure {elements}: the convex hull needs every element; raise '
                               '`seeds.max_atoms` or give one with `structures`.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The campaign's own keys and, under each stage's name, the keys of that stage's protocol."""
        keys = {**super().get_override_keys(),
                **{name: workchain.get_override_keys() for name, workchain in STAGE_WORKCHAINS.items()}}
        keys['generation'] = {key: value for key, value in keys['generation'].items() if key != 'stability'}
        return keys

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The campaign's own inputs (``campaign.yaml``) and every stage's, from the stage's protocol file."""
        overrides = dict(overrides or {})
        validate_override_keys(overrides, cls.get_override_keys())
        stages = {name: workchain.get_protocol_inputs(protocol, overrides.pop(name, None))
                  for name, workchain in STAGE_WORKCHAINS.items()}
        stages['generation'].pop('stability')
        return {**super().get_protocol_inputs(protocol, overrides), **stages}

    @classmethod
    def get_builder_from_protocol(cls, system: str, engine_code: orm.AbstractCode, train_code: orm.AbstractCode,
                                  generate_code: orm.AbstractCode, protocol: str | None = None,
                                  overrides: dict[str, Any] | None = None, engine: str = 'mlip',
                                  engine_protocol: str | None = None,
                                  engine_settings: dict[str, Any] | None = None,
                                  engine_options: dict[str, Any] | None = None,
                                  train_options: dict[str, Any] | None = None,
                                  structures: dict[str, orm.StructureData] | None = None):
        """A ready builder for ``system``: every stage built from its own protocol named ``protocol``.

        :param protocol: `fast`, `balanced` or `precise` (default: the plugin's default protocol, `fast`).
        :param overrides: the campaign's own keys (``max_formula_units``, ``targets``) and, under a stage's name
            (``seeds``, ``sampling``, ``stability``, ``training``, ``generation``), values over that stage's protocol.
        :param engine_protocol: the engine's numerical protocol (default: ``protocol``, so that `precise` campaigns
            get precise DFT); any of the engine's protocols.
        :raises ValueError: for an unknown protocol, engine protocol or override key, or a malformed ``system``.
        """
        parse_system(system)
        overrides = dict(overrides or {})
        validate_override_keys(overrides, cls.get_override_keys())
        stage_overrides = {name: overrides.pop(name, None) for name in STAGE_WORKCHAINS}
        inputs = super().get_protocol_inputs(protocol, overrides)
        engine_inputs = {'name': orm.Str(engine), 'code': engine_code,
                         'protocol': orm.Str(engine_protocol or protocol or cls.get_default_protocol())}
        error = load_engine(engine).spec().inputs['protocol'].validate(engine_inputs['protocol'])
        if error:
            raise ValueError(f'engine `{engine}`: {error.message}')
        if engine_settings:
            engine_inputs['settings'] = orm.Dict(engine_settings)
        if engine_options:
            engine_inputs['options'] = orm.Dict(engine_options)
        stages = {
            'seeds': SeedsWorkChain.get_builder_from_protocol(system, protocol, stage_overrides['seeds']),
            'sampling': SamplingWorkChain.get_builder_from_protocol({}, engine_inputs, protocol,
                                                                    stage_overrides['sampling']),
            'stability': StabilityWorkChain.get_builder_from_protocol({}, engine_inputs, protocol,
                                                                      stage_overrides['stability']),
            'training': TrainingWorkChain.get_builder_from_protocol(train_code, None, protocol,
                                                                    stage_overrides['training'], train_options),
            'generation': GenerationWorkChain.get_builder_from_protocol(generate_code, engine_inputs, None, None,
                                                                        protocol, stage_overrides['generation']),
        }
        builder = cls.get_builder()
        builder.system = orm.Str(system)
        builder.max_formula_units = orm.Int(inputs['max_formula_units'])
        if inputs['targets']:
            builder.targets = orm.List(inputs['targets'])
        builder.engine = engine_inputs
        for name, stage in stages.items():
            builder[name]._merge(_without(stage._inputs(prune=True), RUNTIME_INPUTS[name]))
        if structures:
            builder.structures = structures
        return builder

    def _stage(self, name: str) -> None:
        self.node.base.extras.set('crystalgan_stage', name)

    def _stage_inputs(self, name: str, **runtime: Any) -> AttributeDict:
        """The inputs of stage ``name``: the campaign's namespace of that name plus ``runtime`` inputs."""
        inputs = AttributeDict(self.exposed_inputs(STAGE_WORKCHAINS[name], namespace=name))
        inputs.update(runtime)
        return inputs

    def run_seeds(self):
        """Collect the seed structures."""
        self._stage('seeds')
        inputs = self._stage_inputs('seeds', system=self.inputs.system)
        if 'structures' in self.inputs:
            inputs.structures = dict(self.inputs.structures)
        return ToContext(seeds=self.submit(SeedsWorkChain, **inputs))

    def run_sampling_and_references(self):
        """MD sampling and the relaxation + phonon check of the seeds run side by side."""
        if not self.ctx.seeds.is_finished_ok:
            return self.exit_codes.ERROR_SEEDS_FAILED
        seeds = dict(self.ctx.seeds.outputs.structures)
        elemental = {next(iter(s.get_symbols_set())) for s in seeds.values() if len(s.get_symbols_set()) == 1}
        missing = sorted(set(parse_system(self.inputs.system.value)) - elemental)
        if missing:
            return self.exit_codes.ERROR_MISSING_ELEMENTAL_SEED.format(elements=', '.join(missing))
        self._stage('sampling')
        self.out('seeds', seeds)
        engine = dict(self.inputs.engine)
        sampling = self.submit(SamplingWorkChain, **self._stage_inputs('sampling', structures=seeds, engine=engine))
        references = self.submit(StabilityWorkChain,
                                 **self._stage_inputs('stability', structures=seeds, engine=engine))
        self.report(f'sampling {len(seeds)} seeds with MD<{sampling.pk}>, checking them with <{references.pk}>')
        return ToContext(sampling=sampling, references=references)

    def build_dataset(self):
        """Snapshots plus local minima, through a calcfunction."""
        if not self.ctx.sampling.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED
        if not self.ctx.references.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCES_FAILED
        self._stage('dataset')
        references = self.ctx.references.outputs
        minima = {}
        for key, structure in (references.minima.items() if 'minima' in references else []):
            minima[f'structure_{key}'] = structure
            minima[f'results_{key}'] = references.results[key]
        dataset = merge_training_data(self.ctx.sampling.outputs.snapshots, **minima)
        self.ctx.dataset = dataset
        self.out('dataset', dataset)
        self.report(f'training set of {dataset.size} structures ({len(minima) // 2} local minima)')
        return None

    def run_training(self):
        """Train the GAN (resuming across wall-clock limits)."""
        self._stage('training')
        inputs = self._stage_inputs('training')
        inputs['train']['dataset'] = self.ctx.dataset
        return ToContext(training=self.submit(TrainingWorkChain, **inputs))

    def run_generation(self):
        """Generate for every compound composition of the seeds, then validate the survivors."""
        if not self.ctx.training.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED
        self._stage('generation')
        model = self.ctx.training.outputs.model
        self.out('model', model)
        if 'targets' in self.inputs:
            targets = self.inputs.targets.get_list()
        else:
            targets = generation_targets(list(self.ctx.seeds.outputs.structures.values()),
                                         self.inputs.max_formula_units.value, int(model.base.attributes.get('n_max')))
        if not targets:
            return self.exit_codes.ERROR_NO_TARGETS
        references = self.ctx.references.outputs
        inputs = self._stage_inputs(
            'generation',
            training_dataset=self.ctx.dataset,
            stability=self.inputs.stability.parameters,
            reference_structures=dict(references.relaxed_structures),
            reference_results=dict(references.results),
            engine=dict(self.inputs.engine),
        )
        generate = inputs['generate']
        generate['model'] = model
        generate['parameters'] = orm.Dict({**generate['parameters'].get_dict(), 'targets': targets})
        return ToContext(generation=self.submit(GenerationWorkChain, **inputs))

    def results(self):
        """Expose the predictions and metrics; predicted structures go to the campaign's group, rejected ones to
        ``<group>/rejected`` (their extra ``crystalgan_rejection_reason`` says why).
        """
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED
        self.out('candidates', node.outputs.candidates)
        self.out('metrics', node.outputs.metrics)
        label = self.inputs.group_label.value if 'group_label' in self.inputs else \
            f'crystalgan/{self.inputs.system.value}/{self.node.pk}'
        grouped = {}
        for namespace, group_label in (('predicted', label), ('rejected', f'{label}/rejected')):
            structures = dict(node.outputs[namespace]) if namespace in node.outputs else {}
            group, _ = orm.Group.collection.get_or_create(group_label)
            group.add_nodes(list(structures.values()))
            for structure in structures.values():
                structure.base.extras.set_many({'crystalgan_campaign': self.node.uuid,
                                                'crystalgan_system': self.inputs.system.value})
            if structures:
                self.out(namespace, structures)
            grouped[namespace] = structures
        if 'evaluation' in node.outputs:
            self.out('evaluation', node.outputs.evaluation)
        self.node.base.extras.set('crystalgan_group', label)
        self._stage('finished')
        self.report(f'{len(grouped["predicted"])} predicted structures in group `{label}`, '
                    f'{len(grouped["rejected"])} rejected in `{label}/rejected`')
        return None
