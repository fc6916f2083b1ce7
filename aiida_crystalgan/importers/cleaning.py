"""Cleaning of structure records, with a report of every structure dropped and why; nothing is dropped silently.

Checks (each optional): unsupported elements, missing/NaN energies or forces, atoms closer than ``min_distance``,
volume per atom outside a range or a robust z-score outlier, and duplicates (pymatgen ``StructureMatcher`` within
groups of equal reduced composition, number of atoms and role, volumes compared unless ``scale``; with energies the
lowest-energy member is kept). A ``minimum`` and a ``labelled`` copy of one structure are not duplicates of each other:
they serve different purposes (real data for the critic, energy and forces for the physics head), so both are kept.
Disordered or unreadable inputs never become records: importers report them in the same :class:`CleaningReport`.

:func:`deduplicate_minima` merges equivalent minima across a whole set (any number of atoms), keeping the lowest energy.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiida_crystalgan.data.dataset import CrystalDatasetData, reduced_formula
from aiida_crystalgan.io.datafile import DataFile, DataFileWriter, StructureRecord

__all__ = ('CleaningOptions', 'CleaningReport', 'build_dataset', 'deduplicate_minima', 'kept_records', 'select_clean')

REASONS = (
    'unreadable',
    'disordered',
    'unsupported_element',
    'missing_energy',
    'missing_forces',
    'min_distance',
    'volume',
    'volume_outlier',
    'duplicate',
)


@dataclass
class CleaningOptions:
    """What to drop. Distances in Å, volumes in Å^3/atom; ``None`` switches a check off."""

    allowed_elements: list[str] | None = None
    require_energies: bool = False
    require_forces: bool = False
    min_distance: float | None = 0.5
    min_volume_per_atom: float | None = None
    max_volume_per_atom: float | None = None
    max_volume_zscore: float | None = None
    dedupe: bool = False
    scale: bool = False
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> CleaningOptions:
        unknown = set(options or {}) - set(cls.__dataclass_fields__)
        if unknown:
            choices = sorted(cls.__dataclass_fields__)
            raise ValueError(f'unknown cleaning options {sorted(unknown)}: choose from {choices}')
        return cls(**(options or {}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleaningReport:
    """Counts and per-structure reasons of what was dropped; stored in the dataset's ``metadata['cleaning']``."""

    num_input: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def drop(self, reason: str, detail: str, index: int | None = None, source: str = '', label: str = '') -> None:
        if reason not in REASONS:
            raise ValueError(f'unknown reason `{reason}`')
        self.dropped.append({'index': index, 'source': source, 'label': label, 'reason': reason, 'detail': detail})

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(item['reason'] for item in self.dropped))

    def as_dict(self, options: CleaningOptions | None = None) -> dict[str, Any]:
        report = {
            'num_input': self.num_input,
            'num_dropped': len(self.dropped),
            'num_kept': self.num_input - len(self.dropped),
            'counts': self.counts,
            'dropped': self.dropped,
        }
        if options is not None:
            report['options'] = options.as_dict()
        return report

    def summary(self) -> str:
        counts = ', '.join(f'{count} {reason}' for reason, count in sorted(self.counts.items())) or 'none'
        return f'{self.num_input - len(self.dropped)} of {self.num_input} structures kept; dropped: {counts}'


def _min_distance(record: StructureRecord, cutoff: float) -> float | None:
    """Smallest interatomic distance (periodic images included) when below ``cutoff``, else ``None``."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    positions = np.ascontiguousarray(record.positions)
    centers, neighbors, images, distances = find_points_in_spheres(
        positions,
        positions,
        r=float(cutoff),
        pbc=np.ones(3, dtype=np.int64),
        lattice=np.ascontiguousarray(record.cell),
        tol=1e-8,
    )
    is_self = (centers == neighbors) & ~images.any(axis=1)
    distances = distances[~is_self]
    return float(distances.min()) if len(distances) else None


def _check(record: StructureRecord, options: CleaningOptions) -> tuple[str, str] | None:
    """The first reason to drop ``record`` that needs only the record itself, as ``(reason, detail)``."""
    from ase.data import chemical_symbols

    if options.allowed_elements is not None:
        unsupported = sorted({chemical_symbols[z] for z in record.numbers} - set(options.allowed_elements))
        if unsupported:
            return 'unsupported_element', f'elements {unsupported} not in {sorted(options.allowed_elements)}'
    if options.require_energies and (record.energy is None or not np.isfinite(record.energy)):
        return 'missing_energy', 'no finite energy'
    if options.require_forces and (record.forces is None or not np.isfinite(record.forces).all()):
        return 'missing_forces', 'no finite forces'
    volume = record.volume / record.num_atoms
    if options.min_volume_per_atom is not None and volume < options.min_volume_per_atom:
        return 'volume', f'volume per atom {volume:.3f} < {options.min_volume_per_atom}'
    if options.max_volume_per_atom is not None and volume > options.max_volume_per_atom:
        return 'volume', f'volume per atom {volume:.3f} > {options.max_volume_per_atom}'
    if options.min_distance is not None:
        distance = _min_distance(record, options.min_distance)
        if distance is not None:
            return 'min_distance', f'atoms {distance:.3f} Å apart (< {options.min_distance})'
    return None


def _matcher(ltol: float, stol: float, angle_tol: float, scale: bool):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, scale=scale)


def _lowest_energy_representatives(records: dict[int, StructureRecord], matcher) -> dict[int, int]:
    """Group equivalent ``records`` (index -> record) with ``matcher``; map each other member to the one kept.

    The member with the lowest energy per atom is kept; without any energy in a group, the lowest index.
    """
    structures = []
    for index, record in records.items():
        structure = record.to_pymatgen()
        structure.properties['index'] = index
        structures.append(structure)
    replaced: dict[int, int] = {}
    for group in matcher.group_structures(structures):
        group_indices = [structure.properties['index'] for structure in group]
        energies = [
            records[i].energy / records[i].num_atoms if records[i].energy is not None else np.inf for i in group_indices
        ]
        kept = group_indices[int(np.argmin(energies))] if np.isfinite(energies).any() else min(group_indices)
        replaced.update({i: kept for i in group_indices if i != kept})
    return replaced


def _duplicates(datafile: DataFile, indices: list[int], options: CleaningOptions) -> dict[int, int]:
    """Map each duplicate index to the index kept in its place; one group of equal formula, number of atoms and role
    is in memory at a time."""
    matcher = _matcher(options.ltol, options.stol, options.angle_tol, options.scale)
    wanted = set(indices)
    buckets: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    for index, record in enumerate(datafile):
        if index in wanted:
            buckets[(reduced_formula(record.numbers), record.num_atoms, record.role)].append(index)
    replaced: dict[int, int] = {}
    for members in buckets.values():
        if len(members) > 1:
            replaced.update(_lowest_energy_representatives({index: datafile[index] for index in members}, matcher))
    return replaced


def deduplicate_minima(
    records: Iterable[StructureRecord],
    ltol: float = 0.2,
    stol: float = 0.3,
    angle_tol: float = 5.0,
    scale: bool = False,
) -> tuple[list[int], dict[int, int]]:
    """Merge equivalent minima: ``(kept indices, {duplicate index: index kept in its place})``.

    Structures are compared with pymatgen's ``StructureMatcher`` (tolerances as in :class:`CleaningOptions`; reduced
    primitive cells, so a supercell matches its primitive cell) within groups of equal reduced formula, and the
    lowest energy per atom of each group of equivalent structures is kept. Roles are not looked at: give the minima.
    """
    matcher = _matcher(ltol, stol, angle_tol, scale)
    records = list(records)
    buckets: dict[str, dict[int, StructureRecord]] = defaultdict(dict)
    for index, record in enumerate(records):
        buckets[reduced_formula(record.numbers)][index] = record
    replaced: dict[int, int] = {}
    for members in buckets.values():
        if len(members) > 1:
            replaced.update(_lowest_energy_representatives(members, matcher))
    return [index for index in range(len(records)) if index not in replaced], replaced


def select_clean(
    datafile: DataFile,
    options: CleaningOptions,
    report: CleaningReport | None = None,
) -> tuple[list[int], CleaningReport]:
    """Return the indices of ``datafile`` that pass ``options`` and the report of those that do not."""
    report = report or CleaningReport()
    report.num_input += len(datafile)
    kept: list[int] = []
    volumes: list[float] = []
    for index, record in enumerate(datafile):
        failure = _check(record, options)
        if failure is None:
            kept.append(index)
            volumes.append(record.volume / record.num_atoms)
        else:
            report.drop(failure[0], failure[1], index, record.source, record.label)
    if options.max_volume_zscore is not None and len(kept) > 2:
        values = np.array(volumes)
        median = np.median(values)
        mad = 1.4826 * np.median(np.abs(values - median)) or values.std() or 1.0
        zscores = np.abs(values - median) / mad
        for index, value, zscore in zip(kept, values, zscores):
            if zscore > options.max_volume_zscore:
                record = datafile[index]
                report.drop(
                    'volume_outlier',
                    f'volume per atom {value:.3f} is {zscore:.1f} robust standard '
                    f'deviations from the median {median:.3f}',
                    index,
                    record.source,
                    record.label,
                )
        kept = [index for index, zscore in zip(kept, zscores) if zscore <= options.max_volume_zscore]
    if options.dedupe:
        replaced = _duplicates(datafile, kept, options)
        for index in sorted(replaced):
            record = datafile[index]
            report.drop('duplicate', f'equivalent to structure {replaced[index]}', index, record.source, record.label)
        kept = [index for index in kept if index not in replaced]
    return kept, report


def kept_records(datafile: DataFile, kept: list[int]) -> Iterator[StructureRecord]:
    """The records of ``kept`` indices, in one sequential pass over ``datafile``."""
    wanted = set(kept)
    return (record for index, record in enumerate(datafile) if index in wanted)


def build_dataset(
    records: Iterable[StructureRecord],
    metadata: dict[str, Any] | None = None,
    options: CleaningOptions | None = None,
    report: CleaningReport | None = None,
    **kwargs,
) -> CrystalDatasetData:
    """Build an unstored dataset from ``records``, cleaned with ``options`` when given.

    ``report`` may already hold what an importer could not convert; the final report goes to ``metadata['cleaning']``.
    Records are streamed to a temporary file, checked in one pass over it and the kept ones streamed into the node.
    """
    metadata = dict(metadata or {})
    report = report or CleaningReport()
    with tempfile.TemporaryDirectory(prefix='crystalgan-clean-') as tmpdir:
        path = Path(tmpdir) / 'raw.h5'
        with DataFileWriter(path) as writer:
            writer.extend(records)
        with DataFile(path) as datafile:
            if not len(datafile):
                raise ValueError(f'no structures to store ({len(report.dropped)} dropped on import: {report.counts})')
        if options is None:
            with DataFile(path) as datafile:
                report.num_input += len(datafile)
            metadata['cleaning'] = report.as_dict()
            return CrystalDatasetData(filepath=path, metadata=metadata, **kwargs)
        with DataFile(path) as datafile:
            kept, report = select_clean(datafile, options, report)
            if not kept:
                raise ValueError(f'cleaning dropped every structure: {report.summary()}')
            metadata['cleaning'] = report.as_dict(options)
            return CrystalDatasetData(kept_records(datafile, kept), metadata=metadata, **kwargs)
