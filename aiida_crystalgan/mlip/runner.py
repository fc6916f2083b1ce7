"""``crystalgan-mlip``: run one engine operation on a batch of structures with an MLIP, from files alone.

Usage: ``crystalgan-mlip input.json``. The input names the operation, its parameters, the MLIP settings, the dataset
file with the structures (labels are the keys) and an optional soft wall-clock limit. Each finished structure is
written at once to ``results/<key>.json`` (relax, forces) or ``results/<key>.npz`` (md), so a job that is stopped
keeps the work it did. ``results/status.json`` and the exit code say how the run ended (see ``io.status``).
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
from aiida_crystalgan.io.status import EXIT_FAILED, EXIT_INVALID_INPUT, EXIT_OK, EXIT_SOFT_WALLCLOCK, write_status

from .calculators import load_calculator

RESULTS = Path('results')


class InputError(ValueError):
    """The input files are invalid."""


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
        'numbers': atoms.get_atomic_numbers().tolist(), 'positions': atoms.get_positions().tolist(),
        'cell': np.asarray(atoms.cell[:]).tolist(), 'energy': float(atoms.get_potential_energy()),
        'forces': forces.tolist(), 'stress': _full_stress(atoms).tolist(),
        'max_force': float(np.linalg.norm(forces, axis=1).max()), 'converged': True, 'steps': 0,
    }


def run_relax(atoms, calculator, parameters: dict[str, Any]) -> dict[str, Any]:
    """Relax positions (and the cell when ``relax_cell``) with FIRE until the largest force is below ``fmax``."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calculator
    target = FrechetCellFilter(atoms) if parameters.get('relax_cell', True) else atoms
    optimizer = FIRE(target, logfile=None)
    converged = bool(optimizer.run(fmax=float(parameters['fmax']), steps=int(parameters['max_steps'])))
    result = run_forces(atoms, calculator, parameters)
    result.update({'converged': converged, 'steps': int(optimizer.nsteps)})
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
    interval = int(parameters.get('sample_interval', max(1, steps // 10)))
    rng = np.random.default_rng(int(parameters.get('seed', 0)))
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    thermostat = parameters.get('thermostat', 'nose-hoover')
    if thermostat == 'langevin':
        dynamics = Langevin(atoms, timestep, temperature_K=temperature, friction=0.01 / units.fs, rng=rng)
    elif thermostat == 'nose-hoover':
        dynamics = NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=100 * timestep)
    else:
        raise InputError(f'unknown thermostat `{thermostat}`: choose `nose-hoover` or `langevin`')

    frames: dict[str, list] = {k: [] for k in ('positions', 'cells', 'energies', 'forces', 'stress', 'temperatures',
                                               'times', 'steps', 'velocities')}

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


def _read_input(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exception:
        raise InputError(f'cannot read the input file `{path}`: {exception}') from exception
    if config.get('operation') not in OPERATIONS:
        raise InputError(f'unknown operation `{config.get("operation")}`: choose one of {", ".join(OPERATIONS)}')
    if not Path(config.get('structures', '')).is_file():
        raise InputError(f'structures file `{config.get("structures")}` not found')
    return config


def run(input_path: Path) -> int:
    """Run the operation described by ``input_path``; return the process exit code."""
    start = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    config = _read_input(input_path)
    soft_limit = config.get('max_wallclock_seconds')
    operation = OPERATIONS[config['operation']]
    settings = config.get('settings', {})
    torch.set_num_threads(int(settings.get('num_threads', 1)))
    calculator = load_calculator(settings)
    durations: list[float] = []
    with DataFile(config['structures']) as structures:
        for record in structures:
            key = record.label
            if (RESULTS / f'{key}.json').exists() or (RESULTS / f'{key}.npz').exists():
                continue
            elapsed = time.monotonic() - start
            if soft_limit and durations and elapsed + max(durations) > soft_limit:
                return write_status(RESULTS, EXIT_SOFT_WALLCLOCK, f'soft wall-clock limit of {soft_limit} s reached',
                                    finished=len(durations))
            tick = time.monotonic()
            result = operation(record.to_ase(), calculator, config['parameters'])
            if config['operation'] == 'md':
                _write_atomic(RESULTS / f'{key}.npz', lambda p, r=result: _save_npz(p, r))
            else:
                _write_atomic(RESULTS / f'{key}.json', lambda p, r=result: p.write_text(json.dumps(r)))
            durations.append(time.monotonic() - tick)
    return write_status(RESULTS, EXIT_OK, f'{len(durations)} structures in {time.monotonic() - start:.1f} s',
                        finished=len(durations))


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
