#!/usr/bin/env python
"""Stand-in for VASP that wrote this registry's outputs (``vasprun.xml``, ``OUTCAR``, ``CONTCAR``, stdout).

It reads INCAR/POSCAR in the working directory, moves the atoms with a Lennard-Jones model (static, steepest-descent
relaxation or velocity-Verlet MD, as IBRION/NSW ask) and writes the files in the layout VASP 6 writes them.
The POSCAR comment (the structure label, which mock-vasp leaves out of its input hash) picks a failure to imitate:
``walltime`` (MD or relaxation stopped after two steps), ``zpotrf``, ``edddav``, ``subspace``, ``wfinit``,
``too_close`` or ``nelm`` (see ``FAILURES``).
To add a registry entry, run the tests with ``MOCK_VASP_VASP_CMD=<this file>``: mock-vasp calls it for inputs it does
not know and stores inputs and outputs under ``registry/<hash>`` (rename the folder to say what it is).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase import Atoms, io
from ase.calculators.lj import LennardJones
from ase.units import fs, kB
from parsevasp.incar import Incar

from aiida_crystalgan.engines.vasp.calculation import read_contcar_velocities

KBAR_PER_EV_A3 = 1602.1766208
OFFSET_PER_ATOM = -10.0  # eV, makes the model energies look like VASP totals
MASSES = {'Nb': 92.906, 'O': 16.0, 'Si': 28.085}

FAILURES = {  # label: (condition on the INCAR under which VASP fails, message VASP prints)
    'zpotrf': (lambda incar: incar.get('isym', 2) != 0, ' LAPACK: Routine ZPOTRF failed!'),
    'edddav': (
        lambda incar: str(incar.get('algo')).lower() != 'all',
        ' Error EDDDAV: Call to ZHEGV failed. Returncode =   7 1  12',
    ),
    'subspace': (
        lambda incar: str(incar.get('algo')).lower() == 'fast',
        ' ERROR in subspace rotation PSSYEVX: not enough eigenvalues found',
    ),
    'wfinit': (
        lambda incar: float(incar.get('encut', 0)) <= 400,
        ' WARNING: the orbitals are linearly dependent at WFINIT (random-number initialisation)',
    ),
    'too_close': (
        lambda incar: True,
        ' The distance between some ions is very small. Please check the '
        'nearest-neighbor list in the OUTCAR file.\n LAPACK: Routine ZPOTRF failed!',
    ),
}


class Run:
    """The ionic steps of one run and the files they become."""

    def __init__(self, incar: dict, atoms: Atoms, label: str, velocities: np.ndarray | None):
        self.incar, self.atoms, self.label = incar, atoms, label
        self.atoms.calc = LennardJones(sigma=2.6, epsilon=0.3, rc=5.5, smooth=True)
        self.nelm = int(incar.get('nelm', 60))
        self.steps: list[dict] = []
        self.error = ''
        self.finished = True
        self.velocities = velocities

    def step(self, nscf: int = 6, temperature: float | None = None) -> None:
        atoms = self.atoms
        energy = atoms.get_potential_energy() + OFFSET_PER_ATOM * len(atoms)
        self.steps.append(
            {
                'cell': atoms.cell.array.copy(),
                'frac': atoms.get_scaled_positions(wrap=False),
                'forces': atoms.get_forces(),
                'stress': -atoms.get_stress(voigt=False) * KBAR_PER_EV_A3,
                'energy': energy,
                'nscf': nscf,
                'temperature': temperature,
            }
        )

    def run(self) -> None:
        incar = self.incar
        nsw, ibrion = int(incar.get('nsw', 0)), int(incar.get('ibrion', -1 if int(incar.get('nsw', 0)) < 1 else 0))
        failure = FAILURES.get(self.label)
        if failure and failure[0](incar):
            self.error, self.finished = failure[1], False
            return
        if self.label == 'nelm' and str(incar.get('algo')).lower() == 'fast':
            self.step(nscf=self.nelm)
            return
        if nsw < 1 or ibrion < 0:
            self.step()
        elif ibrion == 0:
            self.molecular_dynamics(nsw)
        else:
            self.relax(nsw, abs(float(incar.get('ediffg', -0.05))))

    def relax(self, nsw: int, fmax: float) -> None:
        for index in range(nsw):
            if self.label == 'walltime' and index == 2:  # killed by the wall clock after two ionic steps
                self.finished = False
                break
            self.step()
            forces = self.steps[-1]['forces']
            if np.linalg.norm(forces, axis=1).max() < fmax:
                break
            self.atoms.positions += 0.02 * forces

    def molecular_dynamics(self, nsw: int) -> None:
        atoms, dt = self.atoms, float(self.incar['potim']) * fs
        masses = np.array([MASSES[symbol] for symbol in atoms.get_chemical_symbols()])
        atoms.set_masses(masses)
        if self.velocities is None:
            rng = np.random.default_rng(0)
            momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses)[:, None]
            atoms.set_momenta(momenta - momenta.mean(axis=0))
            temperature = atoms.get_kinetic_energy() / (1.5 * (len(atoms) - 1) * kB)
            atoms.set_momenta(atoms.get_momenta() * np.sqrt(float(self.incar['tebeg']) / temperature))
        else:
            atoms.set_velocities(self.velocities / fs)
        stop = 2 if self.label == 'walltime' and self.velocities is None else nsw
        for index in range(nsw):
            if index == stop:
                self.finished = False
                break
            self.step(temperature=atoms.get_kinetic_energy() / (1.5 * (len(atoms) - 1) * kB))
            forces = atoms.get_forces()
            atoms.set_momenta(atoms.get_momenta() + 0.5 * dt * forces)
            atoms.positions += dt * atoms.get_velocities()
            atoms.set_momenta(atoms.get_momenta() + 0.5 * dt * atoms.get_forces())

    # --- files -------------------------------------------------------------------------------------------------
    def species(self) -> tuple[list[str], list[int]]:
        symbols = self.atoms.get_chemical_symbols()
        unique = list(dict.fromkeys(symbols))
        return unique, [symbols.count(symbol) for symbol in unique]

    def stdout(self) -> str:
        lines = [
            ' running    1 mpi-ranks, on    1 nodes',
            ' vasp.6.4.2 20Jul23 (build Aug 01 2023) complex',
            f' POSCAR found :  {len(self.species()[0])} types and {len(self.atoms)} ions',
            ' POSCAR, INCAR and KPOINTS ok, starting setup',
            ' WAVECAR not read',
            ' entering main loop',
            '       N       E                     dE             d eps       ncg     rms          rms(c)',
        ]
        if self.error:
            lines += ['DAV:   1     0.185373542339E+03    0.18537E+03   -0.10373E+04   128   0.922E+02', self.error]
        for index, step in enumerate(self.steps, start=1):
            for scf in range(1, step['nscf'] + 1):
                lines.append(
                    f'DAV: {scf:3d}    {step["energy"] + 0.1 / scf:.12E}   -0.1E-0{min(scf, 9)}   '
                    f'-0.1E-0{min(scf, 9)}    96   0.1E-01'
                )
            if step['temperature'] is None:
                lines.append(f'{index:4d} F= {step["energy"]:.8E} E0= {step["energy"]:.8E}  d E =0.0')
            else:
                lines.append(
                    f'{index:4d} T= {step["temperature"]:6.0f}. E= {step["energy"]:.8E} '
                    f'F= {step["energy"]:.8E} E0= {step["energy"]:.8E}'
                )
        return '\n'.join(lines) + '\n'

    def outcar(self) -> str:
        ibrion = int(self.incar.get('ibrion', -1))
        lines = [
            ' vasp.6.4.2 20Jul23 (build Aug 01 2023) complex',
            '',
            f'   NELM   = {self.nelm:6d};   NELMIN=  2; NELMDL= -5     elect.iteration',
            f'   IBRION = {ibrion:6d}    ionic relax: 0-MD 1-quasi-New 2-CG',
            f'   NSW    = {int(self.incar.get("nsw", 0)):6d}    number of steps for IOM',
            ' k-points           NKPTS =      4   k-points in BZ     NKDIM =      4   number of bands    '
            'NBANDS=     16',
            '',
        ]
        if self.error:
            lines.append(f'{"-" * 39} Iteration      1(   1)  {"-" * 39}')
        for index, step in enumerate(self.steps, start=1):
            for scf in range(1, step['nscf'] + 1):
                lines.append(f'{"-" * 39} Iteration {index:6d}({scf:4d})  {"-" * 39}')
            lines.append(f'  free  energy   TOTEN  = {step["energy"]:18.8f} eV')
            if step['temperature'] is not None:
                ekin = 1.5 * (len(self.atoms) - 1) * kB * step['temperature']
                lines.append(f'  kinetic energy EKIN   = {ekin:16.6f}  (temperature {step["temperature"]:8.2f} K)')
        if self.finished:
            lines += [
                '',
                ' General timing and accounting informations for this job:',
                ' ========================================================',
                '',
                '                  Total CPU time used (sec):        0.421',
                '                            User time (sec):        0.398',
                '                          System time (sec):        0.023',
                '                         Elapsed time (sec):        0.455',
                '',
                '                   Maximum memory used (kb):       51200.',
                '                   Average memory used (kb):          N/A',
            ]
        return '\n'.join(lines) + '\n'

    def vasprun(self) -> str:
        unique, counts = self.species()
        incar = ''.join(
            f'  <i name="{key.upper()}">{value}</i>\n'
            for key, value in self.incar.items()
            if not isinstance(value, list)
        )
        atoms = ''.join(
            f'    <rc><c>{symbol:2s}</c><c>{unique.index(symbol) + 1:4d}</c></rc>\n'
            for symbol in self.atoms.get_chemical_symbols()
        )
        types = ''.join(
            f'    <rc><c>{count:4d}</c><c>{symbol:2s}</c><c>{MASSES[symbol]:16.8f}</c>'
            f'<c>{5.0:16.8f}</c><c>  PAW_PBE {symbol} fake  </c></rc>\n'
            for symbol, count in zip(unique, counts)
        )
        xml = [
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n<modeling>\n <generator>\n'
            '  <i name="program" type="string">vasp </i>\n'
            '  <i name="version" type="string">6.4.2  </i>\n'
            '  <i name="subversion" type="string">20Jul23 (build Aug 01 2023) complex  serial </i>\n'
            '  <i name="platform" type="string">LinuxGNU </i>\n </generator>\n'
            f' <incar>\n{incar} </incar>\n'
            ' <parameters>\n  <separator name="electronic" >\n'
            f'   <i type="int" name="NELM">{self.nelm:6d}</i>\n'
            f'   <i type="int" name="NBANDS">    16</i>\n   <i type="int" name="ISPIN">     1</i>\n'
            '  </separator>\n  <separator name="ionic" >\n'
            f'   <i type="int" name="NSW">{int(self.incar.get("nsw", 0)):6d}</i>\n'
            f'   <i type="int" name="IBRION">{int(self.incar.get("ibrion", -1)):6d}</i>\n'
            '  </separator>\n </parameters>\n'
            f' <atominfo>\n  <atoms>{len(self.atoms):8d} </atoms>\n  <types>{len(unique):8d} </types>\n'
            '  <array name="atoms" >\n   <dimension dim="1">ion</dimension>\n'
            '   <field type="string">element</field>\n   <field type="int">atomtype</field>\n'
            f'   <set>\n{atoms}   </set>\n  </array>\n'
            '  <array name="atomtypes" >\n   <dimension dim="1">type</dimension>\n'
            '   <field type="int">atomspertype</field>\n   <field type="string">element</field>\n'
            '   <field>mass</field>\n   <field>valence</field>\n   <field type="string">pseudopotential</field>\n'
            f'   <set>\n{types}   </set>\n  </array>\n </atominfo>\n',
            _structure(self.atoms.cell.array, self.atoms.get_scaled_positions(wrap=False), ' name="initialpos"'),
        ]
        for step in self.steps:
            xml.append(' <calculation>\n')
            for scf in range(1, step['nscf'] + 1):
                xml.append(
                    '  <scstep>\n   <energy>\n'
                    + _energies(step['energy'] + 0.1 / scf, '    ')
                    + '   </energy>\n  </scstep>\n'
                )
            xml.append(
                _structure(step['cell'], step['frac'], '', '  ')
                + _varray('forces', step['forces'], '  ')
                + _varray('stress', step['stress'], '  ')
                + '  <energy>\n'
                + _energies(step['energy'], '   ')
                + '  </energy>\n </calculation>\n'
            )
        if self.finished:
            xml.append(
                _structure(self.atoms.cell.array, self.atoms.get_scaled_positions(wrap=False), ' name="finalpos"')
                + '</modeling>\n'
            )
        return ''.join(xml)

    def contcar(self) -> str:
        unique, counts = self.species()
        lines = [
            self.label,
            '   1.00000000000000',
            *(f'  {v[0]:20.16f}{v[1]:20.16f}{v[2]:20.16f}' for v in self.atoms.cell.array),
            '   ' + '   '.join(unique),
            '   ' + '   '.join(str(count) for count in counts),
            'Direct',
            *(f'  {p[0]:18.16f}  {p[1]:18.16f}  {p[2]:18.16f}' for p in self.atoms.get_scaled_positions()),
        ]
        if int(self.incar.get('ibrion', -1)) == 0:
            lines.append('')
            lines += [f'  {v[0]:.8E}  {v[1]:.8E}  {v[2]:.8E}' for v in self.atoms.get_velocities() * fs]
        return '\n'.join(lines) + '\n'


def _structure(cell: np.ndarray, frac: np.ndarray, name: str, indent: str = ' ') -> str:
    return (
        f'{indent}<structure{name} >\n{indent} <crystal>\n'
        + _varray('basis', cell, indent + '  ')
        + f'{indent}  <i name="volume">{abs(np.linalg.det(cell)):16.8f} </i>\n'
        + _varray('rec_basis', np.linalg.inv(cell).T, indent + '  ')
        + f'{indent} </crystal>\n'
        + _varray('positions', frac, indent + ' ')
        + f'{indent}</structure>\n'
    )


def _varray(name: str, rows: np.ndarray, indent: str) -> str:
    body = ''.join(f'{indent} <v>' + ''.join(f'{value:16.8f}' for value in row) + ' </v>\n' for row in rows)
    return f'{indent}<varray name="{name}" >\n{body}{indent}</varray>\n'


def _energies(energy: float, indent: str) -> str:
    return ''.join(
        f'{indent}<i name="{name}">{energy:16.8f} </i>\n' for name in ('e_fr_energy', 'e_wo_entrp', 'e_0_energy')
    )


def main() -> None:
    incar = {key.lower(): value for key, value in Incar(file_path='INCAR', validate_tags=False).get_dict().items()}
    poscar = Path('POSCAR').read_text(encoding='utf8')
    atoms = io.read('POSCAR', format='vasp')
    label = poscar.splitlines()[0].split('Old comment:')[-1].strip()  # `# Compound: Nb2. Old comment: <label>`
    run = Run(incar, atoms, label, read_contcar_velocities(poscar, len(atoms)))
    run.run()
    Path('OUTCAR').write_text(run.outcar(), encoding='utf8')
    Path('vasprun.xml').write_text(run.vasprun(), encoding='utf8')
    Path('CONTCAR').write_text(run.contcar(), encoding='utf8')
    sys.stdout.write(run.stdout())


if __name__ == '__main__':
    main()
