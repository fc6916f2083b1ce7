"""The dataset file: many structures with optional energies, forces and stress in one compressed HDF5 file.

Layout (format version 2), all arrays concatenated over structures and indexed by ``offsets``:

====================  =================  ============================================================
dataset               shape / dtype      meaning
====================  =================  ============================================================
``offsets``           (n + 1,) int64     atom ``offsets[i]:offsets[i + 1]`` belong to structure ``i``
``numbers``           (n_atoms,) int16   atomic numbers
``positions``         (n_atoms, 3) f8    Cartesian positions, Å
``forces``            (n_atoms, 3) f8    forces, eV/Å (NaN where unknown)
``cells``             (n, 3, 3) f8       lattice vectors as rows, Å
``energies``          (n,) f8            total energies, eV (NaN where unknown)
``stress``            (n, 3, 3) f8       stress, eV/Å^3 (NaN where unknown)
``sources``           (n,) str           where each structure came from (node UUID, database id, file)
``labels``            (n,) str           free-form label of each structure
``roles``             (n,) enum int8     role of each structure, one of :data:`ROLES` (new in version 2)
====================  =================  ============================================================

File attributes: ``format_version`` and ``metadata`` (a JSON string). Reading is lazy: ``DataFile`` opens the file
and reads one structure per index, so a dataset much larger than memory can be iterated. Files of version 1 (no
``roles``) still read: every structure is ``labelled``.

Roles: a ``minimum`` is a structure at a local minimum of the energy (a relaxed known phase, a quenched MD snapshot
with vanishing forces and no imaginary phonon mode): what the critic sees as real data. A ``labelled`` structure is
any configuration with energy and forces (an MD frame, a relaxation step): what the physics head learns from.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

MINIMUM = 'minimum'
LABELLED = 'labelled'
#: The roles a structure can have in a dataset; their index is the value stored in the file.
ROLES = (MINIMUM, LABELLED)
_STRING = h5py.string_dtype(encoding='utf-8')
_CHUNK = 4096
_ROLE_DTYPE = h5py.enum_dtype({role: code for code, role in enumerate(ROLES)}, basetype='i1')


def check_role(role: str) -> str:
    """Return ``role`` when it is one of :data:`ROLES`, else raise ``ValueError``."""
    if role not in ROLES:
        raise ValueError(f'unknown structure role {role!r}: choose one of {", ".join(ROLES)}')
    return role


@dataclass
class StructureRecord:
    """One periodic structure with optional energy (eV), forces (eV/Å) and stress (eV/Å^3), and its ``role``."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    source: str = ''
    label: str = ''
    role: str = LABELLED

    def __post_init__(self) -> None:
        check_role(self.role)
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=float).reshape(-1, 3)
        self.cell = np.asarray(self.cell, dtype=float).reshape(3, 3)
        if len(self.numbers) != len(self.positions):
            raise ValueError(f'{len(self.numbers)} atomic numbers but {len(self.positions)} positions')
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=float).reshape(-1, 3)
            if len(self.forces) != len(self.numbers):
                raise ValueError(f'{len(self.forces)} force vectors for {len(self.numbers)} atoms')
        if self.stress is not None:
            self.stress = np.asarray(self.stress, dtype=float).reshape(3, 3)
        if self.energy is not None:
            self.energy = float(self.energy)

    @property
    def num_atoms(self) -> int:
        return len(self.numbers)

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))

    def to_ase(self):
        """Return an ``ase.Atoms`` with a single-point calculator holding energy, forces and stress."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=True)
        results: dict[str, Any] = {}
        if self.energy is not None:
            results['energy'] = self.energy
        if self.forces is not None:
            results['forces'] = self.forces
        if self.stress is not None:
            results['stress'] = self.stress
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info.update({'source': self.source, 'label': self.label, 'role': self.role})
        return atoms

    def to_pymatgen(self):
        """Return a ``pymatgen.core.Structure`` (energy and forces as properties)."""
        from pymatgen.core import Lattice, Structure

        site_properties = {'forces': self.forces.tolist()} if self.forces is not None else None
        structure = Structure(
            Lattice(self.cell),
            self.numbers.tolist(),
            self.positions,
            coords_are_cartesian=True,
            site_properties=site_properties,
        )
        structure.properties = {'energy': self.energy, 'source': self.source, 'label': self.label, 'role': self.role}
        return structure

    @classmethod
    def from_ase(cls, atoms, source: str = '', label: str = '', role: str | None = None) -> StructureRecord:
        """Build a record from ``ase.Atoms``, taking energy/forces/stress from its calculator when present.

        ``source``, ``label`` and ``role`` default to those in ``atoms.info`` (as written by :meth:`to_ase`), the role
        to ``labelled``.
        """
        energy = forces = stress = None
        if atoms.calc is not None:
            results = getattr(atoms.calc, 'results', {})
            energy = results.get('energy', results.get('free_energy'))
            forces = results.get('forces')
            if results.get('stress') is not None:
                from ase.stress import voigt_6_to_full_3x3_stress

                raw = np.asarray(results['stress'])
                stress = voigt_6_to_full_3x3_stress(raw) if raw.shape == (6,) else raw
        return cls(
            numbers=atoms.get_atomic_numbers(),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.cell[:]),
            energy=energy,
            forces=forces,
            stress=stress,
            source=source or str(atoms.info.get('source', '')),
            label=label or str(atoms.info.get('label', '')),
            role=role or str(atoms.info.get('role', LABELLED)),
        )

    @classmethod
    def from_pymatgen(
        cls,
        structure,
        energy: float | None = None,
        forces=None,
        stress=None,
        source: str = '',
        label: str = '',
        role: str = LABELLED,
    ) -> StructureRecord:
        """Build a record from an ordered ``pymatgen.core.Structure``."""
        if not structure.is_ordered:
            raise ValueError(f'structure {structure.composition.reduced_formula} is disordered (partial occupancies)')
        return cls(
            numbers=[site.specie.Z for site in structure],
            positions=structure.cart_coords,
            cell=structure.lattice.matrix,
            energy=energy,
            forces=forces,
            stress=stress,
            source=source,
            label=label,
            role=role,
        )


class DataFileWriter:
    """Append structures to a new dataset file chunk by chunk, never holding the whole set in memory."""

    def __init__(self, target: str | Path | IO[bytes], metadata: dict[str, Any] | None = None) -> None:
        self._file = h5py.File(target, 'w')
        self._file.attrs['format_version'] = FORMAT_VERSION
        self._file.attrs['metadata'] = json.dumps(metadata or {})
        self._buffer: list[StructureRecord] = []
        self._num_structures = 0
        self._num_atoms = 0
        create = self._file.create_dataset
        opts = {'compression': 'gzip', 'compression_opts': 4, 'shuffle': True}
        create('offsets', shape=(1,), maxshape=(None,), dtype=np.int64, chunks=(_CHUNK,), data=[0])
        create('numbers', shape=(0,), maxshape=(None,), dtype=np.int16, chunks=(_CHUNK,), **opts)
        create('positions', shape=(0, 3), maxshape=(None, 3), dtype=np.float64, chunks=(_CHUNK, 3), **opts)
        create('forces', shape=(0, 3), maxshape=(None, 3), dtype=np.float64, chunks=(_CHUNK, 3), **opts)
        create('cells', shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float64, chunks=(_CHUNK, 3, 3), **opts)
        create('energies', shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(_CHUNK,), **opts)
        create('stress', shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float64, chunks=(_CHUNK, 3, 3), **opts)
        create('sources', shape=(0,), maxshape=(None,), dtype=_STRING, chunks=(_CHUNK,), **opts)
        create('labels', shape=(0,), maxshape=(None,), dtype=_STRING, chunks=(_CHUNK,), **opts)
        create('roles', shape=(0,), maxshape=(None,), dtype=_ROLE_DTYPE, chunks=(_CHUNK,), **opts)

    def append(self, record: StructureRecord) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= _CHUNK:
            self._flush()

    def extend(self, records: Iterable[StructureRecord]) -> None:
        for record in records:
            self.append(record)

    def _flush(self) -> None:
        if not self._buffer:
            return
        records, self._buffer = self._buffer, []
        nan3 = np.full((3, 3), np.nan)
        sizes = np.array([r.num_atoms for r in records], dtype=np.int64)
        offsets = self._num_atoms + np.cumsum(sizes)
        self._extend('offsets', offsets)
        self._extend('numbers', np.concatenate([r.numbers for r in records]).astype(np.int16))
        self._extend('positions', np.concatenate([r.positions for r in records]))
        self._extend(
            'forces',
            np.concatenate([r.forces if r.forces is not None else np.full((r.num_atoms, 3), np.nan) for r in records]),
        )
        self._extend('cells', np.stack([r.cell for r in records]))
        self._extend('energies', np.array([np.nan if r.energy is None else r.energy for r in records]))
        self._extend('stress', np.stack([nan3 if r.stress is None else r.stress for r in records]))
        self._extend('sources', np.array([r.source for r in records], dtype=object))
        self._extend('labels', np.array([r.label for r in records], dtype=object))
        self._extend('roles', np.array([ROLES.index(r.role) for r in records], dtype=np.int8))
        self._num_structures += len(records)
        self._num_atoms = int(offsets[-1])

    def _extend(self, name: str, values: np.ndarray) -> None:
        dataset = self._file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    def close(self) -> None:
        self._flush()
        self._file.close()

    def __enter__(self) -> DataFileWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class DataFile:
    """Lazy read access to a dataset file: ``len``, indexing and iteration yield ``StructureRecord`` objects."""

    _BLOCK = 4096

    def __init__(self, source: str | Path | IO[bytes]) -> None:
        try:
            self._file = h5py.File(source, 'r')
        except OSError as exception:
            raise ValueError(f'`{source}` is not a crystalgan dataset file: {exception}') from exception
        version = self._file.attrs.get('format_version')
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f'unsupported dataset file format version {version} (readable: '
                f'{", ".join(map(str, READABLE_VERSIONS))})'
            )
        self.format_version = int(version)
        self._offsets = self._file['offsets'][:]
        self.metadata: dict[str, Any] = json.loads(self._file.attrs.get('metadata', '{}'))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @functools.cached_property
    def _per_structure(self) -> dict[str, Any]:
        """The per-structure arrays, read once (small next to the per-atom ones)."""
        f = self._file
        return {
            'energies': f['energies'][:],
            'cells': f['cells'][:],
            'stress': f['stress'][:],
            'sources': f['sources'].asstr()[:],
            'labels': f['labels'].asstr()[:],
            'roles': self.roles(),
        }

    def _record(self, index: int, numbers: np.ndarray, positions: np.ndarray, forces: np.ndarray) -> StructureRecord:
        arrays = self._per_structure
        energy, stress = arrays['energies'][index], arrays['stress'][index]
        return StructureRecord(
            numbers=numbers,
            positions=positions,
            cell=arrays['cells'][index],
            energy=None if np.isnan(energy) else float(energy),
            forces=None if np.isnan(forces).any() else forces,
            stress=None if np.isnan(stress).any() else stress,
            source=arrays['sources'][index],
            label=arrays['labels'][index],
            role=arrays['roles'][index],
        )

    def __getitem__(self, index: int) -> StructureRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f'structure index {index} out of range for a dataset of {len(self)}')
        index %= len(self)
        start, stop = self._offsets[index], self._offsets[index + 1]
        f = self._file
        return self._record(index, f['numbers'][start:stop], f['positions'][start:stop], f['forces'][start:stop])

    def __iter__(self) -> Iterator[StructureRecord]:
        """Read the per-atom arrays block by block, so that every compressed chunk is decompressed once."""
        f, offsets = self._file, self._offsets
        for first in range(0, len(self), self._BLOCK):
            last = min(first + self._BLOCK, len(self))
            base, end = offsets[first], offsets[last]
            numbers, positions, forces = f['numbers'][base:end], f['positions'][base:end], f['forces'][base:end]
            for index in range(first, last):
                start, stop = offsets[index] - base, offsets[index + 1] - base
                yield self._record(index, numbers[start:stop], positions[start:stop], forces[start:stop])

    def energies(self) -> np.ndarray:
        """All total energies in eV (NaN where unknown), read in one go."""
        return self._file['energies'][:]

    def num_atoms(self) -> np.ndarray:
        """Number of atoms of every structure."""
        return np.diff(self._offsets)

    def roles(self) -> np.ndarray:
        """The role name of every structure (object array); ``labelled`` throughout in a file of format version 1."""
        return read_roles(self._file)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_roles(handle: h5py.File) -> np.ndarray:
    """The role name of every structure of an open dataset file (object array), ``labelled`` where it has none."""
    if 'roles' not in handle:
        return np.full(len(handle['offsets']) - 1, LABELLED, dtype=object)
    codes = handle['roles'][:]
    if codes.size and not 0 <= codes.min() <= codes.max() < len(ROLES):
        raise ValueError(f'invalid role codes in the dataset file: {sorted(set(codes.tolist()))}')
    return np.asarray(ROLES, dtype=object)[codes]


def write_datafile(
    target: str | Path | IO[bytes], records: Iterable[StructureRecord], metadata: dict[str, Any] | None = None
) -> None:
    """Write ``records`` to a new dataset file at ``target`` (a path or a binary file object)."""
    with DataFileWriter(target, metadata) as writer:
        writer.extend(records)


def read_datafile(source: str | Path | IO[bytes]) -> list[StructureRecord]:
    """Read every structure of a dataset file into memory."""
    with DataFile(source) as datafile:
        return list(datafile)
