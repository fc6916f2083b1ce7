"""The restart file of an MD trajectory cut by the soft wall-clock limit (no AiiDA, no PyTorch import).

``crystalgan-mlip`` writes ``results/<key>.restart.npz`` when the soft wall-clock limit stops an MD between two
steps, and continues from such a file when its input names one (``restarts: {key: file}``). The file holds
(NumPy ``.npz``, no pickles):

* ``frame_<name>``: the frames written so far (``FRAME_ARRAYS``: positions, cells, energies, forces, ...);
* ``state_step``, ``state_positions``, ``state_momenta``: the MD step reached and the atoms at that step;
* ``state_rng``: the state of the random generator (JSON of NumPy's ``bit_generator.state``), which the Langevin
  thermostat draws from;
* ``thermostat_<name>``: the internal variables of the thermostat, where it has any (Nose-Hoover chain: ``eta``,
  ``p_eta``);
* ``parameters``: the MD parameters of the run (JSON), which a continuation must repeat.

Continuing from it runs the steps that are left and appends their frames: the finished trajectory has the frames
of an uninterrupted run, none repeated.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

RESTART_SUFFIX = '.restart.npz'
FRAME_ARRAYS = ('positions', 'cells', 'energies', 'forces', 'stress', 'temperatures', 'times', 'steps', 'velocities')
#: MD parameters that a continuation must share with the run it continues (``steps`` may grow).
CONTINUED_PARAMETERS = ('temperature', 'timestep', 'sample_interval', 'thermostat', 'seed')


class MdRestart:
    """The state of an MD cut between two steps: frames so far, atoms, random generator and thermostat."""

    def __init__(
        self,
        frames: dict[str, np.ndarray],
        step: int,
        positions: np.ndarray,
        momenta: np.ndarray,
        rng_state: dict[str, Any],
        thermostat: dict[str, np.ndarray],
        parameters: dict[str, Any],
    ) -> None:
        self.frames = frames
        self.step = step
        self.positions = positions
        self.momenta = momenta
        self.rng_state = rng_state
        self.thermostat = thermostat
        self.parameters = parameters

    def is_finite(self) -> bool:
        """Whether the atoms and every frame are free of NaN and infinities (else a continuation is pointless)."""
        arrays = [self.positions, self.momenta, *self.frames.values(), *self.thermostat.values()]
        return all(np.isfinite(array).all() for array in arrays)

    def mismatch(self, parameters: dict[str, Any], natoms: int) -> str | None:
        """Why this restart cannot continue an MD with ``parameters`` on ``natoms`` atoms, or ``None``."""
        if len(self.positions) != natoms:
            return f'the restart has {len(self.positions)} atoms, the structure {natoms}'
        changed = [name for name in CONTINUED_PARAMETERS if self.parameters.get(name) != parameters.get(name)]
        if changed:
            return f'the MD parameters {changed} differ from those of the run it continues'
        if self.step >= int(parameters['steps']):
            return f'the restart is at step {self.step}, not before the last step {parameters["steps"]}'
        return None

    def save(self, path: Path) -> None:
        """Write the restart file ``path`` (the caller makes it atomic)."""
        arrays = {f'frame_{name}': np.asarray(values) for name, values in self.frames.items()}
        arrays.update({f'thermostat_{name}': np.asarray(values) for name, values in self.thermostat.items()})
        arrays.update(
            state_step=np.asarray(self.step),
            state_positions=self.positions,
            state_momenta=self.momenta,
            state_rng=np.asarray(json.dumps(self.rng_state)),
            parameters=np.asarray(json.dumps(self.parameters)),
        )
        with open(path, 'wb') as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path | BinaryIO) -> MdRestart:
        """Read a restart file written by :meth:`save`; ``ValueError`` when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = dict(npz)
            return cls(
                frames={name: arrays[f'frame_{name}'] for name in FRAME_ARRAYS},
                step=int(arrays['state_step']),
                positions=arrays['state_positions'],
                momenta=arrays['state_momenta'],
                rng_state=json.loads(str(arrays['state_rng'])),
                thermostat={
                    key.removeprefix('thermostat_'): value
                    for key, value in arrays.items()
                    if key.startswith('thermostat_')
                },
                parameters=json.loads(str(arrays['parameters'])),
            )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exception:
            raise ValueError(f'`{path}` is not a readable MD restart file: {exception}') from exception
