"""Parser of ``crystalgan.generate``: the candidates file becomes a ``CrystalDatasetData``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.calculations.generate import OUTPUT_FILE, SCREENING_FILE, STDERR_FILE, STDOUT_FILE
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.io.status import STATUS_FILE
from aiida_crystalgan.parsers._files import copy_retrieved, executable_exit_code


class GenerateParser(Parser):
    """Store the candidates with the model's UUID as their source, the screening counts and the ranking."""

    def parse(self, **kwargs) -> ExitCode | None:
        exit_code = executable_exit_code(self, STATUS_FILE, STDERR_FILE)
        if exit_code is not None:
            return exit_code
        with tempfile.TemporaryDirectory() as tmpdir:
            path = copy_retrieved(self.retrieved, OUTPUT_FILE, Path(tmpdir))
            if path is None:
                return self.exit_codes.ERROR_NO_OUTPUT.format(message=f'`{OUTPUT_FILE}` was not retrieved')
            try:
                candidates = CrystalDatasetData(filepath=path, metadata={'model': self.node.inputs.model.uuid})
            except (ValueError, OSError) as exception:
                return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{OUTPUT_FILE}: {exception}')
        try:
            screening = json.loads(self.retrieved.base.repository.get_object_content(SCREENING_FILE))
            ranked = np.asarray(screening.pop('ranked'), dtype=float).reshape(-1, 3)
        except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError) as exception:
            return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{SCREENING_FILE}: {exception}')
        ranking = orm.ArrayData()
        ranking.set_array('indices', ranked[:, 0].astype(np.int64))
        ranking.set_array('predicted_energy_per_atom', ranked[:, 1])
        ranking.set_array('compositions', ranked[:, 2].astype(np.int64))
        self.out('candidates', candidates)
        self.out('screening', orm.Dict(screening))
        self.out('ranking', ranking)
        summary = self._summary()
        if summary:
            self.out('summary', orm.Dict(summary))
        return None

    def _summary(self) -> dict:
        try:
            lines = self.retrieved.base.repository.get_object_content(STDOUT_FILE).strip().splitlines()
            return json.loads(lines[-1]) if lines else {}
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
