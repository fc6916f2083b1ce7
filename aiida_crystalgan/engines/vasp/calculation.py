"""``VaspCalculation`` that can start molecular dynamics from given velocities (an MD restart)."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida_vasp.calcs.vasp import VaspCalculation

from aiida_crystalgan.exit_codes import define_exit_codes
from aiida_crystalgan.parsers.vasp import NAMED_EXIT_CODES


class VaspMdCalculation(VaspCalculation):
    """aiida-vasp's ``VaspCalculation`` with an optional ``velocities`` input written after the POSCAR positions.

    Its parser (``crystalgan.vasp``) names the VASP errors that the restart handlers act on as exit codes.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'velocities',
            valid_type=orm.ArrayData,
            required=False,
            help='Array `velocities` (N, 3), Cartesian Å/fs, e.g. read from the CONTCAR of an interrupted MD.',
        )
        spec.inputs['metadata']['options']['parser_name'].default = 'crystalgan.vasp'
        define_exit_codes(spec, *NAMED_EXIT_CODES)

    def write_poscar(self, dst: str) -> None:
        """Write the POSCAR and, when given, the velocity block (a blank line then one Cartesian vector per site)."""
        super().write_poscar(dst)
        if 'velocities' not in self.inputs:
            return
        velocities = self.inputs.velocities.get_array('velocities')
        expected = (len(self.inputs.structure.sites), 3)
        if velocities.shape != expected:
            raise ValueError(f'`velocities` has shape {velocities.shape}, expected {expected}')
        with open(dst, 'a', encoding='utf8') as handle:
            handle.write('\n' + '\n'.join(' '.join(f'{value: .10E}' for value in row) for row in velocities) + '\n')


def read_contcar_velocities(content: str, natoms: int) -> np.ndarray | None:
    """Return the velocity block (N, 3) of a VASP CONTCAR, or ``None`` when it has none."""
    lines = content.splitlines()
    index = 7  # comment, scale, 3 lattice vectors, species, counts
    if lines[index].strip()[:1].lower() == 's':  # selective dynamics
        index += 1
    index += 1 + natoms  # coordinate mode line, then positions
    while index < len(lines) and not lines[index].strip():
        index += 1
    if lines[index : index + 1] and lines[index].strip()[:1].lower() in ('c', 'k'):
        index += 1  # optional `Cartesian` line of the velocity block
    block = [line.split()[:3] for line in lines[index : index + natoms]]
    if len(block) < natoms or any(len(row) < 3 for row in block):
        return None
    return np.array(block, dtype=float)
