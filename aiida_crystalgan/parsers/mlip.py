"""Parser of ``crystalgan.mlip``: per-structure result files into the engine's standard outputs."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.calculations.mlip import RESULTS_FOLDER, STDERR_FILE
from aiida_crystalgan.engines.outputs import NonFiniteError, build_results, build_structure, build_trajectory, failure
from aiida_crystalgan.exit_codes import FAILURE_EXIT_CODES
from aiida_crystalgan.io.status import FAILED_SUFFIX, RUNNING_FILE, STATUS_FILE
from aiida_crystalgan.mlip.restart import RESTART_SUFFIX
from aiida_crystalgan.parsers._files import executable_exit_code


class MlipParser(Parser):
    """Turn ``results/<key>.json|npz`` into outputs; ``results/status.json`` says how the runner ended.

    The finished structures are output whatever the status (but ``invalid_input``), so that a run stopped by the soft
    wall-clock limit or a crash keeps its work. The structures that failed on their own (``<key>.failed.json``, NaN or
    infinite results, the structure that a crashed runner was working on) are the ``failures`` output. The MD
    trajectories that the soft wall-clock limit cut leave ``<key>.restart.npz``: the ``restarts`` output. The steps of a
    relaxation that its result holds (``trajectory_frames``) are its ``trajectories`` output.
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
        failures = self._failures(
            names, crashed=exit_code is not None and exit_code.status == self.exit_codes.ERROR_EXECUTABLE_CRASHED.status
        )
        missing = []
        for key, structure in self.node.inputs.structures.items():
            name = f'{key}.npz' if md else f'{key}.json'
            if key in failures:
                continue
            if name not in names:
                missing.append(key)
                if md and f'{key}{RESTART_SUFFIX}' in names:
                    self.out(f'restarts.{key}', self._restart_file(key))
                continue
            try:
                symbols = structure.get_ase().get_chemical_symbols()
                outputs = self._structure_outputs(key, f'{RESULTS_FOLDER}/{name}', symbols)
            except NonFiniteError as exception:
                failures[key] = failure('ERROR_STRUCTURE_NON_FINITE', str(exception))
                continue
            except (ValueError, KeyError, OSError) as exception:
                return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{name}: {exception}')
            for link, node in outputs.items():
                self.out(link, node)
        if failures:
            self.out('failures', orm.Dict(failures))

        if exit_code is not None:
            return exit_code
        if missing:
            return self.exit_codes.ERROR_NO_OUTPUT.format(message=f'no results for {", ".join(missing)}')
        return None

    def _failures(self, names: set[str], crashed: bool) -> dict[str, dict[str, Any]]:
        """The ``failures`` entries of the structures that the runner reported failed, or that it crashed on."""
        repository = self.retrieved.base.repository
        failures = {}
        for name in names:
            if not name.endswith(FAILED_SUFFIX):
                continue
            content = json.loads(repository.get_object_content(f'{RESULTS_FOLDER}/{name}'))
            label = FAILURE_EXIT_CODES.get(content.get('reason'), 'ERROR_STRUCTURE_FAILED')
            failures[name.removesuffix(FAILED_SUFFIX)] = failure(label, content.get('message', ''))
        if crashed and RUNNING_FILE in names:
            key = json.loads(repository.get_object_content(f'{RESULTS_FOLDER}/{RUNNING_FILE}'))['key']
            if {f'{key}.json', f'{key}.npz'} & names:
                return failures
            failures[key] = failure('ERROR_STRUCTURE_CRASHED', 'the runner died while working on this structure')
        return failures

    def _restart_file(self, key: str) -> orm.SinglefileData:
        """The restart file of the cut MD trajectory of ``key``, as retrieved."""
        filename = f'{key}{RESTART_SUFFIX}'
        content = self.retrieved.base.repository.get_object_content(f'{RESULTS_FOLDER}/{filename}', mode='rb')
        return orm.SinglefileData(io.BytesIO(content), filename=filename)

    def _structure_outputs(self, key: str, path: str, symbols: list[str]) -> dict[str, orm.Data]:
        """The standard outputs of structure ``key`` from its result file ``path``, by link label."""
        repository = self.retrieved.base.repository
        if path.endswith('.npz'):
            with np.load(io.BytesIO(repository.get_object_content(path, mode='rb')), allow_pickle=False) as npz:
                arrays = dict(npz)
            return {
                f'trajectories.{key}': build_trajectory(
                    symbols,
                    arrays['positions'],
                    arrays['cells'],
                    arrays['times'],
                    steps=arrays.get('steps'),
                    **{
                        name: arrays.get(name)
                        for name in ('energies', 'forces', 'stress', 'temperatures', 'velocities')
                    },
                )
            }
        result = json.loads(repository.get_object_content(path))
        outputs = {
            f'results.{key}': build_results(
                result['energy'], result['forces'], result['stress'], result['converged'], result['steps']
            )
        }
        if self.node.inputs.operation.value == 'relax':
            outputs[f'relaxed_structures.{key}'] = build_structure(result['cell'], symbols, result['positions'])
            steps = result.get('trajectory')
            if steps and steps['steps']:
                outputs[f'trajectories.{key}'] = build_trajectory(
                    symbols,
                    steps['positions'],
                    steps['cells'],
                    times=None,
                    steps=steps['steps'],
                    **{name: steps[name] for name in ('energies', 'forces', 'stress')},
                )
        return outputs
