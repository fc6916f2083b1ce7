"""``crystalgan.train``: train the GAN on a ``CrystalDatasetData`` with ``crystalgan-train`` (CPU or GPU)."""

from __future__ import annotations

import json

from aiida import orm
from aiida.common import CalcInfo
from aiida.engine import CalcJob

from aiida_crystalgan.calculations._common import SOFT_WALLTIME_FRACTION, set_serial_defaults, single_code_calcinfo
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.exit_codes import EXECUTABLE_EXIT_CODES, define_exit_codes
from aiida_crystalgan.gan.config import GanConfig
from aiida_crystalgan.io.status import STATUS_FILE

DATASET_FILE = 'dataset.h5'
CONFIG_FILE = 'config.json'
PARENT_FILE = 'parent.pt'
MODEL_FILE = 'model.pt'
CHECKPOINT_FILE = 'checkpoint.pt'
LOSSES_FILE = 'losses.csv'
METRICS_FILE = 'metrics.json'
VALIDATION_FILE = 'validation.json'
VALIDATION_CURVE_FILE = 'validation.csv'
STDOUT_FILE = 'train.out'
STDERR_FILE = 'train.err'


def validate_config(value: orm.Dict, _) -> str | None:
    """The GAN configuration must make a valid ``GanConfig``: a typo is found at submission, not hours later."""
    try:
        GanConfig.from_dict(value.get_dict())
    except (ValueError, TypeError) as exception:
        return f'invalid GAN configuration: {exception}'
    return None


class TrainCalculation(CalcJob):
    """Train (or resume training of) the crystal GAN; a soft wall-clock limit ends in a resumable checkpoint.

    GPU nodes are requested like any scheduler resource, e.g. ``metadata.options.custom_scheduler_commands =
    '#SBATCH --gres=gpu:1'``; the executable uses CUDA when it finds it and the CPU otherwise. The monitor
    ``crystalgan.training_progress`` (:mod:`aiida_crystalgan.calculations.monitors`) reports the latest losses of a
    running job.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'dataset', valid_type=CrystalDatasetData, help='Structures with energies (and forces) to learn from.'
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_config,
            help='GAN configuration (see `aiida_crystalgan.gan.GanConfig`), checked at submission.',
        )
        spec.input(
            'parent_model',
            valid_type=GanModelData,
            required=False,
            help='A checkpoint to resume from (after a wall-clock stop) or to continue training.',
        )
        spec.input(
            'device',
            valid_type=orm.Str,
            default=lambda: orm.Str('auto'),
            help='`auto` (CUDA when present), `cpu` or `cuda`.',
        )
        spec.input(
            'validation',
            valid_type=orm.Dict,
            required=False,
            help='Held-out evaluation (hyperparameter search): `train` and `validation` indices of the dataset, '
            'objective weights, pruning thresholds; see `aiida_crystalgan.gan.evaluation.ValidationPlan`. '
            'Its results go to `metrics.validation`.',
        )
        set_serial_defaults(spec, 'crystalgan.train')
        spec.output('model', valid_type=GanModelData, help='The trained model (final checkpoint).')
        spec.output(
            'checkpoint',
            valid_type=GanModelData,
            required=False,
            help='The checkpoint written at a soft wall-clock stop, or the last good one of a diverged run.',
        )
        spec.output('losses', valid_type=orm.ArrayData, required=False, help='Loss curves, one array per column.')
        spec.output('metrics', valid_type=orm.Dict, required=False, help='Final training metrics.')
        define_exit_codes(spec, *EXECUTABLE_EXIT_CODES, 'ERROR_TRAINING_DIVERGED')

    def prepare_for_submission(self, folder) -> CalcInfo:
        """Ship the dataset file, the configuration and the parent checkpoint."""
        self.inputs.dataset.write_file(folder.get_abs_path(DATASET_FILE))
        with folder.open(CONFIG_FILE, 'w') as handle:
            json.dump(self.inputs.parameters.get_dict(), handle, indent=2)
        arguments = [
            '--dataset',
            DATASET_FILE,
            '--config',
            CONFIG_FILE,
            '--output-dir',
            '.',
            '--device',
            self.inputs.device.value,
        ]
        if 'parent_model' in self.inputs:
            self.inputs.parent_model.write_file(folder.get_abs_path(PARENT_FILE))
            arguments += ['--resume', PARENT_FILE]
        if 'validation' in self.inputs:
            with folder.open(VALIDATION_FILE, 'w') as handle:
                json.dump(self.inputs.validation.get_dict(), handle)
            arguments += ['--validation', VALIDATION_FILE]
        walltime = self.inputs.metadata.options.get('max_wallclock_seconds')
        if walltime:
            arguments += ['--max-wallclock-seconds', str(int(walltime * SOFT_WALLTIME_FRACTION))]

        return single_code_calcinfo(
            self.inputs.code,
            arguments,
            STDOUT_FILE,
            STDERR_FILE,
            [MODEL_FILE, CHECKPOINT_FILE, LOSSES_FILE, METRICS_FILE, STATUS_FILE, VALIDATION_CURVE_FILE],
        )
