"""Calcfunctions from aiida-vasp's outputs to the engine's standard outputs (built by ``engines/outputs.py``)."""

from __future__ import annotations

import re

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_crystalgan.io.frames import relaxation_picks

from ..outputs import build_results, build_trajectory

EV_PER_A3_PER_GPA = 1 / 160.21766208
TEMPERATURE = re.compile(r'\(temperature\s+([-+\d.Ee]+)\s*K\)')


def stress_from_vasp(stress_kbar) -> np.ndarray:
    """VASP's stress (kBar, positive = compressed cell) to the physical stress in eV/Å^3 (positive = tensile)."""
    return -0.1 * EV_PER_A3_PER_GPA * np.asarray(stress_kbar, dtype=float)


@calcfunction
def get_forces_result(misc: orm.Dict) -> orm.ArrayData:
    """Energy (σ→0), forces and stress of the last ionic step, from the ``misc`` output of ``vasp.vasp``."""
    misc = misc.get_dict()
    run_status = misc['run_status']
    converged = bool(run_status.get('electronic_converged')) and run_status.get('ionic_converged') is not False
    return build_results(
        misc['total_energies']['energy_extrapolated'], misc['forces'], stress_from_vasp(misc['stress']), converged
    )


def _temperatures(outcar: str, frames: int) -> np.ndarray:
    """Instantaneous temperatures (K) of the MD steps printed in the OUTCAR, NaN where there are none."""
    values = [float(value) for value in TEMPERATURE.findall(outcar)][:frames]
    return np.array(values + [np.nan] * (frames - len(values)))


@calcfunction
def get_md_trajectory(parameters: orm.Dict, **parts: orm.Data) -> orm.TrajectoryData:
    """Join the MD parts (``trajectory_NNN`` from ``vasp.vasp`` and its ``retrieved_NNN``) into the standard trajectory.

    Frames are kept every ``sample_interval`` steps; ``times`` count from the first step in fs.
    """
    parameters = parameters.get_dict()
    keys = sorted(key.removeprefix('trajectory_') for key in parts if key.startswith('trajectory_'))
    cells, positions, energies, forces, stress, temperatures = [], [], [], [], [], []
    for key in keys:
        part = parts[f'trajectory_{key}']
        frames = part.get_array('cells')
        cells.append(frames)
        positions.append(np.einsum('fij,fjk->fik', part.get_array('positions'), frames))  # fractional -> Cartesian
        energies.append(part.get_array('energy_extrapolated'))
        forces.append(part.get_array('forces'))
        stress.append(stress_from_vasp(part.get_array('stress')))
        outcar = parts[f'retrieved_{key}'].get_object_content('OUTCAR')
        temperatures.append(_temperatures(outcar, len(frames)))
    symbols = list(parts[f'trajectory_{keys[0]}'].base.attributes.get('symbols'))
    every = int(parameters.get('sample_interval', 1))
    cells = np.concatenate(cells)
    steps = np.arange(len(cells))[::every]

    return build_trajectory(
        symbols,
        np.concatenate(positions)[steps],
        cells[steps],
        times=steps * float(parameters['timestep']),
        steps=steps,
        energies=np.concatenate(energies)[steps],
        forces=np.concatenate(forces)[steps],
        stress=np.concatenate(stress)[steps],
        temperatures=np.concatenate(temperatures)[steps],
    )


@calcfunction
def get_relax_trajectory(frames: orm.Int, **parts: orm.TrajectoryData) -> orm.TrajectoryData:
    """The steps of a relaxation (``trajectory_NNN`` of each ``vasp.vasp`` run, continuations included, in order)
    before its last, at most ``frames`` of them evenly spaced from the first, steps with a non-finite value left out
    (``io.frames.relaxation_picks``)."""
    keys = sorted(parts)
    cells = np.concatenate([parts[key].get_array('cells') for key in keys])
    positions = np.concatenate(
        [np.einsum('fij,fjk->fik', parts[key].get_array('positions'), parts[key].get_array('cells')) for key in keys]
    )
    energies = np.concatenate([parts[key].get_array('energy_extrapolated') for key in keys])
    forces = np.concatenate([parts[key].get_array('forces') for key in keys])
    stress = np.concatenate([stress_from_vasp(parts[key].get_array('stress')) for key in keys])
    picks = relaxation_picks(
        {'positions': positions, 'cells': cells, 'energies': energies, 'forces': forces, 'stress': stress}, frames.value
    )
    return build_trajectory(
        list(parts[keys[0]].base.attributes.get('symbols')),
        positions[picks],
        cells[picks],
        times=None,
        steps=picks,
        energies=energies[picks],
        forces=forces[picks],
        stress=stress[picks],
    )
