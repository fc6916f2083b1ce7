"""``crystalgan-mlip``: run one engine operation on a batch of structures with an MLIP, from files alone.

Usage: ``crystalgan-mlip input.json``. The input names the operation, its parameters, the MLIP settings, the dataset
file with the structures (labels are the keys) and an optional soft wall-clock limit. The runner has no defaults: an
input without one of the :data:`REQUIRED_PARAMETERS` of its operation or of the settings (:data:`RUNNER_SETTINGS`,
``calculators.required_settings``) is refused; the ``crystalgan.mlip`` CalcJob's builder fills them from the ``mlip``
protocol. Each finished structure is
written at once to ``results/<key>.json`` (relax, forces) or ``results/<key>.npz`` (md), so a job that is stopped
keeps the work it did. A structure that fails (an element the model does not know, NaN or infinite results, an
exploding relaxation, an error of the calculator) is written to ``results/<key>.failed.json`` and the batch goes on;
``results/running.json`` names the structure being worked on, so that a hard crash names its culprit.
``results/status.json`` and the exit code say how the run ended (see ``io.status``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiida_crystalgan.io import DataFile
from aiida_crystalgan.io.status import (
    EXIT_FAILED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SOFT_WALLCLOCK,
    FAILED_SUFFIX,
    RUNNING_FILE,
    write_failure,
    write_status,
)

from .calculators import load_calculator, required_settings, unsupported_elements

RESULTS = Path('results')
#: A relaxation that changes the volume by more than this factor, either way, has exploded (or collapsed).
MAX_VOLUME_RATIO = 3.0
#: The parameters of each operation, all required.
REQUIRED_PARAMETERS = {
    'forces': (),
    'relax': ('fmax', 'max_steps', 'relax_cell'),
    'md': ('temperature', 'steps', 'timestep', 'sample_interval', 'thermostat', 'seed'),
}
#: The settings of the runner itself, besides those of the model (``calculators.required_settings``).
RUNNER_SETTINGS = ('num_threads',)


class InputError(ValueError):
    """The input files are invalid."""


class StructureFailed(Exception):
    """One structure of the batch failed for ``reason`` (a key of ``io.status.FAILURE_REASONS``); the others go on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + '.part')
    write(tmp)
    os.replace(tmp, path)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, 'wb') as handle:
        np.savez(handle, **arrays)


def _full_stress(atoms) -> np.ndarray:
    return np.asarray(atoms.get_stress(voigt=False))


def run_forces(atoms, calculator, parameters: dict[str, Any]) -> dict[str, Any]:
    """Energy (eV), forces (eV/Å) and stress (eV/Å^3) of ``atoms`` as they are."""
    atoms.calc = calculator
    forces = atoms.get_forces()
    return {
        'numbers': atoms.get_atomic_numbers().tolist(),
        'positions': atoms.get_positions().tolist(),
        'cell': np.asarray(atoms.cell[:]).tolist(),
        'energy': float(atoms.get_potential_energy()),
        'forces': forces.tolist(),
        'stress': _full_stress(atoms).tolist(),
        'max_force': float(np.linalg.norm(forces, axis=1).max()),
        'converged': True,
        'steps': 0,
    }


def run_relax(atoms, calculator, parameters: dict[str, Any]) -> dict[str, Any]:
    """Relax positions (and the cell when ``relax_cell``) with FIRE until the largest force is below ``fmax``."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calculator
    initial_volume = atoms.get_volume()
    target = FrechetCellFilter(atoms) if parameters['relax_cell'] else atoms
    optimizer = FIRE(target, logfile=None)
    converged = bool(optimizer.run(fmax=float(parameters['fmax']), steps=int(parameters['max_steps'])))
    result = run_forces(atoms, calculator, parameters)
    result.update({'converged': converged, 'steps': int(optimizer.nsteps)})
    ratio = atoms.get_volume() / initial_volume
    if not 1 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO:
        raise StructureFailed('exploded', f'the volume changed by a factor {ratio:.3g} during the relaxation')
    return result


def run_md(atoms, calculator, parameters: dict[str, Any]) -> dict[str, np.ndarray]:
    """NVT molecular dynamics; frames every ``sample_interval`` steps with energies, forces, stress, temperature."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import NoseHooverChainNVT
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    temperature = float(parameters['temperature'])
    timestep = float(parameters['timestep']) * units.fs
    steps = int(parameters['steps'])
    interval = int(parameters['sample_interval'])
    rng = np.random.default_rng(int(parameters['seed']))
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    thermostat = parameters['thermostat']
    if thermostat == 'langevin':
        dynamics = Langevin(atoms, timestep, temperature_K=temperature, friction=0.01 / units.fs, rng=rng)
    elif thermostat == 'nose-hoover':
        dynamics = NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=100 * timestep)
    else:
        raise InputError(f'unknown thermostat `{thermostat}`: choose `nose-hoover` or `langevin`')

    frames: dict[str, list] = {
        k: []
        for k in ('positions', 'cells', 'energies', 'forces', 'stress', 'temperatures', 'times', 'steps', 'velocities')
    }

    def record() -> None:
        frames['positions'].append(atoms.get_positions())
        frames['cells'].append(np.asarray(atoms.cell[:]))
        frames['energies'].append(atoms.get_potential_energy())
        frames['forces'].append(atoms.get_forces())
        frames['stress'].append(_full_stress(atoms))
        frames['temperatures'].append(atoms.get_temperature())
        frames['times'].append(dynamics.nsteps * float(parameters['timestep']))
        frames['steps'].append(dynamics.nsteps)
        frames['velocities'].append(atoms.get_velocities())

    dynamics.attach(record, interval=interval)
    dynamics.run(steps)
    result = {key: np.asarray(value, dtype=float) for key, value in frames.items()}
    result['numbers'] = atoms.get_atomic_numbers()
    return result


OPERATIONS = {'forces': run_forces, 'relax': run_relax, 'md': run_md}
NON_FINITE_CHECKED = ('energy', 'forces', 'stress', 'positions', 'cell', 'energies', 'cells', 'velocities')


def evaluate(operation: str, atoms, calculator, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``operation`` on one structure; :class:`StructureFailed` when the structure, not the run, is at fault."""
    unknown = unsupported_elements(config['settings'], atoms.get_atomic_numbers())
    if unknown:
        raise StructureFailed('unsupported_element', f'the model cannot evaluate {", ".join(unknown)}')
    try:
        result = OPERATIONS[operation](atoms, calculator, config['parameters'])
    except (StructureFailed, InputError):
        raise
    except Exception as exception:  # noqa: BLE001 - the calculator's failure on this structure, whatever it is
        traceback.print_exc()
        raise StructureFailed('error', f'{type(exception).__name__}: {exception}') from exception
    bad = [name for name in NON_FINITE_CHECKED if name in result and not np.isfinite(result[name]).all()]
    if bad:
        raise StructureFailed('non_finite', f'non-finite {", ".join(bad)}')
    return result


def _read_input(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exception:
        raise InputError(f'cannot read the input file `{path}`: {exception}') from exception
    if config.get('operation') not in OPERATIONS:
        raise InputError(f'unknown operation `{config.get("operation")}`: choose one of {", ".join(OPERATIONS)}')
    if not Path(config.get('structures', '')).is_file():
        raise InputError(f'structures file `{config.get("structures")}` not found')
    _check_complete(config)
    return config


def _check_complete(config: dict[str, Any]) -> None:
    """Raise :class:`InputError` naming every parameter and setting that ``config`` lacks."""
    for name in ('parameters', 'settings'):
        if not isinstance(config.get(name), dict):
            raise InputError(f'`{name}` must be a mapping, got {config.get(name)!r}')
    parameters, settings = config['parameters'], config['settings']
    missing = [f'parameters.{key}' for key in REQUIRED_PARAMETERS[config['operation']] if key not in parameters]
    missing += [f'settings.{key}' for key in (*required_settings(settings), *RUNNER_SETTINGS) if key not in settings]
    if missing:
        raise InputError(
            f'the input has no {", ".join(f"`{key}`" for key in missing)}: the runner has no defaults '
            '(the `crystalgan.mlip` builder fills them from the `mlip` protocol)'
        )


def run(input_path: Path) -> int:
    """Run the operation described by ``input_path``; return the process exit code."""
    start = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    config = _read_input(input_path)
    soft_limit = config.get('max_wallclock_seconds')
    settings = config['settings']
    torch.set_num_threads(int(settings['num_threads']))
    calculator = load_calculator(settings)
    durations: list[float] = []
    failed = 0
    with DataFile(config['structures']) as structures:
        for record in structures:
            key = record.label
            if any((RESULTS / f'{key}{suffix}').exists() for suffix in ('.json', '.npz', FAILED_SUFFIX)):
                continue
            elapsed = time.monotonic() - start
            if soft_limit and durations and elapsed + max(durations) > soft_limit:
                return write_status(
                    RESULTS,
                    EXIT_SOFT_WALLCLOCK,
                    f'soft wall-clock limit of {soft_limit} s reached',
                    finished=len(durations) - failed,
                    failed=failed,
                )
            tick = time.monotonic()
            _write_atomic(RESULTS / RUNNING_FILE, lambda p, k=key: p.write_text(json.dumps({'key': k})))
            try:
                result = evaluate(config['operation'], record.to_ase(), calculator, config)
            except StructureFailed as failure:
                print(f'crystalgan-mlip: `{key}` failed ({failure.reason}): {failure}', file=sys.stderr)
                write_failure(RESULTS, key, failure.reason, str(failure))
                failed += 1
            else:
                if config['operation'] == 'md':
                    _write_atomic(RESULTS / f'{key}.npz', lambda p, r=result: _save_npz(p, r))
                else:
                    _write_atomic(RESULTS / f'{key}.json', lambda p, r=result: p.write_text(json.dumps(r)))
            (RESULTS / RUNNING_FILE).unlink()
            durations.append(time.monotonic() - tick)
    finished = len(durations) - failed
    return write_status(
        RESULTS,
        EXIT_OK,
        f'{finished} structures in {time.monotonic() - start:.1f} s, {failed} failed',
        finished=finished,
        failed=failed,
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``crystalgan-mlip``: run the operation described by an input file."""
    parser = argparse.ArgumentParser(prog='crystalgan-mlip', description=__doc__.split('\n\n')[0])
    parser.add_argument('input', type=Path, help='JSON input written by the `crystalgan.mlip` CalcJob')
    args = parser.parse_args(argv)
    try:
        return run(args.input)
    except (InputError, ValueError) as exception:
        print(f'crystalgan-mlip: error: {exception}', file=sys.stderr)
        return write_status(RESULTS, EXIT_INVALID_INPUT, str(exception))
    except Exception as exception:  # noqa: BLE001 - report every failure in the status file for the parser
        traceback.print_exc()
        return write_status(RESULTS, EXIT_FAILED, f'{type(exception).__name__}: {exception}')


if __name__ == '__main__':
    sys.exit(main())
