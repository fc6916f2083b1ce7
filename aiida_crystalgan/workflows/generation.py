"""``crystalgan.generation``: generate candidates, post-process them, and validate the survivors."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_

from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.engines.base import expose_engine_inputs
from aiida_crystalgan.workflows.functions import evaluate_candidates, postprocess_candidates
from aiida_crystalgan.workflows.stability import StabilityWorkChain


class GenerationWorkChain(WorkChain):
    """Candidates from the GAN → post-processing → relax, force and phonon checks → energy above the hull."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GenerateCalculation, namespace='generate')
        spec.input('training_dataset', valid_type=CrystalDatasetData,
                   help='The model\'s training set: candidates that match one of its structures are not new.')
        spec.input('postprocess', valid_type=orm.Dict, default=lambda: orm.Dict({}),
                   help='Post-processing options (`aiida_crystalgan.analysis.postprocess.PostprocessOptions`).')
        spec.input('max_validations', valid_type=orm.Int, default=lambda: orm.Int(20),
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
        spec.exit_code(330, 'ERROR_GENERATION_FAILED', message='The generation calculation failed.')
        spec.exit_code(331, 'ERROR_VALIDATION_FAILED', message='The validation of the candidates failed.')

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
        evaluation = evaluate_candidates(node.outputs.summary, self.inputs.training_dataset, **nodes)
        for key, values in evaluation.get_dict().items():
            relaxed[key].base.extras.set_many({f'crystalgan_{name}': value for name, value in values.items()})
        self.ctx.predicted = relaxed
        self.ctx.evaluation = evaluation
        return None

    def results(self) -> None:
        """Expose candidates, report, predicted structures and their evaluation."""
        self.out('candidates', self.ctx.generation.outputs.candidates)
        self.out('postprocess_report', self.ctx.report)
        if 'predicted' in self.ctx:
            self.out('predicted', self.ctx.predicted)
            self.out('evaluation', self.ctx.evaluation)
            minima = sum(v['is_local_minimum'] for v in self.ctx.evaluation.get_dict().values())
            self.report(f'{len(self.ctx.predicted)} candidates validated, {minima} are local minima')
