"""Parser of ``crystalgan.mlip``: per-structure result files into the engine's standard outputs."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.calculations.mlip import RESULTS_FOLDER, STDERR_FILE
from aiida_crystalgan.parsers._files import stderr_tail


def results_array(result: dict) -> orm.ArrayData:
    """The standard ``results`` output of one structure: forces/stress arrays, energy attributes."""
    forces = np.asarray(result['forces'], dtype=float)
    array = orm.ArrayData()
    array.set_array('forces', forces)
    array.set_array('stress', np.asarray(result['stress'], dtype=float))
    array.base.attributes.set_many({
        'energy': result['energy'],
        'energy_per_atom': result['energy'] / len(forces),
        'max_force': float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0,
        'converged': bool(result['converged']),
        'steps': int(result['steps']),
    })
    return array


def structure_from_result(result: dict, symbols: list[str]) -> orm.StructureData:
    """The structure that a result describes (for ``relax``: the relaxed one)."""
    structure = orm.StructureData(cell=result['cell'])
    for symbol, position in zip(symbols, result['positions']):
        structure.append_atom(position=position, symbols=symbol)
    return structure


def trajectory_from_arrays(arrays: dict[str, np.ndarray], symbols: list[str]) -> orm.TrajectoryData:
    """The standard ``trajectories`` output: positions and cells plus energies, forces, stress, temperatures."""
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(symbols=symbols, positions=arrays['positions'], cells=arrays['cells'],
                              stepids=np.arange(len(arrays['positions'])), times=arrays['times'], pbc=[True] * 3)
    for name in ('energies', 'forces', 'stress', 'temperatures', 'velocities'):
        trajectory.set_array(name, arrays[name])
    return trajectory


class MlipParser(Parser):
    """Turn ``results/<key>.json|npz`` into outputs; report missing structures and how the runner ended."""

    def parse(self, **kwargs) -> ExitCode | None:
        retrieved = self.retrieved
        try:
            names = retrieved.base.repository.list_object_names(RESULTS_FOLDER)
        except (FileNotFoundError, NotADirectoryError):
            return self._runner_failure_or(self.exit_codes.ERROR_NO_RESULTS)

        status = {}
        if 'status.json' in names:
            status = json.loads(retrieved.base.repository.get_object_content(f'{RESULTS_FOLDER}/status.json'))
        if status.get('status') == 'invalid_input':
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=status['message'])
        if status.get('status') == 'crashed':
            return self.exit_codes.ERROR_RUNNER_FAILED.format(message=status['message'])

        operation = self.node.inputs.operation.value
        missing = []
        for key, structure in self.node.inputs.structures.items():
            symbols = list(structure.get_ase().get_chemical_symbols())
            try:
                if operation == 'md':
                    if f'{key}.npz' not in names:
                        missing.append(key)
                        continue
                    content = retrieved.base.repository.get_object_content(f'{RESULTS_FOLDER}/{key}.npz', mode='rb')
                    with np.load(io.BytesIO(content), allow_pickle=False) as arrays:
                        self.out(f'trajectories.{key}', trajectory_from_arrays(dict(arrays), symbols))
                    continue
                if f'{key}.json' not in names:
                    missing.append(key)
                    continue
                result = json.loads(retrieved.base.repository.get_object_content(f'{RESULTS_FOLDER}/{key}.json'))
                self.out(f'results.{key}', results_array(result))
                if operation == 'relax':
                    self.out(f'relaxed_structures.{key}', structure_from_result(result, symbols))
            except (ValueError, KeyError, OSError) as exception:
                return self.exit_codes.ERROR_CORRUPT_RESULT.format(message=f'{key}: {exception}')

        if missing:
            self.logger.warning(f'no results for {len(missing)} structures: {", ".join(missing)}')
            if status.get('status') == 'walltime' or not status:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME
            return self.exit_codes.ERROR_RUNNER_FAILED.format(message=f'no results for {", ".join(missing)}')
        return None

    def _runner_failure_or(self, exit_code: ExitCode) -> ExitCode:
        stderr = stderr_tail(self.retrieved, STDERR_FILE)
        return self.exit_codes.ERROR_RUNNER_FAILED.format(message=stderr) if stderr else exit_code
