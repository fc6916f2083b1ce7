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
from aiida_crystalgan.parsers._files import copy_retrieved, error_message


def parse_losses(text: str) -> orm.ArrayData:
    """Loss curves from ``losses.csv``: one array per numeric column."""
    rows = list(csv.DictReader(io.StringIO(text)))
    losses = orm.ArrayData()
    for column in rows[0] if rows else []:
        losses.set_array(column, np.array([float(row[column]) for row in rows]))
    return losses


class TrainParser(Parser):
    """A finished run gives ``model``; a soft wall-clock stop gives ``checkpoint`` and exit code 410."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        metrics = {}
        if METRICS_FILE in names:
            metrics = json.loads(retrieved.base.repository.get_object_content(METRICS_FILE))
            self.out('metrics', orm.Dict(metrics))
        if LOSSES_FILE in names:
            self.out('losses', parse_losses(retrieved.base.repository.get_object_content(LOSSES_FILE)))

        with tempfile.TemporaryDirectory() as tmpdir:
            model = copy_retrieved(retrieved, MODEL_FILE, Path(tmpdir))
            checkpoint = copy_retrieved(retrieved, CHECKPOINT_FILE, Path(tmpdir))
            try:
                if model is not None:
                    self.out('model', GanModelData(model, metrics=metrics))
                    return None
                if checkpoint is not None:
                    self.out('checkpoint', GanModelData(checkpoint, metrics=metrics))
                    return self.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT
            except ValueError as exception:
                return self.exit_codes.ERROR_CORRUPT_CHECKPOINT.format(message=str(exception))

        message = error_message(retrieved, STDERR_FILE)
        if 'error:' in message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message.split('error:')[-1].strip())
        return self.exit_codes.ERROR_TRAINING_FAILED.format(message=message)
