"""``CrystalDatasetData``: many structures with energies, forces and stress, stored as one HDF5 file in the node.

The structures live in the node repository as ``dataset.h5`` (format of :mod:`aiida_crystalgan.io.datafile`); the
attributes hold what one wants to query without opening the file: size, elements, compositions, role counts, energy
statistics, metadata of the import and, optionally, deterministic train/validation/test splits and k-fold
cross-validation folds.

Each structure has a role (:data:`aiida_crystalgan.io.datafile.ROLES`): ``minimum`` (a local minimum of the energy,
real data for the critic) or ``labelled`` (a configuration with energy and forces, such as an MD frame or a relaxation
step, for the physics head).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from aiida import orm
from aiida.common.exceptions import ModificationNotAllowed

from aiida_crystalgan.io.datafile import (
    LABELLED,
    MINIMUM,
    ROLES,
    DataFile,
    DataFileWriter,
    StructureRecord,
    check_role,
    read_roles,
)

__all__ = (
    'CrystalDatasetData',
    'SPLIT_NAMES',
    'compute_folds',
    'compute_splits',
    'reduced_formula',
    'to_record',
)

FILENAME = 'dataset.h5'
SPLIT_NAMES = ('train', 'validation', 'test')
_SPLIT_ALIASES = {'val': 'validation', 'valid': 'validation'}
_CHUNK_ATOMS = 1 << 20


@lru_cache(maxsize=65536)
def _formula_from_counts(counts: tuple[tuple[int, int], ...]) -> str:
    from pymatgen.core import Composition, Element

    return Composition({Element.from_Z(z): n for z, n in counts}).reduced_formula


def reduced_formula(numbers: Sequence[int] | np.ndarray) -> str:
    """Reduced formula (pymatgen convention, e.g. ``Nb2O5``) of a list of atomic numbers."""
    values, counts = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
    return _formula_from_counts(tuple(zip(values.tolist(), counts.tolist())))


def to_record(
    structure: Any,
    energy: float | None = None,
    forces: Any = None,
    stress: Any = None,
    source: str = '',
    label: str = '',
    role: str | None = None,
) -> StructureRecord:
    """Convert an ``orm.StructureData``, pymatgen ``Structure``, ``ase.Atoms`` or record to a ``StructureRecord``.

    Explicit ``energy``/``forces``/``stress``/``role`` win over those carried by the structure (an ASE calculator,
    ``atoms.info['role']``, a record's role). ``source`` defaults to the UUID of a ``StructureData``; ``role`` to
    ``labelled``.
    """
    from ase import Atoms
    from pymatgen.core import Structure

    if isinstance(structure, StructureRecord):
        record = structure
    elif isinstance(structure, orm.StructureData):
        if not all(kind.is_alloy is False and kind.has_vacancies is False for kind in structure.kinds):
            raise ValueError(f'StructureData<{structure.uuid}> has alloy or vacancy kinds (disordered)')
        record = StructureRecord.from_ase(structure.get_ase(), source=source or structure.uuid, label=label)
    elif isinstance(structure, Structure):
        record = StructureRecord.from_pymatgen(structure, source=source, label=label)
    elif isinstance(structure, Atoms):
        record = StructureRecord.from_ase(structure, source=source, label=label)
    else:
        raise TypeError(
            f'cannot convert {type(structure).__name__} to a structure record: give a StructureData, '
            'a pymatgen Structure or an ase Atoms'
        )
    return StructureRecord(
        numbers=record.numbers,
        positions=record.positions,
        cell=record.cell,
        energy=record.energy if energy is None else energy,
        forces=record.forces if forces is None else forces,
        stress=record.stress if stress is None else stress,
        source=source or record.source,
        label=label or record.label,
        role=role or record.role,
    )


def _group_sizes(keys: Sequence[str] | None, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the structure indices, keeping structures with the same key together; return the index groups."""
    if keys is None:
        return [np.array([i]) for i in rng.permutation(size)]
    unique, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    order = np.argsort(inverse, kind='stable')
    boundaries = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    groups = np.split(order, boundaries)
    return [groups[i] for i in rng.permutation(len(unique))]


def compute_splits(
    size: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, keys: Sequence[str] | None = None
) -> dict[str, list[int]]:
    """Deterministic train/validation/test split of ``range(size)`` with ``fractions``, seeded.

    With ``keys`` (one per structure, e.g. its source trajectory or composition), structures sharing a key land in
    the same split, so that correlated frames do not leak from training into validation. Shuffled groups are
    assigned to the split where their middle falls, so the fractions hold on average over seeds.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f'split fractions must be three non-negative numbers summing to 1, got {fractions}')
    groups = _group_sizes(keys, size, np.random.default_rng(seed))
    targets = np.cumsum(fractions) * size
    splits: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    assigned = 0
    for group in groups:
        which = min(int(np.searchsorted(targets, assigned + len(group) / 2, side='right')), 2)
        splits[SPLIT_NAMES[which]].extend(group.tolist())
        assigned += len(group)
    return {name: sorted(indices) for name, indices in splits.items()}


def compute_folds(size: int, k: int, seed: int = 0, keys: Sequence[str] | None = None) -> list[list[int]]:
    """Deterministic k-fold partition of ``range(size)``: the validation indices of each fold, seeded."""
    if not 2 <= k <= size:
        raise ValueError(f'the number of folds must be between 2 and the dataset size {size}, got {k}')
    groups = _group_sizes(keys, size, np.random.default_rng(seed))
    if len(groups) < k:
        raise ValueError(f'only {len(groups)} groups of structures for {k} folds')
    folds: list[list[int]] = [[] for _ in range(k)]
    for group in sorted(groups, key=len, reverse=True) if keys is not None else groups:
        smallest = min(range(k), key=lambda i: len(folds[i]))
        folds[smallest].extend(group.tolist())
    return [sorted(fold) for fold in folds]


def _summarize(handle: h5py.File) -> dict[str, Any]:
    """Queryable attributes of a dataset file, computed reading only per-structure arrays and forces by chunks.

    Raises ``ValueError`` for a file that holds no crystal: no structure, one without atoms, NaN or infinite lattice
    vectors or positions, a zero cell volume.
    """
    offsets = handle['offsets'][:]
    size = len(offsets) - 1
    if size == 0:
        raise ValueError('the dataset is empty: give at least one structure')
    sizes = np.diff(offsets)
    if (sizes == 0).any():
        raise ValueError(f'structures {np.flatnonzero(sizes == 0)[:10].tolist()} have no atoms')
    cells = handle['cells'][:]
    bad = np.flatnonzero(~np.isfinite(cells).all(axis=(1, 2)))
    if len(bad):
        raise ValueError(f'structures {bad[:10].tolist()} have NaN or infinite lattice vectors')
    bad = np.flatnonzero(np.abs(np.linalg.det(cells)) < 1e-6)
    if len(bad):
        raise ValueError(f'structures {bad[:10].tolist()} have no 3D lattice (zero cell volume): give crystals')
    positions = handle['positions']
    finite = np.concatenate(
        [
            np.isfinite(positions[start : start + _CHUNK_ATOMS]).all(axis=1)
            for start in range(0, len(positions), _CHUNK_ATOMS)
        ]
    )
    if not finite.all():
        bad = np.unique(np.searchsorted(offsets, np.flatnonzero(~finite), side='right') - 1)
        raise ValueError(f'structures {bad[:10].tolist()} have NaN or infinite positions')
    numbers = handle['numbers'][:]
    energies = handle['energies'][:]
    forces = handle['forces']
    atom_has_forces = np.concatenate(
        [~np.isnan(forces[start : start + _CHUNK_ATOMS, 0]) for start in range(0, len(numbers), _CHUNK_ATOMS)]
    )
    cumulative = np.concatenate([[0], np.cumsum(atom_has_forces)])
    num_with_forces = int((cumulative[offsets[1:]] - cumulative[offsets[:-1]] == sizes).sum())
    stress = handle['stress'][:]
    num_with_stress = int((~np.isnan(stress).any(axis=(1, 2))).sum())
    volumes_per_atom = np.abs(np.linalg.det(cells)) / sizes
    compositions = Counter(reduced_formula(numbers[offsets[i] : offsets[i + 1]]) for i in range(size))
    sources = handle['sources'].asstr()[:]
    roles = Counter(read_roles(handle).tolist())

    from ase.data import chemical_symbols

    has_energy = ~np.isnan(energies)
    attributes = {
        'size': size,
        'num_atoms_total': int(offsets[-1]),
        'num_atoms_max': int(sizes.max()),
        'elements': sorted(chemical_symbols[z] for z in np.unique(numbers)),
        'compositions': dict(sorted(compositions.items())),
        'num_with_energies': int(has_energy.sum()),
        'num_with_forces': num_with_forces,
        'num_with_stress': num_with_stress,
        'has_energies': bool(has_energy.all()),
        'has_forces': num_with_forces == size,
        'has_stress': num_with_stress == size,
        'sources_count': len({source for source in sources if source}),
        'roles': {role: roles.get(role, 0) for role in ROLES},
        'num_minima': roles.get(MINIMUM, 0),
        'num_labelled': roles.get(LABELLED, 0),
        'volume_per_atom': _stats(volumes_per_atom),
    }
    if has_energy.any():
        attributes['energy_per_atom'] = _stats(energies[has_energy] / sizes[has_energy])
    return attributes


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        'min': float(values.min()),
        'max': float(values.max()),
        'mean': float(values.mean()),
        'std': float(values.std()),
    }


def _cif_text(record: StructureRecord) -> str:
    """The CIF of ``record``, its role, source and label in comments at the top."""
    from pymatgen.io.cif import CifWriter

    comments = {'role': record.role, 'source': record.source, 'label': record.label}
    header = ''.join(f'# {key}: {" ".join(str(value).split())}\n' for key, value in comments.items())
    return header + str(CifWriter(record.to_pymatgen()))


class CrystalDatasetData(orm.Data):
    """A dataset of periodic structures with optional DFT energies (eV), forces (eV/Å) and stress (eV/Å^3).

    Build it from ``StructureRecord``s (streamed to disk chunk by chunk) or from an existing dataset file; read it
    lazily. Splits and folds are fixed at construction (a stored node is immutable): pass ``splits``/``folds`` or call
    :meth:`set_splits`/:meth:`set_folds` before storing, or derive a new node with the ``split_dataset`` calcfunction.
    """

    def __init__(
        self,
        records: Iterable[StructureRecord] | None = None,
        *,
        filepath: str | Path | None = None,
        metadata: dict[str, Any] | None = None,
        splits: Sequence[float] | None = None,
        folds: int | None = None,
        seed: int = 0,
        group_by: str | None = None,
        **kwargs,
    ) -> None:
        """Write the dataset file into the node repository and summarise it in the attributes.

        :param records: the structures, streamed to the file chunk by chunk.
        :param filepath: an existing dataset file to adopt instead of ``records``; ``metadata`` is merged into its own.
        :param metadata: small JSON-serialisable description of the origin (provider, query, options, reports).
        :param splits: train/validation/test fractions.
        :param folds: number of cross-validation folds.
        :param seed: random seed of splits and folds.
        :param group_by: keep structures sharing a ``source``, ``label`` or ``composition`` in one split or fold.
        """
        super().__init__(**kwargs)
        if (records is None) == (filepath is None):
            raise ValueError('give either `records` or `filepath`')
        metadata = dict(metadata or {})
        with tempfile.TemporaryDirectory(prefix='crystalgan-dataset-') as tmpdir:
            if filepath is not None:
                with DataFile(filepath) as datafile:
                    metadata = {**datafile.metadata, **metadata}
                path = Path(tmpdir) / FILENAME
                shutil.copyfile(filepath, path)
                with h5py.File(path, 'a') as handle:
                    handle.attrs['metadata'] = json.dumps(metadata)
            else:
                path = Path(tmpdir) / FILENAME
                with DataFileWriter(path, metadata) as writer:
                    writer.extend(records)
            with h5py.File(path, 'r') as handle:
                summary = _summarize(handle)
            self.base.repository.put_object_from_file(str(path), FILENAME)
            summary['file_size'] = path.stat().st_size
        self.base.attributes.set_many({**summary, 'metadata': metadata})
        if splits is not None:
            self.set_splits(splits, seed=seed, group_by=group_by)
        if folds is not None:
            self.set_folds(folds, seed=seed, group_by=group_by)

    @classmethod
    def from_structures(
        cls,
        structures: Sequence[Any],
        energies: Sequence[float | None] | None = None,
        forces: Sequence[Any] | None = None,
        stress: Sequence[Any] | None = None,
        sources: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        roles: Sequence[str] | str | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs,
    ) -> CrystalDatasetData:
        """Build a dataset from ``StructureData``, pymatgen ``Structure`` or ``ase.Atoms`` objects.

        The optional per-structure sequences must have one entry per structure (``None`` where unknown). ``roles`` is
        one role for all structures or one per structure; by default a structure keeps the role it carries
        (``atoms.info['role']``), else it is ``labelled``.
        """
        structures = list(structures)
        if not structures:
            raise ValueError('the dataset is empty: give at least one structure')
        if isinstance(roles, str):
            roles = [check_role(roles)] * len(structures)
        columns = {
            'energies': energies,
            'forces': forces,
            'stress': stress,
            'sources': sources,
            'labels': labels,
            'roles': roles,
        }
        for name, values in columns.items():
            if values is not None and len(values) != len(structures):
                raise ValueError(f'{len(values)} {name} for {len(structures)} structures')

        def column(name: str, index: int, default: Any = None) -> Any:
            values = columns[name]
            return default if values is None else values[index]

        records = (
            to_record(
                structure,
                energy=column('energies', i),
                forces=column('forces', i),
                stress=column('stress', i),
                source=column('sources', i, ''),
                label=column('labels', i, ''),
                role=column('roles', i),
            )
            for i, structure in enumerate(structures)
        )
        return cls(records, metadata=metadata, **kwargs)

    # Queryable properties

    @property
    def size(self) -> int:
        return self.base.attributes.get('size')

    @property
    def elements(self) -> list[str]:
        return self.base.attributes.get('elements')

    @property
    def compositions(self) -> dict[str, int]:
        return self.base.attributes.get('compositions')

    @property
    def roles(self) -> dict[str, int]:
        """Number of structures of each role; a node stored before roles existed has only ``labelled`` ones."""
        return self.base.attributes.get('roles', {MINIMUM: 0, LABELLED: self.size})

    @property
    def num_minima(self) -> int:
        return self.roles[MINIMUM]

    @property
    def num_labelled(self) -> int:
        return self.roles[LABELLED]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.base.attributes.get('metadata', {})

    # Lazy access

    @contextlib.contextmanager
    def open(self) -> Iterator[DataFile]:
        """Open the dataset file lazily: ``with node.open() as data: data[i]``."""
        with self.base.repository.open(FILENAME, 'rb') as handle, DataFile(handle) as datafile:
            yield datafile

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int | slice | Sequence[int]) -> StructureRecord | list[StructureRecord]:
        """One record for an integer index, a list for a slice or a sequence of indices (the file opens once)."""
        if isinstance(index, slice | Sequence | np.ndarray):
            with self.open() as datafile:
                indices = range(*index.indices(len(datafile))) if isinstance(index, slice) else index
                return [datafile[int(i)] for i in indices]
        with self.base.repository.open(FILENAME, 'rb') as handle, DataFile(handle) as datafile:
            return datafile[int(index)]

    def __iter__(self) -> Iterator[StructureRecord]:
        with self.open() as datafile:
            yield from datafile

    def records(self, role: str | None = None) -> Iterator[StructureRecord]:
        """Iterate over the records, only those of ``role`` (``minimum`` or ``labelled``) when given."""
        if role is not None:
            check_role(role)
        with self.open() as datafile:
            yield from (record for record in datafile if role is None or record.role == role)

    def get_roles(self) -> np.ndarray:
        """The role name of every structure (object array)."""
        with self.open() as datafile:
            return datafile.roles()

    def get_energies(self) -> np.ndarray:
        """Total energies in eV of all structures (NaN where unknown)."""
        with self.open() as datafile:
            return datafile.energies()

    def get_num_atoms(self) -> np.ndarray:
        """Number of atoms of every structure."""
        with self.open() as datafile:
            return datafile.num_atoms()

    def get_volumes_per_atom(self) -> np.ndarray:
        """Volume per atom in Å^3 of every structure."""
        with self.base.repository.open(FILENAME, 'rb') as handle, h5py.File(handle, 'r') as f:
            return np.abs(np.linalg.det(f['cells'][:])) / np.diff(f['offsets'][:])

    def get_structure(self, index: int):
        """Structure ``index`` as a pymatgen ``Structure`` (energy in ``properties``, forces as a site property)."""
        return self[index].to_pymatgen()

    def get_atoms(self, index: int):
        """Structure ``index`` as ``ase.Atoms`` with a single-point calculator holding energy, forces, stress."""
        return self[index].to_ase()

    def get_structuredata(self, index: int) -> orm.StructureData:
        """Structure ``index`` as an unstored ``orm.StructureData``."""
        return orm.StructureData(ase=self.get_atoms(index))

    # Files

    def write_file(self, path: str | Path) -> Path:
        """Copy the raw dataset file to ``path`` (e.g. to ship it with a CalcJob) and return the path."""
        path = Path(path)
        with self.base.repository.open(FILENAME, 'rb') as source, path.open('wb') as target:
            shutil.copyfileobj(source, target)
        return path

    def export(self, path: str | Path, fmt: str = 'extxyz') -> Path:
        """Export to ``extxyz`` (one file, keeping energies, forces, stress) or ``cif`` (a directory or a ``.zip``).

        The source, label and role of each structure go to the extxyz comment line (``atoms.info``), or to a comment
        at the top of each CIF.
        """
        path = Path(path)
        if fmt == 'extxyz':
            from ase.io.extxyz import write_extxyz

            with path.open('w') as handle:
                write_extxyz(handle, (record.to_ase() for record in self))
        elif fmt == 'cif':
            named = (
                (f'{i:06d}_{record.to_pymatgen().composition.reduced_formula}.cif', record)
                for i, record in enumerate(self)
            )
            if path.suffix == '.zip':
                with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
                    for name, record in named:
                        archive.writestr(name, _cif_text(record))
            else:
                path.mkdir(parents=True, exist_ok=True)
                for name, record in named:
                    (path / name).write_text(_cif_text(record))
        else:
            raise ValueError(f'unknown export format `{fmt}`: choose `extxyz` or `cif`')
        return path

    # Splits and folds

    def _group_keys(self, group_by: str | None) -> list[str] | None:
        if group_by is None:
            return None
        if group_by not in ('source', 'label', 'composition'):
            raise ValueError(f'cannot group by `{group_by}`: choose `source`, `label` or `composition`')
        with self.base.repository.open(FILENAME, 'rb') as handle, h5py.File(handle, 'r') as f:
            if group_by == 'composition':
                offsets, numbers = f['offsets'][:], f['numbers'][:]
                return [reduced_formula(numbers[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)]
            return f[f'{group_by}s'].asstr()[:].tolist()

    def _check_mutable(self, what: str) -> None:
        if self.is_stored:
            raise ModificationNotAllowed(
                f'cannot set {what} of a stored dataset: use the `split_dataset` '
                'calcfunction of `aiida_crystalgan.importers.transforms` to derive a new one'
            )

    def set_splits(
        self, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, group_by: str | None = None
    ) -> None:
        """Fix a deterministic train/validation/test split (before storing)."""
        self._check_mutable('splits')
        splits = compute_splits(self.size, fractions, seed, self._group_keys(group_by))
        self.base.attributes.set('splits', splits)
        self.base.attributes.set('split_options', {'fractions': list(fractions), 'seed': seed, 'group_by': group_by})

    def set_folds(self, k: int, seed: int = 0, group_by: str | None = None) -> None:
        """Fix a deterministic k-fold cross-validation partition (before storing)."""
        self._check_mutable('folds')
        self.base.attributes.set('folds', compute_folds(self.size, k, seed, self._group_keys(group_by)))
        self.base.attributes.set('fold_options', {'k': k, 'seed': seed, 'group_by': group_by})

    def get_split(self, name: str) -> list[int]:
        """Indices of the ``train``, ``validation`` (``val``) or ``test`` split."""
        splits = self.base.attributes.get('splits', None)
        if splits is None:
            raise AttributeError('this dataset has no splits: build it with `splits=...` or use `split_dataset`')
        name = _SPLIT_ALIASES.get(name, name)
        if name not in splits:
            raise ValueError(f'unknown split `{name}`: choose one of {", ".join(SPLIT_NAMES)}')
        return splits[name]

    @property
    def num_folds(self) -> int:
        return len(self.base.attributes.get('folds', []))

    def get_fold(self, index: int) -> tuple[list[int], list[int]]:
        """``(train_indices, validation_indices)`` of cross-validation fold ``index``."""
        folds = self.base.attributes.get('folds', None)
        if folds is None:
            raise AttributeError('this dataset has no folds: build it with `folds=k` or use `split_dataset`')
        validation = folds[index]
        excluded = set(validation)
        return [i for i in range(self.size) if i not in excluded], validation
