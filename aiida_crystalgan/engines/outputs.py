"""The engines' standard outputs (``engines/base.py``): built here by every engine, read back here by every consumer.

Units: eV, Å, eV/Å, eV/Å^3 (positive = tensile), K, fs. Builders take plain arrays, so that the MLIP parser and
the VASP calcfunctions make nodes of exactly the same shape; readers turn the nodes back into plain values. Builders
refuse NaN and infinite values (:class:`NonFiniteError`): the structure is then reported in the ``failures`` output
(``{key: {'exit_status', 'exit_label', 'message'}}``) instead of breaking the storage of the batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import calcfunction

from aiida_crystalgan.exit_codes import EXIT_CODES
from aiida_crystalgan.io.datafile import StructureRecord

#: Per-frame arrays of the ``trajectories`` output besides positions and cells, in the order they are stored.
TRAJECTORY_ARRAYS = ('energies', 'forces', 'stress', 'temperatures', 'velocities')


class NonFiniteError(ValueError):
    """An engine result holds NaN or infinite values: that structure failed."""


def require_finite(**values: Any) -> None:
    """Raise :class:`NonFiniteError` naming those of ``values`` (numbers or arrays) that are not all finite."""
    bad = [
        name
        for name, value in values.items()
        if value is not None and not np.isfinite(np.asarray(value, dtype=float)).all()
    ]
    if bad:
        raise NonFiniteError(f'non-finite {", ".join(bad)}')


def failure(label: str, message: str) -> dict[str, Any]:
    """One entry of the ``failures`` output: the engine exit code ``label`` of the structure and what happened."""
    return {'exit_status': EXIT_CODES[label][0], 'exit_label': label, 'message': message}


@calcfunction
def record_failures(failures: orm.Dict, **structures: orm.StructureData) -> orm.Dict:
    """The ``failures`` output of an engine, linked to the structures that failed (``structure_<key>``)."""
    return orm.Dict(failures.get_dict())


def read_failures(node: orm.ProcessNode) -> dict[str, dict[str, Any]]:
    """The ``failures`` output of an engine (or stage) ``node`` as a plain dict; empty when nothing failed."""
    return node.outputs.failures.get_dict() if 'failures' in node.outputs else {}


def build_results(energy: float, forces: Any, stress: Any, converged: bool, steps: int | None = None) -> orm.ArrayData:
    """The ``results`` output of one structure: ``forces``/``stress`` arrays, energy and convergence attributes."""
    require_finite(energy=energy, forces=forces, stress=stress)
    forces = np.asarray(forces, dtype=float).reshape(-1, 3)
    energy = float(energy)
    results = orm.ArrayData()
    results.set_array('forces', forces)
    results.set_array('stress', np.asarray(stress, dtype=float).reshape(3, 3))
    results.base.attributes.set_many(
        {
            'energy': energy,
            'energy_per_atom': energy / len(forces),
            'max_force': float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0,
            'converged': bool(converged),
        }
    )
    if steps is not None:
        results.base.attributes.set('steps', int(steps))
    return results


def build_structure(cell: Any, symbols: Sequence[str], positions: Any) -> orm.StructureData:
    """The ``relaxed_structures`` output: a periodic structure from a cell and Cartesian positions (Å)."""
    require_finite(cell=cell, positions=positions)
    structure = orm.StructureData(cell=np.asarray(cell, dtype=float).tolist())
    for symbol, position in zip(symbols, np.asarray(positions, dtype=float).tolist()):
        structure.append_atom(position=position, symbols=symbol)
    return structure


def build_trajectory(
    symbols: Sequence[str], positions: Any, cells: Any, times: Any | None, steps: Any | None = None, **arrays: Any
) -> orm.TrajectoryData:
    """The ``trajectories`` output: frames of Cartesian positions and cells, their step indices and times (fs).

    :param times: time of each MD frame (fs); ``None`` for the steps of a relaxation.
    :param steps: MD or optimiser step index of each frame (default: 0, 1, 2...).
    :param arrays: any of :data:`TRAJECTORY_ARRAYS` (``energies`` is required); ``None`` values are left out.
    """
    unknown = set(arrays) - set(TRAJECTORY_ARRAYS)
    if unknown:
        raise ValueError(f'unknown trajectory arrays {sorted(unknown)}: use {", ".join(TRAJECTORY_ARRAYS)}')
    if arrays.get('energies') is None:
        raise ValueError('a trajectory needs the `energies` of its frames')
    require_finite(positions=positions, cells=cells, energies=arrays['energies'])
    positions = np.asarray(positions, dtype=float)
    steps = np.arange(len(positions)) if steps is None else np.asarray(steps, dtype=int)
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=list(symbols),
        positions=positions,
        cells=np.asarray(cells, dtype=float),
        stepids=steps,
        times=None if times is None else np.asarray(times, dtype=float),
        pbc=[True] * 3,
    )
    for name in TRAJECTORY_ARRAYS:
        if arrays.get(name) is not None:
            trajectory.set_array(name, np.asarray(arrays[name], dtype=float))
    return trajectory


def read_results(results: orm.ArrayData | None) -> dict[str, Any]:
    """``energy`` (eV), ``forces`` (eV/Å) and ``stress`` (eV/Å^3) of a ``results`` output; ``None`` where absent."""
    if results is None:
        return {'energy': None, 'forces': None, 'stress': None}
    names = set(results.get_arraynames())
    return {
        'energy': results.base.attributes.get('energy', None),
        'forces': results.get_array('forces') if 'forces' in names else None,
        'stress': results.get_array('stress') if 'stress' in names else None,
    }


def _element_numbers(symbols: Sequence[str]) -> list[int]:
    """Atomic numbers of kind names such as ``Nb``, ``Nb1`` or ``O_a``."""
    from ase.data import atomic_numbers

    numbers = []
    for symbol in symbols:
        match = re.match(r'[A-Z][a-z]?', symbol)
        if match is None or match.group() not in atomic_numbers:
            raise ValueError(f'cannot tell the element of the kind `{symbol}`')
        numbers.append(atomic_numbers[match.group()])
    return numbers


def read_trajectory(trajectory: orm.TrajectoryData, label: str | None = None) -> Iterator[StructureRecord]:
    """One record per frame of a ``trajectories`` output, with its energy, forces and stress where stored.

    A NaN energy reads as ``None``. Records are labelled ``<label>:<frame>`` (default label: the node's, or ``frame``).
    """
    names = set(trajectory.get_arraynames())
    numbers = _element_numbers(trajectory.symbols)
    cells = trajectory.get_cells()
    if cells is None:
        raise ValueError(f'TrajectoryData<{trajectory.uuid}> has no cells: cannot make periodic structures')
    positions = trajectory.get_positions()
    arrays = {name: trajectory.get_array(name) for name in ('energies', 'forces', 'stress') if name in names}
    label = label or trajectory.label or 'frame'
    for frame in range(trajectory.numsteps):
        energy = float(arrays['energies'][frame]) if 'energies' in arrays else None
        yield StructureRecord(
            numbers=numbers,
            positions=positions[frame],
            cell=cells[frame],
            energy=None if energy is None or np.isnan(energy) else energy,
            forces=arrays['forces'][frame] if 'forces' in arrays else None,
            stress=arrays['stress'][frame] if 'stress' in arrays else None,
            source=trajectory.uuid,
            label=f'{label}:{frame}',
        )


def relaxation_trajectory(results: orm.ArrayData) -> orm.TrajectoryData | None:
    """The steps of the relaxation whose ``results`` output this is: the ``trajectories`` output of the same key of the
    process that created or returned it (``trajectory_frames``); ``None`` when the engine returned none."""
    for link in results.base.links.get_incoming(link_type=(LinkType.CREATE, LinkType.RETURN)).all():
        namespace, _, key = link.link_label.partition('__')
        outputs = link.node.outputs
        if namespace == 'results' and 'trajectories' in outputs and key in outputs.trajectories:
            return outputs.trajectories[key]
    return None
