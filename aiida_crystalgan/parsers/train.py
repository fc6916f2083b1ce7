"""Parser of ``crystalgan.train``: model or checkpoint, loss curves, metrics."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.calculations.train import (
    CHECKPOINT_FILE,
    LOSSES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STDERR_FILE,
)
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.io.status import STATUS_FILE
from aiida_crystalgan.parsers._files import copy_retrieved, executable_exit_code


def parse_losses(text: str) -> orm.ArrayData:
    """Loss curves from ``losses.csv``: one array per numeric column."""
    rows = list(csv.DictReader(io.StringIO(text)))
    losses = orm.ArrayData()
    for column in rows[0] if rows else []:
        losses.set_array(column, np.array([float(row[column]) for row in rows]))
    return losses


class TrainParser(Parser):
    """A finished run gives ``model``; a soft wall-clock stop ``checkpoint`` and ERROR_SOFT_WALLTIME_CHECKPOINT.

    A diverged run (ERROR_TRAINING_DIVERGED) gives its last good ``checkpoint`` when it wrote or resumed from one, and
    so does a run killed without writing its status (ERROR_EXECUTABLE_CRASHED: the scheduler's time or memory limit)
    when it had written a periodic checkpoint.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        metrics = {}
        if METRICS_FILE in names:
            metrics = json.loads(retrieved.base.repository.get_object_content(METRICS_FILE))
            self.out('metrics', orm.Dict(metrics))
        if LOSSES_FILE in names:
            self.out('losses', parse_losses(retrieved.base.repository.get_object_content(LOSSES_FILE)))

        exit_code = executable_exit_code(self, STATUS_FILE, STDERR_FILE)
        # a diverged or killed run may have left its last periodic checkpoint: keep it, so that work is not lost
        may_leave_checkpoint = (
            self.exit_codes.ERROR_TRAINING_DIVERGED.status,
            self.exit_codes.ERROR_EXECUTABLE_CRASHED.status,
        )
        if exit_code is not None and exit_code.status in may_leave_checkpoint and CHECKPOINT_FILE not in names:
            return exit_code
        stopped = self.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
        if exit_code is not None and exit_code.status not in (stopped, *may_leave_checkpoint):
            return exit_code
        name, label = (CHECKPOINT_FILE, 'checkpoint') if exit_code is not None else (MODEL_FILE, 'model')
        with tempfile.TemporaryDirectory() as tmpdir:
            path = copy_retrieved(retrieved, name, Path(tmpdir))
            if path is None:
                return self.exit_codes.ERROR_NO_OUTPUT.format(message=f'`{name}` was not retrieved')
            try:
                self.out(label, GanModelData(path, metrics=metrics))
            except ValueError as exception:
                return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{name}: {exception}')
        return exit_code
