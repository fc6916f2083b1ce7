"""``crystalgan.campaign``: the whole chain from seed structures to validated predicted structures."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain
from pymatgen.core import Composition

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import expose_engine_inputs
from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.functions import merge_training_data
from aiida_crystalgan.workflows.generation import GenerationWorkChain
from aiida_crystalgan.workflows.protocols import get_protocol_inputs
from aiida_crystalgan.workflows.sampling import SamplingWorkChain
from aiida_crystalgan.workflows.seeds import SeedsWorkChain, validate_system
from aiida_crystalgan.workflows.stability import StabilityWorkChain
from aiida_crystalgan.workflows.training import TrainingWorkChain

STAGES = ('seeds', 'sampling', 'references', 'dataset', 'training', 'generation', 'finished')


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


class CampaignWorkChain(WorkChain):
    """Seeds → MD sampling and reference relaxations → dataset → GAN training → generation and validation.

    Every stage is a process of its own, so the provenance graph of a predicted structure reaches back to the
    engine calculations that produced the training data. The daemon checkpoints the campaign between stages: it
    survives daemon restarts, and ``verdi process pause/play`` stops and resumes it.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('system', valid_type=orm.Str, validator=validate_system, help='Chemical system, e.g. `Nb-O`.')
        spec.input('parameters', valid_type=orm.Dict, help='Every stage\'s parameters (from a protocol).')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Extra seed structures (files, groups, OPTIMADE).')
        spec.input('train_code', valid_type=orm.AbstractCode, help='Code of `crystalgan-train`.')
        spec.input('generate_code', valid_type=orm.AbstractCode, help='Code of `crystalgan-generate`.')
        spec.input('train_options', valid_type=orm.Dict, required=False,
                   help='Scheduler options of training, e.g. {"custom_scheduler_commands": "#SBATCH --gres=gpu:1"}.')
        spec.input('group_label', valid_type=orm.Str, required=False,
                   help='Group that receives the predicted structures (default `crystalgan/<system>/<pk>`).')
        expose_engine_inputs(spec)
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
        spec.exit_code(400, 'ERROR_SEEDS_FAILED', message='The seed stage failed.')
        spec.exit_code(401, 'ERROR_SAMPLING_FAILED', message='The MD sampling failed.')
        spec.exit_code(402, 'ERROR_REFERENCES_FAILED', message='The relaxation of the reference phases failed.')
        spec.exit_code(403, 'ERROR_TRAINING_FAILED', message='The GAN training failed.')
        spec.exit_code(404, 'ERROR_GENERATION_FAILED', message='Generation or validation of candidates failed.')
        spec.exit_code(405, 'ERROR_NO_TARGETS', message='No compound composition to generate: give `targets`.')
        spec.exit_code(406, 'ERROR_MISSING_ELEMENTAL_SEED',
                       message='No seed of pure {elements}: the convex hull needs every element; raise '
                               '`seeds.max_atoms` or give one with `structures`.')

    @classmethod
    def get_builder_from_protocol(cls, system: str, engine_code: orm.AbstractCode, train_code: orm.AbstractCode,
                                  generate_code: orm.AbstractCode, protocol: str | None = None,
                                  overrides: dict[str, Any] | None = None, engine: str = 'mlip',
                                  engine_settings: dict[str, Any] | None = None,
                                  engine_options: dict[str, Any] | None = None,
                                  train_options: dict[str, Any] | None = None,
                                  structures: dict[str, orm.StructureData] | None = None):
        """A ready builder for ``system`` with the parameters of ``protocol`` (`fast`, `balanced`, `precise`)."""
        parse_system(system)
        parameters = get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.system = orm.Str(system)
        builder.parameters = orm.Dict(parameters)
        builder.train_code = train_code
        builder.generate_code = generate_code
        builder.engine.name = orm.Str(engine)
        builder.engine.code = engine_code
        builder.engine.protocol = orm.Str(protocol or 'balanced')
        if engine_settings:
            builder.engine.settings = orm.Dict(engine_settings)
        if engine_options:
            builder.engine.options = orm.Dict(engine_options)
        if train_options:
            builder.train_options = orm.Dict(train_options)
        if structures:
            builder.structures = structures
        return builder

    def _stage(self, name: str) -> None:
        self.node.base.extras.set('crystalgan_stage', name)

    def run_seeds(self):
        """Collect the seed structures."""
        self._stage('seeds')
        inputs = {'system': self.inputs.system,
                  'max_atoms': orm.Int(self.inputs.parameters['seeds']['max_atoms'])}
        if 'structures' in self.inputs:
            inputs['structures'] = dict(self.inputs.structures)
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
        parameters = self.inputs.parameters.get_dict()
        sampling = self.submit(SamplingWorkChain, structures=seeds, parameters=orm.Dict(parameters['sampling']),
                               engine=engine)
        references = self.submit(StabilityWorkChain, structures=seeds,
                                 parameters=orm.Dict(parameters['stability']), engine=engine)
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
        training = self.inputs.parameters['training']
        inputs = {
            'train': {
                'code': self.inputs.train_code,
                'dataset': self.ctx.dataset,
                'parameters': orm.Dict(training['config']),
                'metadata': {'options': {'max_wallclock_seconds': 24 * 3600,
                                         **(self.inputs.train_options.get_dict() if 'train_options' in self.inputs
                                            else {})}},
            },
            'max_iterations': orm.Int(training.get('max_iterations', 5)),
        }
        return ToContext(training=self.submit(TrainingWorkChain, **inputs))

    def run_generation(self):
        """Generate for every compound composition of the seeds, then validate the survivors."""
        if not self.ctx.training.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED
        self._stage('generation')
        model = self.ctx.training.outputs.model
        self.out('model', model)
        parameters = self.inputs.parameters.get_dict()
        generation = parameters['generation']
        n_max = int(model.base.attributes.get('n_max'))
        targets = generation.get('targets') or generation_targets(
            list(self.ctx.seeds.outputs.structures.values()), generation['max_formula_units'], n_max)
        if not targets:
            return self.exit_codes.ERROR_NO_TARGETS
        references = self.ctx.references.outputs
        inputs = {
            'generate': {
                'code': self.inputs.generate_code,
                'model': model,
                'parameters': orm.Dict({'targets': targets, 'num_per_target': generation['num_per_target'],
                                        'seed': generation.get('seed', 0)}),
            },
            'training_dataset': self.ctx.dataset,
            'postprocess': orm.Dict(parameters['postprocess']),
            'max_validations': orm.Int(generation['max_validations']),
            'stability': orm.Dict(parameters['stability']),
            'reference_structures': dict(references.relaxed_structures),
            'reference_results': dict(references.results),
            'engine': dict(self.inputs.engine),
        }
        return ToContext(generation=self.submit(GenerationWorkChain, **inputs))

    def results(self):
        """Expose the predictions and put them in the campaign's group."""
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED
        self.out('candidates', node.outputs.candidates)
        predicted = dict(node.outputs.predicted) if 'predicted' in node.outputs else {}
        label = self.inputs.group_label.value if 'group_label' in self.inputs else \
            f'crystalgan/{self.inputs.system.value}/{self.node.pk}'
        group, _ = orm.Group.collection.get_or_create(label)
        group.add_nodes(list(predicted.values()))
        for structure in predicted.values():
            structure.base.extras.set_many({'crystalgan_campaign': self.node.uuid, 'crystalgan_system':
                                            self.inputs.system.value})
        if predicted:
            self.out('predicted', predicted)
            self.out('evaluation', node.outputs.evaluation)
        self.node.base.extras.set('crystalgan_group', label)
        self._stage('finished')
        self.report(f'{len(predicted)} predicted structures in group `{label}`')
        return None
