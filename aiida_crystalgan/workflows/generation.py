"""``crystalgan.generation``: a screening funnel from many generated candidates to a few trusted predictions.

generate + fast filters + fingerprint dedupe + physics-head energies (one CalcJob) → rank on the engine's hull within
each composition and post-process best first, the compositions in turn (``cheap_pass.size`` selected) → cheap engine
pass → the ``max_validations`` lowest in energy above the hull → relax, forces, phonons → evaluation. Predicted: local
minima within ``e_hull_window`` of the hull; the others are ``rejected`` with a reason. With ``random_control``,
PyXtal random structures of the same compositions go through the same funnel with the same engine budget, and the
metrics give the GAN's lift over random search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_

from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.data.dataset import MINIMUM, CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import (
    expose_engine_inputs,
    limit_engine_jobs,
    submit_engine,
    validate_operation_parameters,
)
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.stability import StabilityWorkChain

#: The generative arm and the random-search control arm.
GAN, RANDOM = 'gan', 'random'
#: The selection post-processes at most this many candidates per candidate it should select: it bounds the daemon's
#: work when the best-ranked candidates are mostly duplicates (a collapsed generator) or invalid.
EXAMINED_PER_SELECTED = 4
#: Largest difference (eV/atom) between a candidate's and a known phase's relaxed energies for a rediscovery.
REDISCOVERY_TOLERANCE = 0.01


def _phase_diagram(nodes: Mapping[str, orm.Data]):
    """The hull of the ``reference_structure_<key>`` / ``reference_results_<key>`` nodes (total energies, eV)."""
    from aiida_crystalgan.analysis.hull import build_phase_diagram, named_entry

    return build_phase_diagram(
        [
            named_entry(key, structure.get_pymatgen(), nodes[f'reference_results_{key}'].base.attributes.get('energy'))
            for key, structure in _pairs(nodes, 'reference_structure_')
        ]
    )


def _pairs(nodes: Mapping[str, orm.Data], prefix: str):
    for name, node in nodes.items():
        if name.startswith(prefix):
            yield name.removeprefix(prefix), node


@calcfunction
def select_candidates(
    candidates: CrystalDatasetData,
    ranking: orm.ArrayData,
    screening: orm.Dict,
    training: CrystalDatasetData,
    options: orm.Dict,
    count: orm.Int,
    **references: orm.Data,
) -> dict[str, orm.Data]:
    """Rank the fast filters' survivors by predicted energy above the hull within each composition and post-process
    them best first, the compositions in turn (:func:`~aiida_crystalgan.analysis.screening.even_share_order`).

    The predicted energy above the hull is the physics head's energy per atom minus the hull energy per atom of the
    reference phases (``reference_structure_<key>`` / ``reference_results_<key>``, same engine as the training data)
    at the candidate's composition. Returns ``report`` (counts, the examined candidates' reports, the predicted
    E_hull of each selected one) and one ``c<index>`` structure per selected candidate, at most ``count``, from at
    most :data:`EXAMINED_PER_SELECTED` times ``count`` post-processed candidates. A candidate that matches a
    ``minimum`` of ``training`` is dropped as known.
    """
    from pymatgen.core import Composition

    from aiida_crystalgan.analysis.postprocess import PostprocessOptions
    from aiida_crystalgan.analysis.screening import even_share_order, predicted_energy_above_hull, select_ranked
    from aiida_crystalgan.analysis.validity import ValidityCriteria

    settings = options.get_dict()
    criteria = ValidityCriteria(**settings.pop('validity', {}))
    labels = list(screening['per_composition'])
    indices = ranking.get_array('indices')
    formulas = [Composition(labels[position]).reduced_formula for position in ranking.get_array('compositions')]
    e_hull = predicted_energy_above_hull(
        _phase_diagram(references), formulas, ranking.get_array('predicted_energy_per_atom')
    )
    order = even_share_order(formulas, e_hull)
    predicted = {int(indices[position]): float(e_hull[position]) for position in order}
    selection = select_ranked(
        candidates.get_structure,
        [int(indices[position]) for position in order],
        count.value,
        training=[record.to_pymatgen() for record in training.records(role=MINIMUM)],
        options=PostprocessOptions(validity=criteria, **settings),
        max_examined=EXAMINED_PER_SELECTED * count.value,
    )
    outputs: dict[str, orm.Data] = {}
    reports = {report.index: report for report in selection.reports}
    for index, structure in selection.structures.items():
        node = orm.StructureData(pymatgen=structure)
        node.base.extras.set_many(
            {
                'spacegroup': reports[index].spacegroup_symbol,
                'candidate_index': index,
                'predicted_e_above_hull': predicted[index],
            }
        )
        outputs[f'c{index}'] = node
    report = selection.to_dict()
    report['predicted_e_above_hull'] = {f'c{index}': predicted[index] for index in selection.structures}
    outputs['report'] = orm.Dict(report)
    return outputs


@calcfunction
def rank_cheap_pass(count: orm.Int, **nodes: orm.Data) -> orm.Dict:
    """Energy above the hull (eV/atom) after the cheap engine pass, and the ``count`` lowest to validate in full.

    ``nodes``: ``reference_structure_<key>`` / ``reference_results_<key>`` and ``structure_<key>`` / ``results_<key>``
    of the candidates. A candidate that the cheap pass brought to the same structure as one lower in energy
    (``StructureMatcher``, same reduced formula) is not selected (``duplicate_of``: its key → the kept one's), so the
    full validations go to distinct structures. ``known_phases`` counts the compound reference phases (those a
    candidate can rediscover).
    """
    from aiida_crystalgan.analysis.hull import energy_above_hull
    from aiida_crystalgan.analysis.matching import first_distinct

    diagram = _phase_diagram(nodes)
    structures = {key: structure.get_pymatgen() for key, structure in _pairs(nodes, 'structure_')}
    e_hull = {
        key: energy_above_hull(diagram, structure.composition, nodes[f'results_{key}'].base.attributes.get('energy'))
        for key, structure in structures.items()
    }
    order = sorted(e_hull, key=lambda key: (e_hull[key], key))
    kept, duplicates = first_distinct([structures[key] for key in order], count.value)
    selected = [order[index] for index in kept]
    duplicate_of = {order[index]: order[match] for index, match in duplicates.items()}
    known = sum(len(structure.get_kind_names()) > 1 for _, structure in _pairs(nodes, 'reference_structure_'))
    return orm.Dict({'e_above_hull': e_hull, 'selected': selected, 'duplicate_of': duplicate_of, 'known_phases': known})


@calcfunction
def evaluate_candidates(
    stability: orm.Dict, training: CrystalDatasetData, e_hull_window: orm.Float, **nodes: orm.Data
) -> dict[str, orm.Dict]:
    """Energy above the convex hull (eV/atom), space group, novelty, rediscovery and verdict of each relaxed candidate.

    ``nodes`` holds ``reference_structure_<key>`` / ``reference_results_<key>`` (the relaxed reference phases, same
    engine) and ``structure_<key>`` / ``results_<key>`` (the relaxed candidates). A candidate ``passes`` when it is
    a local minimum at most ``e_hull_window`` eV/atom above the hull; otherwise ``rejection_reason`` says why. It
    ``is_novel`` when it matches no ``minimum`` of ``training`` (labelled structures, such as MD frames and relaxation
    steps, are not the model's real data and do not count). It ``rediscovered`` a known phase (the reference's key)
    when it matches that relaxed reference and their energies differ by at most :data:`REDISCOVERY_TOLERANCE` eV/atom.
    A candidate more than ``BELOW_HULL_TOLERANCE`` below the hull of the references is flagged
    ``possible_new_ground_state``: either a discovery or a reference set that misses a known phase, for a scientist
    to check. Returns ``evaluation`` (per candidate) and ``hull`` (``phases``: the
    references on the hull).
    """
    from aiida_crystalgan.analysis.hull import BELOW_HULL_TOLERANCE, energy_above_hull, hull_phases
    from aiida_crystalgan.analysis.matching import make_matcher, reference_matches
    from aiida_crystalgan.analysis.postprocess import space_group

    def relaxed(prefix: str):
        for key, structure in _pairs(nodes, f'{prefix}structure_'):
            results = nodes[f'{prefix}results_{key}']
            yield key, structure.get_pymatgen(), results.base.attributes.get('energy')

    diagram = _phase_diagram(nodes)
    known = list(relaxed('reference_'))
    candidates = list(relaxed(''))
    matcher = make_matcher()
    structures = [structure for _, structure, _ in candidates]
    novel = reference_matches(structures, [record.to_pymatgen() for record in training.records(role=MINIMUM)], matcher)
    phases = reference_matches(structures, [structure for _, structure, _ in known], matcher)
    verdicts = stability.get_dict()
    window = e_hull_window.value
    evaluation = {}
    for (key, structure, energy), training_match, phase in zip(candidates, novel, phases):
        spacegroup = space_group(structure)[1]
        e_hull = energy_above_hull(diagram, structure.composition, energy)
        rediscovered = None
        if phase is not None:
            phase_key, phase_structure, phase_energy = known[phase]
            if abs(energy / len(structure) - phase_energy / len(phase_structure)) <= REDISCOVERY_TOLERANCE:
                rediscovered = phase_key
        verdict = verdicts[key]
        if not verdict['is_local_minimum']:
            reason = 'not a local minimum: ' + (
                'forces above tolerance'
                if not verdict['forces_below_tolerance']
                else 'imaginary phonon modes or no phonon verdict'
            )
        elif e_hull > window:
            reason = f'{e_hull:.3f} eV/atom above the hull, outside the {window} eV/atom window'
        else:
            reason = None
        evaluation[key] = {
            **verdict,
            'formula': structure.composition.reduced_formula,
            'spacegroup': spacegroup,
            'num_atoms': len(structure),
            'e_above_hull': e_hull,
            'possible_new_ground_state': e_hull < -BELOW_HULL_TOLERANCE,
            'is_novel': training_match is None,
            'rediscovered': rediscovered,
            'passes': reason is None,
            'rejection_reason': reason,
        }
    return {'evaluation': orm.Dict(evaluation), 'hull': orm.Dict({'phases': hull_phases(diagram)})}


@calcfunction
def funnel_metrics(**nodes: orm.Data) -> orm.Dict:
    """Metrics of each arm (``screening_<arm>``, ``selection_<arm>`` and, when it got that far, ``cheap_pass_<arm>``
    and ``evaluation_<arm>``), and with both arms the lift of the GAN over random search (ratio of S.U.N. rates).
    """
    from aiida_crystalgan.analysis.metrics import funnel_metrics as compute

    metrics: dict[str, Any] = {}
    for arm in (GAN, RANDOM):
        if f'screening_{arm}' not in nodes:
            continue
        cheap = nodes[f'cheap_pass_{arm}'].get_dict() if f'cheap_pass_{arm}' in nodes else {}
        evaluation = nodes[f'evaluation_{arm}'].get_dict() if f'evaluation_{arm}' in nodes else {}
        metrics[arm] = compute(
            nodes[f'screening_{arm}'].get_dict(),
            nodes[f'selection_{arm}'].get_dict(),
            evaluation,
            num_cheap_pass=len(cheap.get('e_above_hull', {})),
            num_references=cheap.get('known_phases'),
        )
    if RANDOM in metrics:
        gan, random = metrics[GAN]['sun_rate_per_relaxation'], metrics[RANDOM]['sun_rate_per_relaxation']
        metrics['sun_rate_lift'] = gan / random if gan is not None and random else None
    return orm.Dict(metrics)


def validate_cheap_pass(value: orm.Dict, _) -> str | None:
    """``size`` positive; ``operation`` `relax` or `forces` with valid engine ``parameters``."""
    cheap = value.get_dict()
    unknown = set(cheap) - {'size', 'operation', 'parameters'}
    if unknown:
        return f'cheap_pass: unknown keys {sorted(unknown)}; give `size`, `operation`, `parameters`'
    size = cheap.get('size')
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return f'cheap_pass.size must be a positive integer, got {size!r}'
    if cheap.get('operation') not in ('relax', 'forces'):
        return f'cheap_pass.operation must be `relax` or `forces`, got {cheap.get("operation")!r}'
    return validate_operation_parameters(cheap['operation'], cheap.get('parameters', {}))


def arm_share(max_jobs: int | None, arms: int) -> int | None:
    """The engine jobs that each of ``arms`` arms run side by side may keep in flight: at least one."""
    return None if max_jobs is None else max(1, max_jobs // arms)


def validation_budget(max_jobs: int | None, arms: int, phonons: int | None) -> tuple[int | None, int | None]:
    """Share ``max_jobs`` engine jobs among the validations of ``arms`` arms run side by side.

    Returns ``(phonon workchains at a time, jobs in flight per engine call)`` for each arm's stability run: its
    phonon workchains each make one engine call, so their number times the jobs per call stays within the arm's
    share (``phonons``: the stability protocol's own limit).
    """
    share = arm_share(max_jobs, arms)
    if share is None:
        return phonons, None
    phonons = min(phonons or share, share)
    return phonons, max(1, share // phonons)


class GenerationWorkChain(ProtocolMixin, WorkChain):
    """Generate and screen candidates, rank them, a cheap engine pass, then relax, forces and phonons on the best."""

    _protocol_file = 'generation.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GenerateCalculation, namespace='generate')
        spec.input(
            'training_dataset',
            valid_type=CrystalDatasetData,
            help="The model's training set: candidates that match one of its minima are not new (its labelled "
            'structures, such as MD frames and relaxation steps, do not count).',
        )
        spec.input(
            'postprocess',
            valid_type=orm.Dict,
            help='Post-processing options (`aiida_crystalgan.analysis.postprocess.PostprocessOptions`).',
        )
        spec.input(
            'cheap_pass',
            valid_type=orm.Dict,
            validator=validate_cheap_pass,
            help='`size` (M best-ranked candidates), `operation` (`relax` or `forces`) and its engine '
            '`parameters` (a short relaxation: few `max_steps`).',
        )
        spec.input(
            'max_validations',
            valid_type=orm.Int,
            help='K: the candidates lowest in E_hull after the cheap pass that are relaxed and checked in full.',
        )
        spec.input(
            'e_hull_window',
            valid_type=orm.Float,
            help='eV/atom: a local minimum at most this far above the hull is predicted, others are rejected.',
        )
        spec.input(
            'random_control',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help='Also send PyXtal random structures of the same compositions through the same funnel and '
            "engine budget, and report the GAN's lift over random search.",
        )
        spec.input(
            'max_concurrent_jobs',
            valid_type=orm.Int,
            required=False,
            help='Engine jobs in flight at a time in the cheap pass and the validation, all arms together (at least '
            'one per arm): the VASP engine runs that many VASP jobs, the MLIP engine one job per call. No limit '
            'when absent.',
        )
        spec.input('stability', valid_type=orm.Dict, help='Parameters of `crystalgan.stability`.')
        spec.input_namespace(
            'reference_structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='Relaxed reference phases (every element included) for the convex hull.',
        )
        spec.input_namespace(
            'reference_results',
            valid_type=orm.ArrayData,
            dynamic=True,
            help='Engine results (energies) of the reference phases, same keys, same engine.',
        )
        expose_engine_inputs(spec)
        spec.inputs.validator = cls.validate_inputs
        spec.outline(
            cls.generate,
            cls.select,
            if_(cls.has_candidates)(
                cls.run_cheap_pass,
                cls.rank_cheap_pass,
                cls.validate_candidates,
                cls.evaluate,
            ),
            cls.results,
        )
        spec.output('candidates', valid_type=CrystalDatasetData, help='Every generated structure.')
        spec.output('screening', valid_type=orm.Dict, help='How many candidates each fast filter dropped.')
        spec.output(
            'postprocess_report',
            valid_type=orm.Dict,
            help='The best-ranked candidates that were post-processed: why each was selected or dropped.',
        )
        spec.output_namespace(
            'predicted',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Relaxed local minima within the E_hull window, with their evaluation as extras.',
        )
        spec.output_namespace(
            'rejected',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Relaxed candidates that did not pass, with `crystalgan_rejection_reason`.',
        )
        spec.output(
            'evaluation',
            valid_type=orm.Dict,
            required=False,
            help='Per validated structure: energy above hull, forces, phonons, novelty, verdict.',
        )
        spec.output(
            'hull',
            valid_type=orm.Dict,
            required=False,
            help='`phases`: the reference phases on the convex hull (name, formula, energies per atom).',
        )
        spec.output(
            'metrics',
            valid_type=orm.Dict,
            help='Per arm (`gan`, `random`): validity, uniqueness, novelty, S.U.N. rate per relaxation, '
            'phonon-stable fraction, rediscovered phases and stage counts; `sun_rate_lift`.',
        )
        spec.exit_code(650, 'ERROR_GENERATION_FAILED', message='The generation calculation failed.')
        spec.exit_code(651, 'ERROR_VALIDATION_FAILED', message='The validation of the candidates failed.')
        spec.exit_code(652, 'ERROR_CHEAP_PASS_FAILED', message='The cheap engine pass on the candidates failed.')
        spec.exit_code(653, 'ERROR_RANDOM_CONTROL_FAILED', message='The random-search control arm failed: {message}')

    @classmethod
    def get_child_protocols(cls) -> dict[str, type[ProtocolMixin]]:
        """``stability`` is ``StabilityWorkChain``'s own protocol of the same name."""
        return {'stability': StabilityWorkChain}

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        engine: dict[str, Any],
        targets: list[dict[str, Any]] | None = None,
        model: GanModelData | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """A builder that samples ``model`` for ``targets`` and screens and validates the candidates.

        The training set and the reference phases of the hull are the caller's: ``training_dataset``,
        ``reference_structures`` and ``reference_results``; without ``targets`` here, add them to
        ``generate.parameters`` before submitting.

        :param engine: the ``engine`` inputs (``code``, and optionally ``name``, ``protocol``, ``settings``...).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.generate.code = code
        if model is not None:
            builder.generate.model = model
        parameters = {
            'num_per_target': inputs['num_per_target'],
            'seed': inputs['seed'],
            'screening': inputs['screening'],
        }
        if targets is not None:
            parameters['targets'] = targets
        builder.generate.parameters = orm.Dict(parameters)
        builder.postprocess = orm.Dict(inputs['postprocess'])
        builder.cheap_pass = orm.Dict(inputs['cheap_pass'])
        builder.max_validations = orm.Int(inputs['max_validations'])
        builder.e_hull_window = orm.Float(inputs['e_hull_window'])
        builder.random_control = orm.Bool(inputs['random_control'])
        builder.stability = orm.Dict(inputs['stability'])
        if inputs['max_concurrent_jobs'] is not None:
            builder.max_concurrent_jobs = orm.Int(inputs['max_concurrent_jobs'])
        builder.engine = engine
        return builder

    @staticmethod
    def validate_inputs(inputs, _) -> str | None:
        """Reference results pair with reference structures; K is positive and at most M."""
        structures, results = inputs.get('reference_structures', {}), inputs.get('reference_results', {})
        if set(structures) != set(results):
            return '`reference_structures` and `reference_results` must have the same keys'
        if not structures:
            return 'give reference phases (with every element) for the convex hull'
        validations = inputs['max_validations'].value
        if not 0 < validations <= inputs['cheap_pass'].get_dict().get('size', 0):
            return f'max_validations ({validations}) must be positive and at most cheap_pass.size'
        arms = 2 if inputs['random_control'].value else 1
        if 'max_concurrent_jobs' in inputs and inputs['max_concurrent_jobs'].value < arms:
            return f'max_concurrent_jobs ({inputs["max_concurrent_jobs"].value}) must be at least one per arm ({arms})'
        return None

    def _references(self) -> dict[str, orm.Data]:
        nodes = {}
        for key, structure in self.inputs.reference_structures.items():
            nodes[f'reference_structure_{key}'] = structure
            nodes[f'reference_results_{key}'] = self.inputs.reference_results[key]
        return nodes

    def generate(self):
        """Sample the model (and, with the random control, PyXtal) and screen the candidates, in CalcJobs."""
        inputs = self.exposed_inputs(GenerateCalculation, 'generate')
        self.ctx.arms = [GAN, RANDOM] if self.inputs.random_control.value else [GAN]
        calls = {}
        for arm in self.ctx.arms:
            parameters = orm.Dict({**inputs['parameters'].get_dict(), 'source': arm})
            calls[f'generate_{arm}'] = self.submit(GenerateCalculation, **{**inputs, 'parameters': parameters})
        self.report(f'generating candidates: {", ".join(f"{arm}<{node.pk}>" for arm, node in calls.items())}')
        return ToContext(**calls)

    def select(self):
        """Rank every arm's survivors on the hull and post-process the best until ``cheap_pass.size`` are selected."""
        for arm in self.ctx.arms:
            node = self.ctx[f'generate_{arm}']
            if not node.is_finished_ok:
                if arm == GAN:
                    return self.exit_codes.ERROR_GENERATION_FAILED
                return self.exit_codes.ERROR_RANDOM_CONTROL_FAILED.format(message=node.exit_message or '')
        self.ctx.selected, self.ctx.reports = {}, {}
        for arm in self.ctx.arms:
            node = self.ctx[f'generate_{arm}']
            outputs = select_candidates(
                node.outputs.candidates,
                node.outputs.ranking,
                node.outputs.screening,
                self.inputs.training_dataset,
                self.inputs.postprocess,
                orm.Int(self.inputs.cheap_pass['size']),
                **self._references(),
            )
            self.ctx.reports[arm] = outputs.pop('report')
            self.ctx.selected[arm] = outputs
            screened = node.outputs.screening['counts']
            self.report(
                f'{arm}: {screened["generated"]} generated, {screened["ranked"]} pass the fast filters and '
                f'the fingerprint dedupe ({screened}); {len(outputs)} selected of '
                f'{self.ctx.reports[arm]["counts"]["examined"]} post-processed'
            )
        return None

    def has_candidates(self) -> bool:
        return any(self.ctx.selected.values())

    def _arms_with_candidates(self) -> list[str]:
        return [arm for arm in self.ctx.arms if self.ctx.selected[arm]]

    def _max_jobs(self) -> int | None:
        return self.inputs.max_concurrent_jobs.value if 'max_concurrent_jobs' in self.inputs else None

    def run_cheap_pass(self):
        """One engine call per arm on its selected candidates: a short relaxation or a single point."""
        cheap = self.inputs.cheap_pass
        arms = self._arms_with_candidates()
        per_call = arm_share(self._max_jobs(), len(arms))
        calls = {
            f'cheap_{arm}': submit_engine(
                self, cheap['operation'], self.ctx.selected[arm], cheap['parameters'], max_jobs=per_call
            )
            for arm in arms
        }
        return ToContext(**calls)

    def rank_cheap_pass(self):
        """Energy above the hull after the cheap pass, through a calcfunction; the lowest K go on."""
        self.ctx.cheap, self.ctx.to_validate = {}, {}
        for arm in self._arms_with_candidates():
            node = self.ctx[f'cheap_{arm}']
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_CHEAP_PASS_FAILED
            structures = (
                dict(node.outputs.relaxed_structures)
                if 'relaxed_structures' in node.outputs
                else self.ctx.selected[arm]
            )
            nodes = {
                **self._references(),
                **{f'structure_{key}': s for key, s in structures.items()},
                **{f'results_{key}': r for key, r in node.outputs.results.items()},
            }
            ranked = rank_cheap_pass(
                self.inputs.max_validations, **nodes, metadata={'call_link_label': f'rank_cheap_pass_{arm}'}
            )
            self.ctx.cheap[arm] = ranked
            if ranked['duplicate_of']:
                self.report(f'{arm}: {len(ranked["duplicate_of"])} cheap-pass duplicates of lower candidates skipped')
            self.ctx.to_validate[arm] = {key: structures[key] for key in ranked['selected']}
        return None

    def validate_candidates(self):
        """Relax and check each arm's K candidates with the engine, within ``max_concurrent_jobs`` jobs in flight."""
        stability = self.inputs.stability.get_dict()
        phonons, per_call = validation_budget(
            self._max_jobs(), len(self.ctx.to_validate), stability['max_concurrent_phonons']
        )
        parameters = self.inputs.stability
        if phonons != stability['max_concurrent_phonons']:
            parameters = orm.Dict({**stability, 'max_concurrent_phonons': phonons})
        calls = {}
        for arm, structures in self.ctx.to_validate.items():
            engine = limit_engine_jobs(self.inputs.engine, per_call)
            inputs = {'structures': structures, 'parameters': parameters, 'engine': engine}
            calls[f'validation_{arm}'] = self.submit(StabilityWorkChain, **inputs)
        return ToContext(**calls)

    def evaluate(self):
        """Energy above hull, novelty, rediscovery and verdict through a calcfunction; extras on the structures."""
        self.ctx.evaluation, self.ctx.relaxed = {}, {}
        for arm in self.ctx.to_validate:
            node = self.ctx[f'validation_{arm}']
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_VALIDATION_FAILED
            relaxed = dict(node.outputs.relaxed_structures)
            nodes = self._references()
            for key, structure in relaxed.items():
                nodes[f'structure_{key}'] = structure
                nodes[f'results_{key}'] = node.outputs.results[key]
            outputs = evaluate_candidates(
                node.outputs.summary, self.inputs.training_dataset, self.inputs.e_hull_window, **nodes
            )
            evaluation = outputs['evaluation']
            for key, values in evaluation.get_dict().items():
                relaxed[key].base.extras.set_many({f'crystalgan_{name}': value for name, value in values.items()})
            self.ctx.evaluation[arm], self.ctx.relaxed[arm], self.ctx.hull = evaluation, relaxed, outputs['hull']
            below = sorted(key for key, values in evaluation.get_dict().items() if values['possible_new_ground_state'])
            if below:
                self.report(
                    f'{arm}: candidates {below} lie below the hull of the reference phases: possible new '
                    'ground states (or a known phase missing from the references), flagged '
                    '`possible_new_ground_state`'
                )
        return None

    def results(self) -> None:
        """The metrics of every arm; the GAN arm's candidates, predicted and rejected structures and evaluation."""
        nodes = {}
        for arm in self.ctx.arms:
            nodes[f'screening_{arm}'] = self.ctx[f'generate_{arm}'].outputs.screening
            nodes[f'selection_{arm}'] = self.ctx.reports[arm]
            if arm in self.ctx.get('cheap', {}):
                nodes[f'cheap_pass_{arm}'] = self.ctx.cheap[arm]
            if arm in self.ctx.get('evaluation', {}):
                nodes[f'evaluation_{arm}'] = self.ctx.evaluation[arm]
        metrics = funnel_metrics(**nodes)
        generation = self.ctx[f'generate_{GAN}']
        self.out('candidates', generation.outputs.candidates)
        self.out('screening', generation.outputs.screening)
        self.out('postprocess_report', self.ctx.reports[GAN])
        self.out('metrics', metrics)
        if GAN in self.ctx.get('evaluation', {}):
            evaluation = self.ctx.evaluation[GAN].get_dict()
            relaxed = self.ctx.relaxed[GAN]
            predicted = {key: relaxed[key] for key, row in evaluation.items() if row['passes']}
            rejected = {key: relaxed[key] for key, row in evaluation.items() if not row['passes']}
            self.out('predicted', predicted)
            self.out('rejected', rejected)
            self.out('evaluation', self.ctx.evaluation[GAN])
            self.out('hull', self.ctx.hull)
            self.report(f'{len(relaxed)} candidates validated: {len(predicted)} predicted, {len(rejected)} rejected')
        for arm in self.ctx.arms:
            self.report(f'{arm} metrics: {metrics[arm]}')
