"""``crystalgan-mlip``: run one engine operation on a batch of structures with an MLIP, from files alone.

Usage: ``crystalgan-mlip input.json``. The input names the operation, its parameters, the MLIP settings, the dataset
file with the structures (labels are the keys) and an optional soft wall-clock limit. The runner has no defaults: an
input without one of the :data:`REQUIRED_PARAMETERS` of its operation or of the settings (:data:`RUNNER_SETTINGS`,
``calculators.required_settings``) is refused; the ``crystalgan.mlip`` CalcJob's builder fills them from the ``mlip``
protocol. Each finished structure is written at once to ``results/<key>.json`` (relax, with ``trajectory_frames`` of
the relaxation's steps, and forces) or ``results/<key>.npz`` (md), so a job that is stopped keeps the work it did. A
structure that fails (an element the model does not know, NaN or infinite results, an exploding relaxation, an error
of the calculator) is written to ``results/<key>.failed.json`` and the batch goes on;
``results/running.json`` names the structure being worked on, so that a hard crash names its culprit.
``results/status.json`` and the exit code say how the run ended (see ``io.status``); a second start of the same job
waits for the first and exits with its code (``io.status.sole_instance``).

The soft wall-clock limit is checked between structures and, in MD, between steps: an MD that would not finish in
time stops after its last step that fits and writes ``results/<key>.restart.npz`` (``mlip.restart``); the input's
``restarts`` (``{key: file}``) name the restart files that the next run continues from, appending the frames left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiida_crystalgan.io import DataFile
from aiida_crystalgan.io.frames import relaxation_picks
from aiida_crystalgan.io.status import (
    EXIT_FAILED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SOFT_WALLCLOCK,
    FAILED_SUFFIX,
    RUNNING_FILE,
    sole_instance,
    write_failure,
    write_status,
)

from .calculators import load_calculator, required_settings, unsupported_elements
from .restart import FRAME_ARRAYS, RESTART_SUFFIX, MdRestart

RESULTS = Path('results')
#: Per-step arrays of a relaxation's ``trajectory`` in its result.
RELAX_FRAME_ARRAYS = ('positions', 'cells', 'energies', 'forces', 'stress', 'steps')
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


def _record_state(frames: dict[str, list], atoms, step: int) -> None:
    """Append the positions, cell, energy, forces and stress of ``atoms`` at ``step`` to ``frames``."""
    frames['positions'].append(atoms.get_positions())
    frames['cells'].append(np.asarray(atoms.cell[:]))
    frames['energies'].append(atoms.get_potential_energy())
    frames['forces'].append(atoms.get_forces())
    frames['stress'].append(_full_stress(atoms))
    frames['steps'].append(step)


def run_relax(atoms, calculator, parameters: dict[str, Any]) -> dict[str, Any]:
    """Relax positions (and the cell when ``relax_cell``) with FIRE until the largest force is below ``fmax``.

    The result's ``trajectory`` holds at most ``trajectory_frames`` of the relaxation's steps, evenly spaced from the
    starting structure on, with their energies, forces and stress; the final step is the result itself. Without
    ``trajectory_frames`` (an input written before it existed), no steps are kept.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = calculator
    initial_volume = atoms.get_volume()
    target = FrechetCellFilter(atoms) if parameters['relax_cell'] else atoms
    optimizer = FIRE(target, logfile=None)
    frames: dict[str, list] = {name: [] for name in RELAX_FRAME_ARRAYS}
    keep = int(parameters.get('trajectory_frames', 0))

    if keep:
        optimizer.attach(lambda: _record_state(frames, atoms, optimizer.nsteps), interval=1)
    converged = bool(optimizer.run(fmax=float(parameters['fmax']), steps=int(parameters['max_steps'])))
    result = run_forces(atoms, calculator, parameters)
    result.update({'converged': converged, 'steps': int(optimizer.nsteps)})
    ratio = atoms.get_volume() / initial_volume
    if not 1 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO:
        raise StructureFailed('exploded', f'the volume changed by a factor {ratio:.3g} during the relaxation')
    if keep:
        result['trajectory'] = relaxation_frames(frames, keep)
    return result


def relaxation_frames(frames: dict[str, list], maximum: int) -> dict[str, list]:
    """At most ``maximum`` of the recorded steps before the last (the relaxed structure), evenly spaced from the first
    on, steps with a non-finite value left out (``io.frames.relaxation_picks``)."""
    picks = relaxation_picks(frames, maximum)
    return {name: [np.asarray(frames[name][index]).tolist() for index in picks] for name in RELAX_FRAME_ARRAYS}


class TrajectoryCut(Exception):
    """The soft wall-clock limit stopped an MD between two steps; ``restart`` continues it."""

    def __init__(self, restart: MdRestart) -> None:
        super().__init__(f'MD stopped after step {restart.step}')
        self.restart = restart


def _always_fits(duration: float) -> bool:
    return True


def run_md(
    atoms,
    calculator,
    parameters: dict[str, Any],
    restart: MdRestart | None = None,
    fits: Callable[[float], bool] = _always_fits,
) -> dict[str, np.ndarray]:
    """NVT molecular dynamics; frames every ``sample_interval`` steps with energies, forces, stress, temperature.

    After each step (at least one per call), ``fits(longest step so far)`` says whether another step fits in the
    time left; when it does not, :class:`TrajectoryCut` carries the state to continue from (``restart``): the frames
    so far, positions and momenta, the random generator and the thermostat's variables. A continued run appends the
    frames of the steps left, so that it ends with the frames of an uninterrupted run.
    """
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
    thermostat = parameters['thermostat']
    continued = {**parameters, 'sample_interval': interval}
    if restart is None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
    else:
        mismatch = restart.mismatch(continued, len(atoms))
        if mismatch:
            raise InputError(f'cannot continue the MD from its restart file: {mismatch}')
        atoms.set_positions(restart.positions)
        atoms.set_momenta(restart.momenta)
        rng.bit_generator.state = restart.rng_state
    if thermostat == 'langevin':
        dynamics = Langevin(atoms, timestep, temperature_K=temperature, friction=0.01 / units.fs, rng=rng)
    elif thermostat == 'nose-hoover':
        dynamics = NoseHooverChainNVT(atoms, timestep, temperature_K=temperature, tdamp=100 * timestep)
    else:
        raise InputError(f'unknown thermostat `{thermostat}`: choose `nose-hoover` or `langevin`')
    # The Nose-Hoover chain's own variables (ASE keeps them private); the Langevin thermostat has none but the rng.
    chain = getattr(dynamics, '_thermostat', None)
    frames: dict[str, list] = {name: list(restart.frames[name]) if restart else [] for name in FRAME_ARRAYS}
    if restart is not None:
        dynamics.nsteps = restart.step  # ASE records no frame at the start of a run that is not at step 0
        if chain is not None:
            chain._eta, chain._p_eta = (np.array(restart.thermostat[name]) for name in ('eta', 'p_eta'))

    def record() -> None:
        _record_state(frames, atoms, dynamics.nsteps)
        frames['temperatures'].append(atoms.get_temperature())
        frames['times'].append(dynamics.nsteps * float(parameters['timestep']))
        frames['velocities'].append(atoms.get_velocities())

    def state() -> MdRestart:
        return MdRestart(
            frames={name: np.asarray(values, dtype=float) for name, values in frames.items()},
            step=dynamics.nsteps,
            positions=atoms.get_positions(),
            momenta=atoms.get_momenta(),
            rng_state=rng.bit_generator.state,
            thermostat={} if chain is None else {'eta': chain._eta.copy(), 'p_eta': chain._p_eta.copy()},
            parameters=continued,
        )

    dynamics.attach(record, interval=interval)
    first_step, longest, tick = dynamics.nsteps, 0.0, time.monotonic()
    for _ in dynamics.irun(steps - dynamics.nsteps):
        now = time.monotonic()
        longest, tick = max(longest, now - tick), now
        if first_step < dynamics.nsteps < steps and not fits(longest):
            cut = state()
            if not cut.is_finite():
                raise StructureFailed('non_finite', f'non-finite MD state at step {cut.step}')
            raise TrajectoryCut(cut)
    result = {key: np.asarray(value, dtype=float) for key, value in frames.items()}
    result['numbers'] = atoms.get_atomic_numbers()
    return result


OPERATIONS = {'forces': run_forces, 'relax': run_relax, 'md': run_md}
NON_FINITE_CHECKED = ('energy', 'forces', 'stress', 'positions', 'cell', 'energies', 'cells', 'velocities')


def evaluate(operation: str, atoms, calculator, config: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Run ``operation`` on one structure; :class:`StructureFailed` when the structure, not the run, is at fault.

    ``options`` go to the operation (``md``: ``restart`` and ``fits``, see :func:`run_md`).
    """
    unknown = unsupported_elements(config['settings'], atoms.get_atomic_numbers())
    if unknown:
        raise StructureFailed('unsupported_element', f'the model cannot evaluate {", ".join(unknown)}')
    try:
        result = OPERATIONS[operation](atoms, calculator, config['parameters'], **options)
    except (StructureFailed, InputError, TrajectoryCut):
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


def _md_options(config: dict[str, Any], key: str, fits: Callable[[float], bool]) -> dict[str, Any]:
    """The options of :func:`run_md` for structure ``key``: the restart file that the input names, if any."""
    if config['operation'] != 'md':
        return {}
    path = (config.get('restarts') or {}).get(key)
    return {'restart': MdRestart.load(Path(path)) if path else None, 'fits': fits}


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

    def fits(duration: float) -> bool:
        """Whether work of ``duration`` seconds still ends before the soft wall-clock limit."""
        return not soft_limit or time.monotonic() - start + duration <= soft_limit

    def stop(message: str) -> int:
        return write_status(RESULTS, EXIT_SOFT_WALLCLOCK, message, finished=len(durations) - failed, failed=failed)

    with DataFile(config['structures']) as structures:
        for record in structures:
            key = record.label
            if any((RESULTS / f'{key}{suffix}').exists() for suffix in ('.json', '.npz', FAILED_SUFFIX)):
                continue
            if durations and not fits(max(durations)):
                return stop(f'soft wall-clock limit of {soft_limit} s reached')
            tick = time.monotonic()
            _write_atomic(RESULTS / RUNNING_FILE, lambda p, k=key: p.write_text(json.dumps({'key': k})))
            restart_file = RESULTS / f'{key}{RESTART_SUFFIX}'
            try:
                options = _md_options(config, key, fits)
                result = evaluate(config['operation'], record.to_ase(), calculator, config, **options)
            except StructureFailed as failure:
                print(f'crystalgan-mlip: `{key}` failed ({failure.reason}): {failure}', file=sys.stderr)
                write_failure(RESULTS, key, failure.reason, str(failure))
                failed += 1
            except TrajectoryCut as cut:
                _write_atomic(restart_file, cut.restart.save)
                (RESULTS / RUNNING_FILE).unlink()
                step = cut.restart.step
                return stop(f'soft wall-clock limit of {soft_limit} s reached after MD step {step} of `{key}`')
            else:
                if config['operation'] == 'md':
                    _write_atomic(RESULTS / f'{key}.npz', lambda p, r=result: _save_npz(p, r))
                else:
                    _write_atomic(RESULTS / f'{key}.json', lambda p, r=result: p.write_text(json.dumps(r)))
            restart_file.unlink(missing_ok=True)
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
    with sole_instance(RESULTS, lock_directory='.') as earlier:
        if earlier is not None:
            return earlier
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
