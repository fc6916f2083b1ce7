"""``crystalgan.campaign``: the whole chain from seed structures to validated predicted structures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ExitCode, ToContext, WorkChain, calcfunction
from pymatgen.core import Composition

from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import expose_engine_inputs, load_engine
from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.generation import GenerationWorkChain
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.protocols.utils import validate_override_keys
from aiida_crystalgan.workflows.quench import (
    QuenchWorkChain,
    checked_dataset,
    relaxation_nodes,
    relaxed_datasets,
    split_roles,
)
from aiida_crystalgan.workflows.sampling import SamplingWorkChain
from aiida_crystalgan.workflows.seeds import SeedsWorkChain, link_label, validate_system
from aiida_crystalgan.workflows.stability import StabilityWorkChain
from aiida_crystalgan.workflows.training import TrainingWorkChain

#: Every stage's input namespace of the campaign and the workchain it feeds; each has its own protocol file.
STAGE_WORKCHAINS = {
    'seeds': SeedsWorkChain,
    'sampling': SamplingWorkChain,
    'quench': QuenchWorkChain,
    'stability': StabilityWorkChain,
    'training': TrainingWorkChain,
    'generation': GenerationWorkChain,
}
#: Inputs of the stages that the campaign fills in as it runs (structures, engine, upstream results).
RUNTIME_INPUTS = {
    'seeds': ('system', 'structures'),
    'sampling': ('structures', 'engine'),
    'quench': ('snapshots', 'trajectories', 'stability', 'known', 'engine'),
    'stability': ('structures', 'engine'),
    'training': ('train.dataset', 'train.parent_model'),
    'generation': (
        'generate.model',
        'training_dataset',
        'stability',
        'reference_structures',
        'reference_results',
        'engine',
    ),
}
#: Stages that use the campaign's ``stability`` parameters instead of their own.
SHARED_STABILITY = ('quench', 'generation')
#: Key prefix of the reference phases among the structures that the campaign relaxes with the seeds.
REFERENCE_PREFIX = 'reference_'


@calcfunction
def structures_from_datasets(**datasets: CrystalDatasetData) -> dict[str, orm.StructureData]:
    """Every structure of each dataset as a ``StructureData`` ``<dataset>_<index>``, labelled as in the dataset."""
    outputs = {}
    for name, dataset in datasets.items():
        for index, record in enumerate(dataset):
            structure = orm.StructureData(ase=record.to_ase())
            structure.label = record.label
            outputs[f'{name}_{index}'] = structure
    return outputs


@calcfunction
def merge_training_data(snapshots: CrystalDatasetData, **datasets: CrystalDatasetData) -> CrystalDatasetData:
    """The training set: MD snapshots and relaxed structures (``labelled``) and the distinct local minima.

    ``datasets`` holds ``labelled_<origin>`` and ``minima_<origin>`` datasets (quenched snapshots, relaxed seeds and
    references); equivalent minima of different origins are merged, the lowest energy kept as the ``minimum`` and the
    others kept as ``labelled`` data.
    """
    labelled = [record for name, dataset in datasets.items() if name.startswith('labelled_') for record in dataset]
    minima = [record for name, dataset in datasets.items() if name.startswith('minima_') for record in dataset]
    labelled, unique = split_roles(labelled, minima)
    metadata = {
        'origin': 'md snapshots, relaxed structures and local minima',
        'snapshots': snapshots.uuid,
        'parts': {name: dataset.uuid for name, dataset in datasets.items()},
    }
    return CrystalDatasetData([*snapshots.records(), *labelled, *unique], metadata=metadata)


def split_relaxed(summary: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """``(relaxed, failed)`` keys of a ``crystalgan.stability`` summary: a structure whose relaxation neither
    converged nor brought its largest force below the tolerance failed, and stays out of the convex hull."""
    failed = sorted(
        key for key, verdict in summary.items() if not (verdict['converged'] or verdict['forces_below_tolerance'])
    )
    return [key for key in summary if key not in failed], failed


def _node_elements(node: orm.Data) -> set[str]:
    """The elements of a structure or of a dataset."""
    return set(node.elements) if isinstance(node, CrystalDatasetData) else set(node.get_symbols_set())


def _elemental_phases(node: orm.Data) -> set[str]:
    """The elements of which a structure or a dataset holds a pure phase."""
    if isinstance(node, CrystalDatasetData):
        compositions = [Composition(formula) for formula in node.compositions]
        return {composition.elements[0].symbol for composition in compositions if len(composition.elements) == 1}
    symbols = node.get_symbols_set()
    return set(symbols) if len(symbols) == 1 else set()


def validate_inputs(inputs: dict[str, Any], _) -> str | None:
    """Seeds and references hold only elements of the system, and every element has a pure phase for the hull.

    The pure phases are looked for among the ``references``, the user's ``structures`` and, when the seeds use them,
    the built-in prototypes.
    """
    from aiida_crystalgan.structures.prototypes import seed_structures

    try:
        elements = parse_system(inputs['system'].value)
    except (KeyError, ValueError):
        return None  # the `system` port reports it
    elemental = set()
    for namespace in ('structures', 'references'):
        for key, node in inputs.get(namespace, {}).items():
            foreign = sorted(_node_elements(node) - set(elements))
            if foreign:
                return f'`{namespace}.{key}` contains {", ".join(foreign)}, outside the system {inputs["system"].value}'
            elemental |= _elemental_phases(node)
    seeds = inputs.get('seeds', {})
    if 'use_prototypes' in seeds and seeds['use_prototypes'].value and 'max_atoms' in seeds:
        for seed in seed_structures(inputs['system'].value, max_atoms=seeds['max_atoms'].value):
            if len(seed.structure.composition.elements) == 1:
                elemental.add(seed.structure.composition.elements[0].symbol)
    missing = [element for element in elements if element not in elemental]
    if missing:
        return (
            f'no pure phase of {", ".join(missing)} among the references and seeds: the convex hull needs every '
            'element of the system; add one to `references`'
        )
    return None


def generation_targets(structures: list[orm.StructureData], max_formula_units: int, n_max: int) -> list[dict]:
    """Every compound composition among ``structures``, at 1 to ``max_formula_units`` formula units (≤ ``n_max``)."""
    targets = []
    formulas = sorted(
        {s.get_pymatgen().composition.reduced_formula for s in structures if len(s.get_symbols_set()) > 1}
    )
    for formula in formulas:
        atoms_per_unit = int(Composition(formula).num_atoms)
        targets.extend(
            {'composition': formula, 'formula_units': units}
            for units in range(1, max_formula_units + 1)
            if units * atoms_per_unit <= n_max
        )
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
    """Seeds → MD sampling and relaxation of seeds and references → quench → dataset → GAN → generation.

    Every stage is a process of its own, so the provenance graph of a predicted structure reaches back to the
    engine calculations that produced the training data. The daemon checkpoints the campaign between stages: it
    survives daemon restarts, and ``verdi process pause/play`` stops and resumes it. Each stage's inputs are exposed
    in a namespace of its name (``seeds``, ``sampling``, ``quench``, ``stability``, ``training``, ``generation``); the
    stability parameters serve the seeds, the reference phases, the quenched snapshots and the generated candidates.

    The training set holds the MD snapshots and every relaxed structure as ``labelled`` data, and the distinct local
    minima (relaxed seeds, references and quenched snapshots with forces below the tolerance and no imaginary phonon
    mode) as ``minimum``. The convex hull is built from the relaxed seeds and references.
    """

    _protocol_file = 'campaign.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('system', valid_type=orm.Str, validator=validate_system, help='Chemical system, e.g. `Nb-O`.')
        spec.input_namespace(
            'structures',
            valid_type=(orm.StructureData, CrystalDatasetData),
            dynamic=True,
            required=False,
            help='Extra seed structures, or datasets of them (files, groups, OPTIMADE imports).',
        )
        spec.input_namespace(
            'references',
            valid_type=(orm.StructureData, CrystalDatasetData),
            dynamic=True,
            required=False,
            help='Known phases of the system, or datasets of them: relaxed with the engine, they '
            'join the seeds in the convex hull and, as local minima, the training set.',
        )
        spec.input(
            'max_formula_units',
            valid_type=orm.Int,
            help='Generation targets: every compound of the seeds at 1 to this many formula units.',
        )
        spec.input(
            'targets',
            valid_type=orm.List,
            required=False,
            help="Explicit generation targets ({composition, formula_units}), instead of the seeds' ones.",
        )
        spec.input(
            'group_label',
            valid_type=orm.Str,
            required=False,
            help='Group that receives the predicted structures (default `crystalgan/<system>/<pk>`).',
        )
        expose_engine_inputs(spec)
        for namespace, workchain in STAGE_WORKCHAINS.items():
            spec.expose_inputs(workchain, namespace=namespace, exclude=RUNTIME_INPUTS[namespace])
            spec.inputs[namespace].validator = None  # the stage validates its complete inputs when it is submitted
        spec.inputs['generation']['generate'].validator = None
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.run_seeds,
            cls.run_sampling_and_references,
            cls.run_quench,
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
        spec.output(
            'hull',
            valid_type=orm.Dict,
            required=False,
            help='`phases`: the relaxed seeds and references on the convex hull.',
        )
        spec.output_namespace(
            'rejected',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Validated candidates that did not pass, in `<group>/rejected`.',
        )
        spec.output('metrics', valid_type=orm.Dict, required=False, help="The screening funnel's metrics per arm.")
        spec.exit_code(710, 'ERROR_SEEDS_FAILED', message='The seed stage failed.')
        spec.exit_code(711, 'ERROR_SAMPLING_FAILED', message='The MD sampling failed.')
        spec.exit_code(
            712, 'ERROR_REFERENCES_FAILED', message='The relaxation of the seeds and reference phases failed.'
        )
        spec.exit_code(713, 'ERROR_TRAINING_FAILED', message='The GAN training failed.')
        spec.exit_code(714, 'ERROR_GENERATION_FAILED', message='Generation or validation of candidates failed.')
        spec.exit_code(715, 'ERROR_NO_TARGETS', message='No compound composition to generate: give `targets`.')
        spec.exit_code(
            716,
            'ERROR_MISSING_ELEMENTAL_SEED',
            message='No seed of pure {elements}: the convex hull needs every element; raise '
            '`seeds.max_atoms` or give one with `structures` or `references`.',
        )
        spec.exit_code(
            717,
            'ERROR_NO_MINIMA',
            message='No local minimum in the training set: no relaxed seed, reference or quenched snapshot '
            "has forces below the tolerance and no imaginary phonon mode, and the GAN's critic "
            'needs minima as real data; give known phases as `references`, or loosen '
            '`stability.force_tolerance` or raise `quench.max_snapshots`.',
        )
        spec.exit_code(
            718,
            'ERROR_HULL_INCOMPLETE',
            message='No pure phase of {elements} relaxed: the convex hull needs every element.',
        )
        spec.exit_code(719, 'ERROR_QUENCH_FAILED', message='The quench of the MD snapshots failed.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The campaign's own keys and, under each stage's name, the keys of that stage's protocol."""
        keys = {
            **super().get_override_keys(),
            **{name: workchain.get_override_keys() for name, workchain in STAGE_WORKCHAINS.items()},
        }
        for name in SHARED_STABILITY:
            keys[name] = {key: value for key, value in keys[name].items() if key != 'stability'}
        return keys

    @classmethod
    def get_protocol_inputs(
        cls, protocol: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The campaign's own inputs (``campaign.yaml``) and every stage's, from the stage's protocol file."""
        overrides = dict(overrides or {})
        validate_override_keys(overrides, cls.get_override_keys())
        stages = {
            name: workchain.get_protocol_inputs(protocol, overrides.pop(name, None))
            for name, workchain in STAGE_WORKCHAINS.items()
        }
        for name in SHARED_STABILITY:
            stages[name].pop('stability')
        return {**super().get_protocol_inputs(protocol, overrides), **stages}

    @classmethod
    def get_builder_from_protocol(
        cls,
        system: str,
        engine_code: orm.AbstractCode,
        train_code: orm.AbstractCode,
        generate_code: orm.AbstractCode,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        engine: str = 'mlip',
        engine_protocol: str | None = None,
        engine_settings: dict[str, Any] | None = None,
        engine_options: dict[str, Any] | None = None,
        train_options: dict[str, Any] | None = None,
        structures: dict[str, orm.StructureData | CrystalDatasetData] | None = None,
        references: dict[str, orm.StructureData | CrystalDatasetData] | None = None,
    ):
        """A ready builder for ``system``: every stage built from its own protocol named ``protocol``.

        :param protocol: `fast`, `balanced` or `precise` (default: the plugin's default protocol, `fast`).
        :param overrides: the campaign's own keys (``max_formula_units``, ``targets``) and, under a stage's name
            (``seeds``, ``sampling``, ``quench``, ``stability``, ``training``, ``generation``), values over that
            stage's protocol.
        :param structures: extra seeds (structures or datasets of them).
        :param references: known phases of the system (structures or datasets of them) for the convex hull.
        :param engine_protocol: the engine's numerical protocol (default: ``protocol``, so that `precise` campaigns
            get precise DFT); any of the engine's protocols.
        :raises ValueError: for an unknown protocol, engine protocol or override key, or a malformed ``system``.
        """
        parse_system(system)
        overrides = dict(overrides or {})
        validate_override_keys(overrides, cls.get_override_keys())
        stage_overrides = {name: overrides.pop(name, None) for name in STAGE_WORKCHAINS}
        inputs = super().get_protocol_inputs(protocol, overrides)
        engine_inputs = {
            'name': orm.Str(engine),
            'code': engine_code,
            'protocol': orm.Str(engine_protocol or protocol or cls.get_default_protocol()),
        }
        error = load_engine(engine).spec().inputs['protocol'].validate(engine_inputs['protocol'])
        if error:
            raise ValueError(f'engine `{engine}`: {error.message}')
        if engine_settings:
            engine_inputs['settings'] = orm.Dict(engine_settings)
        if engine_options:
            engine_inputs['options'] = orm.Dict(engine_options)
        stages = {
            'seeds': SeedsWorkChain.get_builder_from_protocol(system, protocol, stage_overrides['seeds']),
            'sampling': SamplingWorkChain.get_builder_from_protocol(
                {}, engine_inputs, protocol, stage_overrides['sampling']
            ),
            'quench': QuenchWorkChain.get_builder_from_protocol(
                engine_inputs, protocol=protocol, overrides=stage_overrides['quench']
            ),
            'stability': StabilityWorkChain.get_builder_from_protocol(
                {}, engine_inputs, protocol, stage_overrides['stability']
            ),
            'training': TrainingWorkChain.get_builder_from_protocol(
                train_code, None, protocol, stage_overrides['training'], train_options
            ),
            'generation': GenerationWorkChain.get_builder_from_protocol(
                generate_code, engine_inputs, None, None, protocol, stage_overrides['generation']
            ),
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
        if references:
            builder.references = references
        return builder

    def _stage(self, name: str) -> None:
        self.node.base.extras.set('crystalgan_stage', name)

    def _stage_inputs(self, name: str, **runtime: Any) -> AttributeDict:
        """The inputs of stage ``name``: the campaign's namespace of that name plus ``runtime`` inputs."""
        inputs = AttributeDict(self.exposed_inputs(STAGE_WORKCHAINS[name], namespace=name))
        inputs.update(runtime)
        return inputs

    def _expand(self, namespace: str) -> dict[str, orm.StructureData]:
        """The structures of input ``namespace``, those of its datasets included (through a calcfunction)."""
        nodes = dict(self.inputs.get(namespace, {}))
        structures = {key: node for key, node in nodes.items() if isinstance(node, orm.StructureData)}
        datasets = {link_label(key): node for key, node in nodes.items() if isinstance(node, CrystalDatasetData)}
        if datasets:
            structures.update(structures_from_datasets(**datasets))
        return structures

    def run_seeds(self):
        """Collect the seed structures."""
        self._stage('seeds')
        inputs = self._stage_inputs('seeds', system=self.inputs.system)
        structures = self._expand('structures')
        if structures:
            inputs.structures = structures
        return ToContext(seeds=self.submit(SeedsWorkChain, **inputs))

    def run_sampling_and_references(self):
        """MD sampling of the seeds, and the relaxation + force and phonon checks of seeds and references together."""
        if not self.ctx.seeds.is_finished_ok:
            return self.exit_codes.ERROR_SEEDS_FAILED
        seeds = dict(self.ctx.seeds.outputs.structures)
        references = {f'{REFERENCE_PREFIX}{key}': s for key, s in self._expand('references').items()}
        elemental = {
            next(iter(s.get_symbols_set()))
            for s in (*seeds.values(), *references.values())
            if len(s.get_symbols_set()) == 1
        }
        missing = [element for element in parse_system(self.inputs.system.value) if element not in elemental]
        if missing:
            return self.exit_codes.ERROR_MISSING_ELEMENTAL_SEED.format(elements=', '.join(missing))
        self._stage('sampling')
        self.out('seeds', seeds)
        engine = dict(self.inputs.engine)
        sampling = self.submit(SamplingWorkChain, **self._stage_inputs('sampling', structures=seeds, engine=engine))
        inputs = self._stage_inputs('stability', structures={**seeds, **references}, engine=engine)
        relaxation = self.submit(StabilityWorkChain, **inputs)
        self.report(
            f'sampling {len(seeds)} seeds with MD<{sampling.pk}>, relaxing and checking them and '
            f'{len(references)} reference phases with <{relaxation.pk}>'
        )
        return ToContext(sampling=sampling, references=relaxation)

    def run_quench(self):
        """Relax snapshots of every MD trajectory to their local minimum, with forces and phonons checked."""
        if not self.ctx.sampling.is_finished_ok:
            return self.exit_codes.ERROR_SAMPLING_FAILED
        if not self.ctx.references.is_finished_ok:
            return self.exit_codes.ERROR_REFERENCES_FAILED
        phases = self.hull_phases()
        if isinstance(phases, ExitCode):
            return phases
        self.ctx.hull_phases = phases
        self._stage('quench')
        relaxation = self.ctx.references.outputs
        relaxed = relaxation_nodes(relaxation.relaxed_structures, relaxation.results)
        known = checked_dataset(relaxation.summary, **relaxed)
        inputs = self._stage_inputs(
            'quench',
            trajectories=dict(self.ctx.sampling.outputs.trajectories),
            stability=self.inputs.stability.parameters,
            known=known,
            engine=dict(self.inputs.engine),
        )
        return ToContext(quench=self.submit(QuenchWorkChain, **inputs))

    def build_dataset(self):
        """MD snapshots, relaxed structures and the distinct local minima, through calcfunctions."""
        if not self.ctx.quench.is_finished_ok:
            return self.exit_codes.ERROR_QUENCH_FAILED
        self._stage('dataset')
        relaxation = self.ctx.references.outputs
        nodes = {}
        for key, structure in relaxation.relaxed_structures.items():
            nodes[f'structure_{key}'] = structure
            nodes[f'results_{key}'] = relaxation.results[key]
        relaxed = relaxed_datasets(relaxation.summary, orm.Str('relaxed seeds and references'), **nodes)
        datasets = {f'{role}_relaxed': dataset for role, dataset in relaxed.items()}
        quench = self.ctx.quench.outputs
        datasets.update({f'{role}_quench': quench[role] for role in ('labelled', 'minima') if role in quench})
        dataset = merge_training_data(self.ctx.sampling.outputs.snapshots, **datasets)
        self.ctx.dataset = dataset
        self.out('dataset', dataset)
        self.report(
            f'training set of {dataset.size} structures: {dataset.num_minima} distinct local minima '
            f'(`{MINIMUM}`) and {dataset.num_labelled} MD snapshots and relaxed structures (`{LABELLED}`)'
        )
        if dataset.num_minima == 0:
            return self.exit_codes.ERROR_NO_MINIMA
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
            targets = generation_targets(
                list(self.ctx.seeds.outputs.structures.values()),
                self.inputs.max_formula_units.value,
                int(model.base.attributes.get('n_max')),
            )
        if not targets:
            return self.exit_codes.ERROR_NO_TARGETS
        phases = self.ctx.hull_phases
        relaxation = self.ctx.references.outputs
        inputs = self._stage_inputs(
            'generation',
            training_dataset=self.ctx.dataset,
            stability=self.inputs.stability.parameters,
            reference_structures={key: relaxation.relaxed_structures[key] for key in phases},
            reference_results={key: relaxation.results[key] for key in phases},
            engine=dict(self.inputs.engine),
        )
        generate = inputs['generate']
        generate['model'] = model
        generate['parameters'] = orm.Dict({**generate['parameters'].get_dict(), 'targets': targets})
        return ToContext(generation=self.submit(GenerationWorkChain, **inputs))

    def hull_phases(self) -> list[str] | ExitCode:
        """Keys of the relaxed seeds and references that enter the hull; those that did not relax are reported."""
        summary = self.ctx.references.outputs.summary.get_dict()
        phases, failed = split_relaxed(summary)
        for key in failed:
            what = 'reference phase' if key.startswith(REFERENCE_PREFIX) else 'seed'
            self.report(
                f'{what} `{key.removeprefix(REFERENCE_PREFIX)}` did not relax (largest force '
                f'{summary[key]["max_force"]:.3g} eV/Å): left out of the convex hull'
            )
        relaxed = self.ctx.references.outputs.relaxed_structures
        elemental = {
            next(iter(relaxed[key].get_symbols_set())) for key in phases if len(relaxed[key].get_symbols_set()) == 1
        }
        missing = [element for element in parse_system(self.inputs.system.value) if element not in elemental]
        if missing:
            return self.exit_codes.ERROR_HULL_INCOMPLETE.format(elements=', '.join(missing))
        return phases

    def results(self):
        """Expose the predictions and metrics; predicted structures go to the campaign's group, rejected ones to
        ``<group>/rejected`` (their extra ``crystalgan_rejection_reason`` says why).
        """
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED
        self.out('candidates', node.outputs.candidates)
        self.out('metrics', node.outputs.metrics)
        label = (
            self.inputs.group_label.value
            if 'group_label' in self.inputs
            else f'crystalgan/{self.inputs.system.value}/{self.node.pk}'
        )
        grouped = {}
        for namespace, group_label in (('predicted', label), ('rejected', f'{label}/rejected')):
            structures = dict(node.outputs[namespace]) if namespace in node.outputs else {}
            group, _ = orm.Group.collection.get_or_create(group_label)
            group.add_nodes(list(structures.values()))
            for structure in structures.values():
                structure.base.extras.set_many(
                    {'crystalgan_campaign': self.node.uuid, 'crystalgan_system': self.inputs.system.value}
                )
            if structures:
                self.out(namespace, structures)
            grouped[namespace] = structures
        if 'evaluation' in node.outputs:
            self.out('evaluation', node.outputs.evaluation)
            self.out('hull', node.outputs.hull)
            phases = ', '.join(
                f'{phase["formula"]} ({phase["name"].removeprefix(REFERENCE_PREFIX)})'
                for phase in node.outputs.hull['phases']
            )
            self.report(f'convex hull of the relaxed seeds and references: {phases}')
        self.node.base.extras.set('crystalgan_group', label)
        self._stage('finished')
        self.report(
            f'{len(grouped["predicted"])} predicted structures in group `{label}`, '
            f'{len(grouped["rejected"])} rejected in `{label}/rejected`'
        )
        return None
