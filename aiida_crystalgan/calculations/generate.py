"""``crystalgan.generate``: sample candidate structures from a trained GAN for target compositions."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common import CalcInfo
from aiida.engine import CalcJob

from aiida_crystalgan.calculations._common import set_serial_defaults, single_code_calcinfo
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.exit_codes import EXECUTABLE_EXIT_CODES, define_exit_codes
from aiida_crystalgan.io.status import STATUS_FILE

MODEL_FILE = 'model.pt'
REQUEST_FILE = 'request.json'
OUTPUT_FILE = 'candidates.h5'
SCREENING_FILE = 'screening.json'
STDOUT_FILE = 'generate.out'
STDERR_FILE = 'generate.err'


def validate_request(request: dict, elements: list[str]) -> str | None:
    """Return why a generation request is invalid for a model over ``elements``, or ``None``."""
    from pymatgen.core import Composition

    targets = request.get('targets')
    if not targets:
        return 'the request has no `targets`: give [{"composition": ..., "formula_units": ...}, ...]'
    for target in targets:
        try:
            composition = Composition(target['composition'])
        except (KeyError, ValueError) as exception:
            return f'invalid target {target}: {exception}'
        unknown = sorted({str(el) for el in composition.elements} - set(elements))
        if unknown:
            return f'target {target["composition"]} has elements {unknown} that the model was not trained on {elements}'
        if int(target.get('formula_units', 1)) < 1:
            return f'target {target["composition"]}: `formula_units` must be positive'
    if int(request.get('num_per_target', 0)) < 1:
        return '`num_per_target` must be a positive integer'
    if request.get('source', 'gan') not in ('gan', 'random'):
        return f'`source` must be `gan` or `random`, got {request["source"]!r}'
    return None


def _validate_inputs(inputs, _) -> str | None:
    return validate_request(inputs['parameters'].get_dict(), inputs['model'].elements)


class GenerateCalculation(CalcJob):
    """Run ``crystalgan-generate``: every candidate in one ``CrystalDatasetData``, the screened survivors ranked."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('model', valid_type=GanModelData, help='The trained GAN.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            help='{"targets": [{"composition": "NbO2", "formula_units": 2}], "num_per_target": 100, "seed": 0, '
            '"source": "gan" (default) or "random" (PyXtal control), "screening": {fast filter bounds}}',
        )
        spec.input('device', valid_type=orm.Str, default=lambda: orm.Str('auto'))
        spec.inputs.validator = _validate_inputs
        set_serial_defaults(spec, 'crystalgan.generate')
        spec.output('candidates', valid_type=CrystalDatasetData, help='The generated structures, unfiltered.')
        spec.output('summary', valid_type=orm.Dict, required=False, help='Count, time and throughput.')
        spec.output(
            'screening',
            valid_type=orm.Dict,
            help='The fast filters: candidates dropped by each (`counts`), counts per composition, `source`.',
        )
        spec.output(
            'ranking',
            valid_type=orm.ArrayData,
            help='The survivors of the fast filters, best first: arrays `indices` (into `candidates`) and '
            "`predicted_energy_per_atom` (eV/atom, the physics head's), `compositions` (position of the "
            'requested composition in `screening.per_composition`).',
        )
        define_exit_codes(spec, *EXECUTABLE_EXIT_CODES)

    def prepare_for_submission(self, folder) -> CalcInfo:
        """Ship the checkpoint and the request."""
        self.inputs.model.write_file(folder.get_abs_path(MODEL_FILE))
        with folder.open(REQUEST_FILE, 'w') as handle:
            json.dump(self.inputs.parameters.get_dict(), handle, indent=2)
        arguments = [
            '--model',
            MODEL_FILE,
            '--request',
            REQUEST_FILE,
            '--output',
            OUTPUT_FILE,
            '--screening',
            SCREENING_FILE,
            '--device',
            self.inputs.device.value,
        ]
        return single_code_calcinfo(
            self.inputs.code, arguments, STDOUT_FILE, STDERR_FILE, [OUTPUT_FILE, SCREENING_FILE, STATUS_FILE]
        )
