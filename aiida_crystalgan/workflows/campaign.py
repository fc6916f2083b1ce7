"""``crystalgan.campaign``: the whole chain from seed structures to validated predicted structures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.common.links import LinkType
from aiida.engine import ExitCode, ToContext, WorkChain, calcfunction, if_, while_
from pymatgen.core import Composition

from aiida_crystalgan.data.dataset import LABELLED, MINIMUM, CrystalDatasetData, to_record
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import expose_engine_inputs, load_engine
from aiida_crystalgan.engines.outputs import read_results
from aiida_crystalgan.structures.prototypes import parse_system
from aiida_crystalgan.workflows.generation import GenerationWorkChain
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.protocols.utils import validate_override_keys
from aiida_crystalgan.workflows.quench import (
    QuenchWorkChain,
    checked_dataset,
    relaxation_nodes,
    relaxation_steps,
    relaxed_datasets,
    relaxed_records,
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
#: Output namespace of the discovery rounds: ``rounds.round_<number>.<output>``.
ROUNDS_NAMESPACE = 'rounds'


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


@calcfunction
def feed_back_candidates(
    dataset: CrystalDatasetData, evaluation: orm.Dict, round_number: orm.Int, **nodes: orm.Data
) -> dict[str, orm.Data]:
    """The next round's training set: ``dataset`` with the candidates that a round validated, and its new S.U.N.
    structures.

    ``nodes`` holds ``structure_<key>`` / ``results_<key>`` (each relaxed candidate and its engine results) and
    ``evaluation`` their rows (:func:`~aiida_crystalgan.workflows.generation.evaluate_candidates`). Every relaxed
    candidate joins as ``labelled`` data and every local minimum as a ``minimum``; equivalent minima (a candidate and a
    minimum of the dataset, or two candidates) are merged, the lowest energy kept as the ``minimum``, the other kept as
    ``labelled``. The steps of each candidate's relaxation (``trajectory_<key>``, from the candidate as generated on)
    join as ``labelled`` data. So do the cheap pass's results (``cheap_structure_<key>`` / ``cheap_results_<key>`` /
    ``cheap_trajectory_<key>`` of :func:`cheap_pass_nodes`: the end point and steps of each short relaxation, the
    candidate as generated first): the engine's energies and forces of what the generator proposes, which the physics
    head needs to rank and guide the next round's candidates.

    Returns ``dataset`` and ``summary``: ``validated``, ``minima_added`` (distinct new minima),
    ``relaxation_steps_added``, ``cheap_pass_added`` (records of the cheap pass), ``new_sun`` (keys of the candidates
    that are stable within the E_hull window, novel with respect to ``dataset``, the training set that already holds
    the earlier rounds' candidates, and distinct from each other) and ``n_new_sun``.
    """
    from aiida_crystalgan.importers.cleaning import deduplicate_minima

    rows = evaluation.get_dict()
    origin = f'round_{round_number.value}'
    added = {'labelled': [], 'minima': []}
    for record, is_minimum in relaxed_records(rows, nodes, origin):
        added['minima' if is_minimum else 'labelled'].append(record)
    steps = relaxation_steps(nodes, origin)
    cheap = cheap_pass_records(nodes, set(rows), f'{origin}:cheap')
    labelled, minima = split_roles(
        [*dataset.records(role=LABELLED), *added['labelled'], *steps, *cheap],
        [*dataset.records(role=MINIMUM), *added['minima']],
    )
    sun_keys = sorted(key for key, row in rows.items() if row['passes'] and row['is_novel'])
    sun_records = [to_record(nodes[f'structure_{key}'], **read_results(nodes[f'results_{key}'])) for key in sun_keys]
    distinct, _ = deduplicate_minima(sun_records)
    new_sun = [sun_keys[index] for index in distinct]
    summary = {
        'round': round_number.value,
        'validated': len(rows),
        'minima_added': len(minima) - dataset.num_minima,
        'relaxation_steps_added': len(steps),
        'cheap_pass_added': len(cheap),
        'new_sun': new_sun,
        'n_new_sun': len(new_sun),
    }
    metadata = {
        'origin': f'training set of round {round_number.value} and the candidates it validated',
        'previous': dataset.uuid,
        'round': round_number.value,
    }
    return {'dataset': CrystalDatasetData([*labelled, *minima], metadata=metadata), 'summary': orm.Dict(summary)}


def cheap_pass_records(nodes: Mapping[str, orm.Data], validated: set[str], origin: str) -> list:
    """The cheap pass's results among ``nodes`` (``cheap_``-prefixed, see :func:`cheap_pass_nodes`) as ``labelled``
    records ``<origin>:<key>`` and ``<origin>:<key>:step<step>``; the end point of a ``validated`` candidate is left
    out (its validation relaxation starts there and brings it)."""
    cheap = {name.removeprefix('cheap_'): node for name, node in nodes.items() if name.startswith('cheap_')}
    records = [
        to_record(structure, **read_results(cheap[f'results_{key}']), role=LABELLED, label=f'{origin}:{key}')
        for name, structure in cheap.items()
        if name.startswith('structure_') and (key := name.removeprefix('structure_')) not in validated
    ]
    return records + relaxation_steps(cheap, origin)


def cheap_pass_nodes(generation: orm.ProcessNode) -> dict[str, orm.Data]:
    """The GAN arm's cheap-pass results of a generation workchain (the inputs of its ``rank_cheap_pass_gan`` call):
    ``cheap_structure_<key>``, ``cheap_results_<key>`` and, where the engine returned the steps,
    ``cheap_trajectory_<key>``; empty when it ran no cheap pass (or predates the call's label)."""
    from aiida_crystalgan.workflows.generation import GAN

    calls = generation.base.links.get_outgoing(
        link_type=LinkType.CALL_CALC, link_label_filter=f'rank_cheap_pass_{GAN}'
    ).all()
    if not calls:
        return {}
    return {f'cheap_{name}': node for name, node in relaxation_inputs(calls[0].node).items()}


def continued_training(parameters: Mapping[str, Any], parent: GanModelData | None) -> dict[str, Any]:
    """The GAN configuration of a round: the first trains ``steps`` steps from scratch, each later one ``steps`` more
    from the previous round's model (training stops at ``steps`` counted from the first step)."""
    parameters = dict(parameters)
    if parent is not None:
        parameters['steps'] = parent.step + parameters['steps']
    return parameters


def evaluated_nodes(evaluation: orm.Dict) -> dict[str, orm.Data]:
    """The relaxed candidates and their engine results (``structure_<key>``, ``results_<key>``) that ``evaluation``
    was computed from (the inputs of the calcfunction that created it), with their relaxations' steps
    (``trajectory_<key>``) where the engine returned them."""
    return relaxation_inputs(evaluation.base.links.get_incoming(link_type=LinkType.CREATE).one().node)


def relaxation_inputs(calculation: orm.ProcessNode) -> dict[str, orm.Data]:
    """The relaxed structures and engine results (``structure_<key>``, ``results_<key>``) among the inputs of a
    calcfunction, with their relaxations' steps (``trajectory_<key>``) where the engine returned them."""
    inputs = {
        link.link_label: link.node for link in calculation.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    }
    keys = [name.removeprefix('structure_') for name in inputs if name.startswith('structure_')]
    return relaxation_nodes(
        {key: inputs[f'structure_{key}'] for key in keys}, {key: inputs[f'results_{key}'] for key in keys}
    )


#: The campaign's own calculations, whose scheduler options (not stored as input nodes) an extension reuses.
SCHEDULED_CALCULATIONS = {
    'aiida.calculations:crystalgan.train': ('training', 'train'),
    'aiida.calculations:crystalgan.generate': ('generation', 'generate'),
}


def earlier_scheduler_options(campaign: orm.ProcessNode) -> dict[tuple[str, str], dict[str, Any]]:
    """The scheduler options (resources, wall clock, GPU requests...) of the first training and generation
    calculations of ``campaign``, by ``(stage, calculation)`` input namespace."""
    options = {}
    for node in sorted(campaign.called_descendants, key=lambda node: node.pk):
        namespace = SCHEDULED_CALCULATIONS.get(node.process_type)
        if namespace and namespace not in options:
            options[namespace] = node.get_options()
    return options


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


def validate_rounds(value: orm.Int, _) -> str | None:
    """At least one round."""
    return None if value.value >= 1 else f'`rounds` must be at least 1, got {value.value}'


def model_cell_size(inputs: dict[str, Any]) -> int:
    """The largest cell (``n_max`` atoms) the campaign's GAN generates: the earlier campaign's model when it continues
    one, else the training configuration's (its default where the configuration leaves it out)."""
    from aiida_crystalgan.gan.config import GanConfig

    previous = inputs.get('previous', {})
    if 'model' in previous:
        return int(previous['model'].base.attributes.get('n_max'))
    parameters = inputs.get('training', {}).get('train', {}).get('parameters')
    return int((parameters.get_dict() if parameters else {}).get('n_max', GanConfig.n_max))


def targets_problem(targets: list[Any], elements: list[str], n_max: int) -> str | None:
    """Why explicit generation ``targets`` cannot be generated (a composition that does not parse, outside the
    system, not a positive number of formula units, more atoms than ``n_max``), or ``None``."""
    from aiida_crystalgan.gan.generation import parse_targets

    try:
        parse_targets(targets, elements, n_max)
    except ValueError as exception:
        return f'`targets`: {exception}'
    return None


def validate_inputs(inputs: dict[str, Any], _) -> str | None:
    """Explicit ``targets`` can be generated, seeds and references hold only elements of the system, and every element
    has a pure phase for the hull.

    The pure phases are looked for among the ``references``, the user's ``structures`` and, when the seeds use them,
    the built-in prototypes. A campaign that continues an earlier one (``previous``) has its hull already, and needs
    ``targets``.
    """
    from aiida_crystalgan.structures.prototypes import seed_structures

    try:
        elements = parse_system(inputs['system'].value)
    except (KeyError, ValueError):
        return None  # the `system` port reports it
    if 'targets' in inputs:
        problem = targets_problem(inputs['targets'].get_list(), elements, model_cell_size(inputs))
        if problem:
            return problem
    if inputs.get('previous'):
        if 'targets' not in inputs:
            return 'a campaign that continues an earlier one (`previous`) needs its generation `targets`'
        return None  # the seeds, the MD and the hull are the earlier campaign's
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


def targets_beyond_minima(targets: list[dict], largest_minimum: int) -> list[str]:
    """The targets (``<composition>x<formula units>``) whose cell has more atoms than ``largest_minimum``, the largest
    minimum of the training set: the generator was never shown a real structure that large and extrapolates in cell
    size. The targets are valid (checked at submission, or made by ``generation_targets``)."""
    beyond = []
    for target in targets:
        units = target.get('formula_units', 1)
        if units * int(Composition(target['composition']).num_atoms) > largest_minimum:
            beyond.append(f'{target["composition"]}x{units}')
    return beyond


def _without(inputs: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """``inputs`` without the (dotted) ``paths``."""
    for path in paths:
        *parents, name = path.split('.')
        namespace = inputs
        for parent in parents:
            namespace = namespace.get(parent, {})
        namespace.pop(name, None)
    return inputs


def round_seed(seed: int, round_number: int) -> int:
    """The generation seed of round ``round_number`` (1, 2, ...): the protocol's ``seed`` in round 1, then one more per
    round, so that a continued campaign draws new candidates instead of the last round's again."""
    return seed + round_number - 1


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

    Training, generation and validation run for ``rounds`` discovery rounds: each later round trains from the previous
    round's model on the training set enlarged with the candidates that round validated (:func:`feed_back_candidates`),
    on a hull that includes the earlier rounds' predicted structures; the campaign stops after a round without a new
    S.U.N. structure (``stop_without_new_sun``). With ``previous``, it continues an earlier campaign's rounds instead of
    starting from seeds (:meth:`get_builder_extension`).
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
        spec.input(
            'rounds',
            valid_type=orm.Int,
            validator=validate_rounds,
            help='Discovery rounds: training, generation and validation, each round retraining from the previous '
            "round's model on the training set enlarged with the candidates it validated.",
        )
        spec.input(
            'stop_without_new_sun',
            valid_type=orm.Bool,
            help='Stop before `rounds` when a round finds no new S.U.N. structure (stable within the E_hull '
            'window, unique, novel with respect to the training set and the earlier rounds).',
        )
        spec.input_namespace(
            'previous',
            required=False,
            help='The last round of an earlier campaign to continue from (`campaign extend`): no seeds, MD or '
            'quench are run.',
        )
        spec.input('previous.dataset', valid_type=CrystalDatasetData, help="The next round's training set.")
        spec.input('previous.model', valid_type=GanModelData, help="The last round's model: training resumes from it.")
        spec.input_namespace(
            'previous.hull_structures', valid_type=orm.StructureData, dynamic=True, help='The phases of the hull.'
        )
        spec.input_namespace(
            'previous.hull_results', valid_type=orm.ArrayData, dynamic=True, help='Their engine results, same keys.'
        )
        spec.input('previous.last_round', valid_type=orm.Int, help='The number of the last round run.')
        expose_engine_inputs(spec)
        for namespace, workchain in STAGE_WORKCHAINS.items():
            spec.expose_inputs(workchain, namespace=namespace, exclude=RUNTIME_INPUTS[namespace])
            spec.inputs[namespace].validator = None  # the stage validates its complete inputs when it is submitted
        spec.inputs['generation']['generate'].validator = None
        spec.inputs.validator = validate_inputs
        spec.outline(
            if_(cls.continues_a_campaign)(
                cls.continue_previous,
            ).else_(
                cls.run_seeds,
                cls.run_sampling_and_references,
                cls.run_quench,
                cls.build_dataset,
                cls.setup_rounds,
            ),
            while_(cls.should_run_round)(
                cls.run_training,
                cls.run_generation,
                cls.inspect_round,
            ),
            cls.results,
        )
        spec.output_namespace('seeds', valid_type=orm.StructureData, dynamic=True, required=False)
        spec.output('dataset', valid_type=CrystalDatasetData, help="The last round's training set.")
        spec.output('model', valid_type=GanModelData, help="The last round's GAN.")
        spec.output(
            'next_dataset',
            valid_type=CrystalDatasetData,
            required=False,
            help="The last round's training set with the candidates it validated: `campaign extend` trains on it.",
        )
        spec.output_namespace('hull_phases', required=False, help='The convex hull for the next round.')
        spec.output_namespace(
            'hull_phases.structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help="The phases of the convex hull after the last round: relaxed seeds and references and every round's "
            'predicted structures.',
        )
        spec.output_namespace('hull_phases.results', valid_type=orm.ArrayData, dynamic=True, required=False)
        spec.output_namespace(
            ROUNDS_NAMESPACE,
            valid_type=orm.Data,
            dynamic=True,
            required=False,
            help='Per round, `round_<number>`: `dataset`, `model`, `candidates`, `metrics`, `summary` (new S.U.N. '
            'structures), `next_dataset` and, where candidates were validated, `evaluation`, `predicted` and '
            '`rejected`.',
        )
        spec.output('candidates', valid_type=CrystalDatasetData, help='Every structure the last round generated.')
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
        spec.exit_code(
            714,
            'ERROR_GENERATION_FAILED',
            message='Generation or validation of candidates failed; the outputs of the earlier rounds are kept.',
        )
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
        spec.exit_code(
            720,
            'ERROR_NO_VALID_CANDIDATES',
            message='Round {round}: no generated candidate passed the screening to be validated; the outputs of the '
            'earlier rounds are kept.',
        )

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
        :param overrides: the campaign's own keys (``max_formula_units``, ``targets``, ``rounds``,
            ``stop_without_new_sun``) and, under a stage's name
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
        builder.rounds = orm.Int(inputs['rounds'])
        builder.stop_without_new_sun = orm.Bool(inputs['stop_without_new_sun'])
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

    @classmethod
    def get_builder_extension(cls, campaign: orm.ProcessNode, rounds: int):
        """A builder that continues the finished ``campaign`` for ``rounds`` more rounds from its last training set,
        model and hull, with its inputs otherwise; its predicted structures go to the same group.

        :raises ValueError: when ``campaign`` is not a campaign, did not finish successfully, or ``rounds`` < 1.
        """
        if campaign.process_type != cls.build_process_type():
            raise ValueError(f'process <{campaign.pk}> is a {campaign.process_label}, not a campaign')
        if not campaign.is_finished_ok:
            state = f'exit status {campaign.exit_status}' if campaign.is_finished else campaign.process_state.value
            raise ValueError(
                f'campaign <{campaign.pk}> did not finish successfully ({state}): only a finished campaign is extended'
            )
        if rounds < 1:
            raise ValueError(f'the number of rounds must be at least 1, got {rounds}')
        outputs = campaign.outputs
        if 'next_dataset' not in outputs:
            raise ValueError(f'campaign <{campaign.pk}> predates discovery rounds: it has no `next_dataset` to extend')
        inputs = campaign.base.links.get_incoming(link_type=LinkType.INPUT_WORK).nested()
        for name in ('structures', 'references', 'previous'):
            inputs.pop(name, None)
        if 'targets' not in inputs:
            targets = generation_targets(
                list(outputs.seeds.values()),
                inputs['max_formula_units'].value,
                int(outputs.model.base.attributes.get('n_max')),
            )
            inputs['targets'] = orm.List(targets)
        builder = cls.get_builder()
        builder._merge(inputs)  # leaf by leaf: `_update` would check each stage's sub-dictionary as a whole
        for (stage, calculation), options in earlier_scheduler_options(campaign).items():
            builder[stage][calculation].metadata.options = options
        builder.rounds = orm.Int(rounds)
        builder.group_label = orm.Str(campaign.base.extras.get('crystalgan_group'))
        builder.previous = {
            'dataset': outputs.next_dataset,
            'model': outputs.model,
            'hull_structures': dict(outputs.hull_phases.structures),
            'hull_results': dict(outputs.hull_phases.results),
            'last_round': orm.Int(max(int(name.removeprefix('round_')) for name in outputs[ROUNDS_NAMESPACE])),
        }
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
        nodes = relaxation_nodes(relaxation.relaxed_structures, relaxation.results)
        relaxed = relaxed_datasets(relaxation.summary, orm.Str('relaxed seeds and references'), **nodes)
        datasets = {f'{role}_relaxed': dataset for role, dataset in relaxed.items()}
        quench = self.ctx.quench.outputs
        datasets.update({f'{role}_quench': quench[role] for role in ('labelled', 'minima') if role in quench})
        dataset = merge_training_data(self.ctx.sampling.outputs.snapshots, **datasets)
        self.ctx.dataset = dataset
        self.report(
            f'training set of {dataset.size} structures: {dataset.num_minima} distinct local minima '
            f'(`{MINIMUM}`) and {dataset.num_labelled} MD snapshots and relaxed structures (`{LABELLED}`)'
        )
        if dataset.num_minima == 0:
            self.out('dataset', dataset)
            return self.exit_codes.ERROR_NO_MINIMA
        return None

    def setup_rounds(self) -> None:
        """The first round trains from scratch on the training set; the hull is that of the relaxed seeds and
        references."""
        relaxation = self.ctx.references.outputs
        self._start_rounds(
            first=1,
            model=None,
            hull_structures={key: relaxation.relaxed_structures[key] for key in self.ctx.hull_phases},
            hull_results={key: relaxation.results[key] for key in self.ctx.hull_phases},
            targets=self.inputs.targets.get_list() if 'targets' in self.inputs else None,
        )

    def continues_a_campaign(self) -> bool:
        return bool(self.inputs.get('previous'))

    def continue_previous(self) -> None:
        """Continue an earlier campaign from its last training set, model and hull."""
        previous = self.inputs.previous
        self.ctx.dataset = previous.dataset
        self._start_rounds(
            first=previous.last_round.value + 1,
            model=previous.model,
            hull_structures=dict(previous.hull_structures),
            hull_results=dict(previous.hull_results),
            targets=self.inputs.targets.get_list(),
        )
        self.report(
            f'continuing after round {previous.last_round.value}: training set of {previous.dataset.size} '
            f'structures, model at step {previous.model.step}, {len(previous.hull_structures)} phases on the hull'
        )

    def _start_rounds(
        self,
        first: int,
        model: GanModelData | None,
        hull_structures: dict[str, orm.StructureData],
        hull_results: dict[str, orm.ArrayData],
        targets: list[dict] | None,
    ) -> None:
        self.ctx.round = first
        self.ctx.last_round = first + self.inputs.rounds.value - 1
        self.ctx.model = model
        self.ctx.hull_structures, self.ctx.hull_results = hull_structures, hull_results
        self.ctx.targets = targets
        self.ctx.stop = False
        self.ctx.last = None  # the top-level outputs of the last round that validated candidates

    def should_run_round(self) -> bool:
        return not self.ctx.stop and self.ctx.round <= self.ctx.last_round

    def _round_output(self, name: str, value: orm.Data | dict[str, orm.Data]) -> None:
        """Output ``rounds.round_<number>.<name>`` of the current round (a node, or a namespace of them)."""
        label = f'{ROUNDS_NAMESPACE}.round_{self.ctx.round}.{name}'
        for key, node in value.items() if isinstance(value, dict) else [(None, value)]:
            self.out(label if key is None else f'{label}.{key}', node)

    def _submit_round_stage(self, process_class: type, name: str, inputs: AttributeDict):
        """Submit a stage of the current round, its call link labelled ``round_<number>_<name>`` (the cost ledger
        attributes its calculations to the round by it)."""
        inputs['metadata'] = {**dict(inputs.get('metadata', {})), 'call_link_label': f'round_{self.ctx.round}_{name}'}
        return self.submit(process_class, **inputs)

    def run_training(self):
        """Train the GAN (resuming across wall-clock limits); after the first round, from the previous round's model
        on the enlarged training set."""
        self._stage('training')
        self.node.base.extras.set('crystalgan_round', self.ctx.round)
        self._round_output('dataset', self.ctx.dataset)
        inputs = self._stage_inputs('training')
        train = inputs['train']
        train['dataset'] = self.ctx.dataset
        if self.ctx.model is not None:
            train['parent_model'] = self.ctx.model
            train['parameters'] = orm.Dict(continued_training(train['parameters'].get_dict(), self.ctx.model))
        node = self._submit_round_stage(TrainingWorkChain, 'training', inputs)
        self.report(f'round {self.ctx.round}: training <{node.pk}> on {self.ctx.dataset.size} structures')
        return ToContext(training=node)

    def run_generation(self):
        """Generate for every compound composition of the seeds, then validate the survivors on the current hull."""
        if not self.ctx.training.is_finished_ok:
            self._expose_last_round()
            return self.exit_codes.ERROR_TRAINING_FAILED
        self._stage('generation')
        model = self.ctx.model = self.ctx.training.outputs.model
        self._round_output('model', model)
        if self.ctx.targets is None:
            self.ctx.targets = generation_targets(
                list(self.ctx.seeds.outputs.structures.values()),
                self.inputs.max_formula_units.value,
                int(model.base.attributes.get('n_max')),
            )
        if not self.ctx.targets:
            return self.exit_codes.ERROR_NO_TARGETS
        largest_minimum = int(max(self.ctx.dataset.get_num_atoms()[self.ctx.dataset.get_roles() == MINIMUM], default=0))
        beyond = targets_beyond_minima(self.ctx.targets, largest_minimum)
        if beyond:
            self.report(
                f'round {self.ctx.round}: targets {", ".join(beyond)} have more atoms than every minimum of the '
                f'training set (at most {largest_minimum}): the generator extrapolates in cell size there'
            )
        inputs = self._stage_inputs(
            'generation',
            training_dataset=self.ctx.dataset,
            stability=self.inputs.stability.parameters,
            reference_structures=self.ctx.hull_structures,
            reference_results=self.ctx.hull_results,
            engine=dict(self.inputs.engine),
        )
        generate = inputs['generate']
        generate['model'] = model
        parameters = generate['parameters'].get_dict()
        # fresh noise each round: the same draws from a model that changed little would give last round's candidates,
        # which are in the training set now and are dropped as known
        parameters['seed'] = round_seed(parameters.get('seed', 0), self.ctx.round)
        generate['parameters'] = orm.Dict({**parameters, 'targets': self.ctx.targets})
        return ToContext(generation=self._submit_round_stage(GenerationWorkChain, 'generation', inputs))

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

    def _group_label(self) -> str:
        if 'group_label' in self.inputs:
            return self.inputs.group_label.value
        return f'crystalgan/{self.inputs.system.value}/{self.node.pk}'

    def _file_structures(self, generation: orm.WorkflowNode) -> dict[str, dict[str, orm.StructureData]]:
        """Predicted structures into the campaign's group, rejected ones into ``<group>/rejected``, each with its
        campaign, system and round as extras; returns them by namespace."""
        label = self._group_label()
        self.node.base.extras.set('crystalgan_group', label)
        grouped = {}
        for namespace, group_label in (('predicted', label), ('rejected', f'{label}/rejected')):
            structures = dict(generation.outputs[namespace]) if namespace in generation.outputs else {}
            group, _ = orm.Group.collection.get_or_create(group_label)
            group.add_nodes(list(structures.values()))
            for structure in structures.values():
                structure.base.extras.set_many(
                    {
                        'crystalgan_campaign': self.node.uuid,
                        'crystalgan_system': self.inputs.system.value,
                        'crystalgan_round': self.ctx.round,
                    }
                )
            if structures:
                self._round_output(namespace, structures)
            grouped[namespace] = structures
        return grouped

    def inspect_round(self):
        """Expose the round's results, feed its validated candidates back into the training set (a calcfunction) and
        its predicted structures into the hull, and stop when it found no new S.U.N. structure."""
        node, number = self.ctx.generation, self.ctx.round
        if not node.is_finished_ok:
            self._expose_last_round()
            return self.exit_codes.ERROR_GENERATION_FAILED
        for name in ('candidates', 'metrics'):
            self._round_output(name, node.outputs[name])
        if 'evaluation' not in node.outputs:
            self._expose_last_round()
            return self.exit_codes.ERROR_NO_VALID_CANDIDATES.format(round=number)
        self._round_output('evaluation', node.outputs.evaluation)
        grouped = self._file_structures(node)
        nodes = evaluated_nodes(node.outputs.evaluation)
        feedback = feed_back_candidates(
            self.ctx.dataset,
            node.outputs.evaluation,
            orm.Int(number),
            **nodes,
            **cheap_pass_nodes(node),
            metadata={'call_link_label': f'round_{number}_feedback'},
        )
        summary = feedback['summary']
        self._round_output('next_dataset', feedback['dataset'])
        self._round_output('summary', summary)
        for key in grouped['predicted']:
            self.ctx.hull_structures[f'round{number}_{key}'] = nodes[f'structure_{key}']
            self.ctx.hull_results[f'round{number}_{key}'] = nodes[f'results_{key}']
        self.ctx.last = {
            'dataset': self.ctx.dataset,
            'model': self.ctx.model,
            'next_dataset': feedback['dataset'],
            'candidates': node.outputs.candidates,
            'metrics': node.outputs.metrics,
            'evaluation': node.outputs.evaluation,
            'hull': node.outputs.hull,
            'hull_phases': {'structures': dict(self.ctx.hull_structures), 'results': dict(self.ctx.hull_results)},
            **{namespace: structures for namespace, structures in grouped.items() if structures},
        }
        self.ctx.dataset = feedback['dataset']
        self.report(
            f'round {number}: {summary["validated"]} candidates validated, {len(grouped["predicted"])} predicted, '
            f'{summary["n_new_sun"]} new S.U.N. structures; next training set {feedback["dataset"].size} structures '
            f'({summary["minima_added"]} new minima)'
        )
        self.ctx.round += 1
        if summary['n_new_sun'] == 0 and self.inputs.stop_without_new_sun.value and number < self.ctx.last_round:
            self.ctx.stop = True
            self.report(
                f'stopping after round {number} of {self.ctx.last_round}: it found no new S.U.N. structure (stable '
                'within the E_hull window, unique, novel with respect to the training set and the earlier rounds)'
            )
        return None

    def _expose_last_round(self) -> None:
        """The top-level outputs: those of the last round that validated candidates (none before one did)."""
        for name, value in (self.ctx.get('last') or {}).items():
            self.out(name, value)

    def results(self):
        """Expose the last round's results at the top level (every round's are under ``rounds``)."""
        self._expose_last_round()
        phases = ', '.join(
            f'{phase["formula"]} ({phase["name"].removeprefix(REFERENCE_PREFIX)})'
            for phase in self.ctx.last['hull']['phases']
        )
        self.report(f'convex hull of the last round: {phases}')
        self._stage('finished')
        label = self._group_label()
        predicted = len(self.ctx.last.get('predicted', {}))
        rejected = len(self.ctx.last.get('rejected', {}))
        self.report(
            f'last round {self.ctx.round - 1}: {predicted} predicted structures in group `{label}`, '
            f'{rejected} rejected in `{label}/rejected`'
        )
        return None
