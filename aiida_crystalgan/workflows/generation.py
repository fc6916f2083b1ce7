"""``crystalgan.generation``: generate candidates, post-process them, and validate the survivors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_

from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.engines.base import expose_engine_inputs
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.stability import StabilityWorkChain


@calcfunction
def postprocess_candidates(candidates: CrystalDatasetData, training: CrystalDatasetData, options: orm.Dict,
                           max_structures: orm.Int) -> dict[str, orm.Data]:
    """Wrap, merge close atoms, symmetrise, drop invalid and duplicate candidates, and keep at most ``max_structures``.

    Returns ``report`` (why each candidate was dropped, counts per reason) and one ``c<index>`` structure per kept
    candidate, chosen round-robin over compositions so that every target composition is validated.
    """
    from aiida_crystalgan.analysis.postprocess import PostprocessOptions, postprocess
    from aiida_crystalgan.analysis.validity import ValidityCriteria

    settings = options.get_dict()
    criteria = ValidityCriteria(**settings.pop('validity', {}))
    result = postprocess([record.to_pymatgen() for record in candidates],
                         training=[record.to_pymatgen() for record in training],
                         options=PostprocessOptions(validity=criteria, **settings))
    by_formula: dict[str, list[int]] = {}
    for position, structure in enumerate(result.structures):
        by_formula.setdefault(structure.composition.reduced_formula, []).append(position)
    chosen: list[int] = []
    while len(chosen) < min(max_structures.value, len(result.structures)):
        for positions in by_formula.values():
            if positions and len(chosen) < max_structures.value:
                chosen.append(positions.pop(0))
    outputs: dict[str, orm.Data] = {}
    for position in sorted(chosen):
        index = result.kept_indices[position]
        structure = orm.StructureData(pymatgen=result.structures[position])
        report = result.reports[index]
        structure.base.extras.set_many({'spacegroup': report.spacegroup_symbol, 'candidate_index': index})
        outputs[f'c{index}'] = structure
    summary = result.to_dict()
    summary['selected_for_validation'] = sorted(f'c{result.kept_indices[p]}' for p in chosen)
    outputs['report'] = orm.Dict(summary)
    return outputs


@calcfunction
def evaluate_candidates(stability: orm.Dict, training: CrystalDatasetData, **nodes: orm.Data) -> dict[str, orm.Dict]:
    """Energy above the convex hull (eV/atom), space group and novelty of every relaxed candidate, and the hull.

    ``nodes`` holds ``reference_structure_<key>`` / ``reference_results_<key>`` (the relaxed reference phases, same
    engine) and ``structure_<key>`` / ``results_<key>`` (the relaxed candidates). A candidate more than
    ``BELOW_HULL_TOLERANCE`` below the hull of the references is flagged ``possible_new_ground_state``: either a
    discovery or a reference set that misses a known phase, for a scientist to check. Returns ``evaluation`` (per
    candidate) and ``hull`` (``phases``: the references on the hull).
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from aiida_crystalgan.analysis.hull import (
        BELOW_HULL_TOLERANCE,
        build_phase_diagram,
        energy_above_hull,
        hull_phases,
        named_entry,
    )
    from aiida_crystalgan.analysis.matching import make_matcher, reference_matches

    def pairs(prefix: str):
        for name, structure in nodes.items():
            if name.startswith(f'{prefix}structure_'):
                key = name.removeprefix(f'{prefix}structure_')
                yield key, structure.get_pymatgen(), nodes[f'{prefix}results_{key}'].base.attributes.get('energy')

    diagram = build_phase_diagram([named_entry(key, structure, energy)
                                   for key, structure, energy in pairs('reference_')])
    candidates = list(pairs(''))
    training_structures = [record.to_pymatgen() for record in training]
    matches = reference_matches([structure for _, structure, _ in candidates], training_structures, make_matcher())
    verdicts = stability.get_dict()
    evaluation = {}
    for (key, structure, energy), match in zip(candidates, matches):
        try:
            spacegroup = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
        except Exception:  # noqa: BLE001 - spglib may fail on a badly distorted cell
            spacegroup = 'P1'
        e_above_hull = energy_above_hull(diagram, structure.composition, energy)
        evaluation[key] = {
            **verdicts[key],
            'formula': structure.composition.reduced_formula,
            'spacegroup': spacegroup,
            'num_atoms': len(structure),
            'e_above_hull': e_above_hull,
            'possible_new_ground_state': e_above_hull < -BELOW_HULL_TOLERANCE,
            'is_novel': match is None,
        }
    return {'evaluation': orm.Dict(evaluation), 'hull': orm.Dict({'phases': hull_phases(diagram)})}


class GenerationWorkChain(ProtocolMixin, WorkChain):
    """Candidates from the GAN → post-processing → relax, force and phonon checks → energy above the hull."""

    _protocol_file = 'generation.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GenerateCalculation, namespace='generate')
        spec.input('training_dataset', valid_type=CrystalDatasetData,
                   help='The model\'s training set: candidates that match one of its structures are not new.')
        spec.input('postprocess', valid_type=orm.Dict,
                   help='Post-processing options (`aiida_crystalgan.analysis.postprocess.PostprocessOptions`).')
        spec.input('max_validations', valid_type=orm.Int,
                   help='At most this many post-processed candidates are relaxed and checked.')
        spec.input('stability', valid_type=orm.Dict, help='Parameters of `crystalgan.stability`.')
        spec.input_namespace('reference_structures', valid_type=orm.StructureData, dynamic=True,
                             help='Relaxed reference phases (every element included) for the convex hull.')
        spec.input_namespace('reference_results', valid_type=orm.ArrayData, dynamic=True,
                             help='Engine results (energies) of the reference phases, same keys, same engine.')
        expose_engine_inputs(spec)
        spec.inputs.validator = cls.validate_inputs
        spec.outline(
            cls.generate,
            cls.postprocess_candidates,
            if_(cls.has_candidates)(
                cls.validate_candidates,
                cls.evaluate,
            ),
            cls.results,
        )
        spec.output('candidates', valid_type=CrystalDatasetData, help='Every generated structure.')
        spec.output('postprocess_report', valid_type=orm.Dict, help='Why each candidate was kept or dropped.')
        spec.output_namespace('predicted', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='Relaxed candidates, with their evaluation as extras.')
        spec.output('evaluation', valid_type=orm.Dict, required=False,
                    help='Per predicted structure: energy above hull, forces, phonons, novelty, space group.')
        spec.output('hull', valid_type=orm.Dict, required=False,
                    help='`phases`: the reference phases on the convex hull (name, formula, energies per atom).')
        spec.exit_code(650, 'ERROR_GENERATION_FAILED', message='The generation calculation failed.')
        spec.exit_code(651, 'ERROR_VALIDATION_FAILED', message='The validation of the candidates failed.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The protocol's keys, and those of the stability protocol under ``stability``."""
        return {**super().get_override_keys(), 'stability': StabilityWorkChain.get_override_keys()}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``generation.yaml`` with the ``stability`` of ``StabilityWorkChain``'s own protocol of the same name."""
        overrides = dict(overrides or {})
        stability = StabilityWorkChain.get_protocol_inputs(protocol, overrides.pop('stability', None))
        return {**super().get_protocol_inputs(protocol, overrides), 'stability': stability}

    @classmethod
    def get_builder_from_protocol(cls, code: orm.AbstractCode, engine: dict[str, Any],
                                  targets: list[dict[str, Any]] | None = None, model: GanModelData | None = None,
                                  protocol: str | None = None, overrides: dict[str, Any] | None = None):
        """A builder that samples ``model`` for ``targets`` and validates the survivors (``generation.yaml``).

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
        parameters = {'num_per_target': inputs['num_per_target'], 'seed': inputs['seed']}
        if targets is not None:
            parameters['targets'] = targets
        builder.generate.parameters = orm.Dict(parameters)
        builder.postprocess = orm.Dict(inputs['postprocess'])
        builder.max_validations = orm.Int(inputs['max_validations'])
        builder.stability = orm.Dict(inputs['stability'])
        builder.engine = engine
        return builder

    @staticmethod
    def validate_inputs(inputs, _) -> str | None:
        """Reference results must pair with reference structures."""
        structures, results = inputs.get('reference_structures', {}), inputs.get('reference_results', {})
        if set(structures) != set(results):
            return '`reference_structures` and `reference_results` must have the same keys'
        if not structures:
            return 'give reference phases (with every element) for the convex hull'
        return None

    def generate(self):
        """Sample the model."""
        node = self.submit(GenerateCalculation, **self.exposed_inputs(GenerateCalculation, 'generate'))
        self.report(f'generating candidates with {GenerateCalculation.__name__}<{node.pk}>')
        return ToContext(generation=node)

    def postprocess_candidates(self):
        """Clean, deduplicate and select the candidates to validate (a calcfunction: every drop is reported)."""
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED
        outputs = postprocess_candidates(node.outputs.candidates, self.inputs.training_dataset,
                                         self.inputs.postprocess, self.inputs.max_validations)
        self.ctx.report = outputs.pop('report')
        self.ctx.selected = outputs
        counts = self.ctx.report['counts']
        self.report(f'post-processing kept {counts["kept"]} of {node.outputs.candidates.size} candidates '
                    f'({counts}); validating {len(outputs)}')
        return None

    def has_candidates(self) -> bool:
        return bool(self.ctx.selected)

    def validate_candidates(self):
        """Relax and check the selected candidates with the engine."""
        inputs = {'structures': self.ctx.selected, 'parameters': self.inputs.stability,
                  'engine': dict(self.inputs.engine)}
        return ToContext(validation=self.submit(StabilityWorkChain, **inputs))

    def evaluate(self):
        """Energy above hull and novelty through a calcfunction; the verdicts become extras of the structures."""
        node = self.ctx.validation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_VALIDATION_FAILED
        nodes = {}
        for key, structure in self.inputs.reference_structures.items():
            nodes[f'reference_structure_{key}'] = structure
            nodes[f'reference_results_{key}'] = self.inputs.reference_results[key]
        relaxed = dict(node.outputs.relaxed_structures)
        for key, structure in relaxed.items():
            nodes[f'structure_{key}'] = structure
            nodes[f'results_{key}'] = node.outputs.results[key]
        outputs = evaluate_candidates(node.outputs.summary, self.inputs.training_dataset, **nodes)
        evaluation = outputs['evaluation']
        for key, values in evaluation.get_dict().items():
            relaxed[key].base.extras.set_many({f'crystalgan_{name}': value for name, value in values.items()})
        self.ctx.predicted = relaxed
        self.ctx.evaluation = evaluation
        self.ctx.hull = outputs['hull']
        below = sorted(key for key, values in evaluation.get_dict().items() if values['possible_new_ground_state'])
        if below:
            self.report(f'candidates {below} lie below the hull of the reference phases: possible new ground states '
                        '(or a known phase missing from the references), flagged `possible_new_ground_state`')
        return None

    def results(self) -> None:
        """Expose candidates, report, predicted structures and their evaluation."""
        self.out('candidates', self.ctx.generation.outputs.candidates)
        self.out('postprocess_report', self.ctx.report)
        if 'predicted' in self.ctx:
            self.out('predicted', self.ctx.predicted)
            self.out('evaluation', self.ctx.evaluation)
            self.out('hull', self.ctx.hull)
            minima = sum(v['is_local_minimum'] for v in self.ctx.evaluation.get_dict().values())
            self.report(f'{len(self.ctx.predicted)} candidates validated, {minima} are local minima')
