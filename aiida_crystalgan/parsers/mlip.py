"""Parser of ``crystalgan.mlip``: per-structure result files into the engine's standard outputs."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.calculations.mlip import RESULTS_FOLDER, STDERR_FILE
from aiida_crystalgan.engines.outputs import build_results, build_structure, build_trajectory
from aiida_crystalgan.io.status import STATUS_FILE
from aiida_crystalgan.parsers._files import executable_exit_code


class MlipParser(Parser):
    """Turn ``results/<key>.json|npz`` into outputs; ``results/status.json`` says how the runner ended.

    The finished structures are output whatever the status (but ``invalid_input``), so that a run stopped by the soft
    wall-clock limit or a crash keeps its work.
    """

    def parse(self, **kwargs) -> ExitCode | None:
        exit_code = executable_exit_code(self, f'{RESULTS_FOLDER}/{STATUS_FILE}', STDERR_FILE)
        if exit_code is not None and exit_code.status == self.exit_codes.ERROR_INVALID_INPUT.status:
            return exit_code
        try:
            names = set(self.retrieved.base.repository.list_object_names(RESULTS_FOLDER))
        except (FileNotFoundError, NotADirectoryError):
            names = set()

        md = self.node.inputs.operation.value == 'md'
        missing = []
        for key, structure in self.node.inputs.structures.items():
            name = f'{key}.npz' if md else f'{key}.json'
            if name not in names:
                missing.append(key)
                continue
            try:
                self._output(key, f'{RESULTS_FOLDER}/{name}', structure.get_ase().get_chemical_symbols())
            except (ValueError, KeyError, OSError) as exception:
                return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{name}: {exception}')

        if exit_code is not None:
            return exit_code
        if missing:
            return self.exit_codes.ERROR_NO_OUTPUT.format(message=f'no results for {", ".join(missing)}')
        return None

    def _output(self, key: str, path: str, symbols: list[str]) -> None:
        """Attach the standard outputs of structure ``key`` from its result file ``path``."""
        repository = self.retrieved.base.repository
        if path.endswith('.npz'):
            with np.load(io.BytesIO(repository.get_object_content(path, mode='rb')), allow_pickle=False) as npz:
                arrays = dict(npz)
            self.out(f'trajectories.{key}', build_trajectory(
                symbols, arrays['positions'], arrays['cells'], arrays['times'], steps=arrays.get('steps'),
                **{name: arrays.get(name) for name in ('energies', 'forces', 'stress', 'temperatures', 'velocities')}))
            return
        result = json.loads(repository.get_object_content(path))
        self.out(f'results.{key}', build_results(result['energy'], result['forces'], result['stress'],
                                                 result['converged'], result['steps']))
        if self.node.inputs.operation.value == 'relax':
            self.out(f'relaxed_structures.{key}', build_structure(result['cell'], symbols, result['positions']))
