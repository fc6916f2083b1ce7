"""Post-processing of generated candidates: wrap, merge close atoms, symmetrise, filter, deduplicate.

``postprocess`` runs the steps in this order on every candidate and never drops one silently: each input
gets a :class:`StructureReport` saying whether it was kept and, if not, why (:class:`DropReason`).

1. wrap every atom into the cell;
2. merge atoms of one species closer than ``merge_distance`` into their mean position;
3. symmetrise with spglib (through pymatgen's ``SpacegroupAnalyzer``); a failure keeps the P1 cell;
4. structural validity (distances, volume per atom), then charge balance;
5. drop matches of the training set, then duplicates among the remaining candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from .matching import duplicate_indices, make_matcher, reference_matches
from .validity import ValidityCriteria, charge_balanced, structural_problems

__all__ = (
    'DropReason',
    'PostprocessOptions',
    'PostprocessResult',
    'StructureReport',
    'SymmetrizedStructure',
    'clean',
    'merge_close_atoms',
    'postprocess',
    'space_group',
    'symmetrize',
    'wrap',
)


class DropReason(StrEnum):
    """Why a candidate was dropped."""

    EMPTY = 'empty'
    INVALID_STRUCTURE = 'invalid_structure'
    CHARGE_IMBALANCED = 'charge_imbalanced'
    IN_TRAINING = 'in_training'
    DUPLICATE = 'duplicate'
    ERROR = 'error'


@dataclass(frozen=True)
class SymmetrizedStructure:
    """A symmetrised structure with its space group."""

    structure: Structure
    number: int
    symbol: str


def wrap(structure: Structure) -> Structure:
    """A copy of ``structure`` with every fractional coordinate in [0, 1)."""
    frac = np.mod(structure.frac_coords, 1.0)
    frac[np.isclose(frac, 1.0, atol=1e-10)] = 0.0
    return Structure(structure.lattice, structure.species_and_occu, frac, site_properties=structure.site_properties)


def merge_close_atoms(structure: Structure, distance: float = 0.7) -> tuple[Structure, list[str]]:
    """Merge atoms of the same species closer than ``distance`` (Å) into one atom at their mean position.

    The default 0.7 Å is shorter than any real bond (H2: 0.74 Å), so only generation artefacts are merged.
    Returns the new structure and one note per merge or per close pair that could not be merged (different
    species, or an atom close to its own periodic image); such pairs are left for the validity check.
    """
    if distance <= 0:
        raise ValueError(f'merge distance must be positive, got {distance}')
    parent = list(range(len(structure)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    notes: list[str] = []
    centres, neighbours, _, distances = structure.get_neighbor_list(r=distance)
    noted: set[tuple[int, int]] = set()  # a pair may be close through several periodic images: note it once
    for i, j, d in zip(centres, neighbours, distances):
        if i > j:
            continue
        if i != j and structure[i].species == structure[j].species:
            parent[root(max(i, j))] = root(min(i, j))
        elif (i, j) not in noted:
            noted.add((i, j))
            if i == j:
                notes.append(f'site {i} ({structure[i].species_string}) is {d:.2f} Å from its own periodic image')
            else:
                notes.append(
                    f'sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) are '
                    f'{d:.2f} Å apart but of different species: not merged'
                )
    clusters: dict[int, list[int]] = {}
    for index in range(len(structure)):
        clusters.setdefault(root(index), []).append(index)
    merged = structure.copy()
    removed = []
    for first, members in clusters.items():
        if len(members) == 1:
            continue
        delta = structure.frac_coords[members] - structure.frac_coords[first]
        mean = structure.frac_coords[first] + np.mean(delta - np.round(delta), axis=0)
        merged.replace(first, structure[first].species, coords=np.mod(mean, 1.0))
        removed.extend(members[1:])
        notes.append(
            f'merged {len(members)} {structure[first].species_string} atoms (sites {members}) closer than '
            f'{distance} Å into one'
        )
    merged.remove_sites(removed)
    return merged, notes


def symmetrize(
    structure: Structure, symprec: float = 0.1, angle_tolerance: float = 5.0, primitive: bool = True
) -> SymmetrizedStructure:
    """The spglib-refined structure (primitive standard cell unless ``primitive`` is False) and its space group.

    Raises ValueError when spglib finds no symmetry dataset at this tolerance.
    """
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
        refined = analyzer.get_primitive_standard_structure() if primitive else analyzer.get_refined_structure()
        number, symbol = analyzer.get_space_group_number(), analyzer.get_space_group_symbol()
    except (TypeError, ValueError) as exception:  # spglib returns no dataset
        raise ValueError(f'spglib could not symmetrise the structure at symprec={symprec}: {exception}') from exception
    return SymmetrizedStructure(refined, number, symbol)


def space_group(structure: Structure, symprec: float = 0.1) -> tuple[int, str]:
    """The space group (number, symbol) of ``structure`` at ``symprec``; P1 where spglib fails on a badly distorted
    cell."""
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
        return analyzer.get_space_group_number(), analyzer.get_space_group_symbol()
    except Exception:  # noqa: BLE001 - spglib and pymatgen raise several kinds of error on such cells
        return 1, 'P1'


@dataclass(frozen=True)
class PostprocessOptions:
    """Settings of :func:`postprocess`; matcher tolerances are those of pymatgen's ``StructureMatcher``."""

    merge_distance: float | None = 0.7
    symmetrize: bool = True
    symprec: float = 0.1
    angle_tolerance: float = 5.0
    primitive: bool = True
    validity: ValidityCriteria = field(default_factory=ValidityCriteria)
    require_charge_balance: bool = True
    dedupe: bool = True
    ltol: float = 0.2
    stol: float = 0.3
    match_angle_tol: float = 5.0


@dataclass
class StructureReport:
    """What happened to one input candidate."""

    index: int
    kept: bool = False
    reason: DropReason | None = None
    detail: str = ''
    notes: list[str] = field(default_factory=list)
    formula: str = ''
    spacegroup_number: int | None = None
    spacegroup_symbol: str | None = None
    match_index: int | None = None  # the candidate (DUPLICATE) or training structure (IN_TRAINING) it matches

    def drop(self, reason: DropReason, detail: str, match_index: int | None = None) -> None:
        self.kept, self.reason, self.detail, self.match_index = False, reason, detail, match_index


@dataclass
class PostprocessResult:
    """The kept structures (processed), their input indices, one report per input and counts per outcome."""

    structures: list[Structure]
    kept_indices: list[int]
    reports: list[StructureReport]

    @property
    def counts(self) -> dict[str, int]:
        """Number of inputs per outcome: ``'kept'`` and every :class:`DropReason` (zero included)."""
        counts = Counter(str(report.reason) if report.reason else 'kept' for report in self.reports)
        return {'kept': counts['kept'], **{str(reason): counts[str(reason)] for reason in DropReason}}

    def to_dict(self) -> dict:
        """JSON-serialisable summary: counts, kept indices and the reports."""
        reports = [
            {**asdict(report), 'reason': str(report.reason) if report.reason else None} for report in self.reports
        ]
        return {'counts': self.counts, 'kept_indices': self.kept_indices, 'reports': reports}


def postprocess(
    structures: Sequence[Structure],
    training: Sequence[Structure] | None = None,
    options: PostprocessOptions | None = None,
) -> PostprocessResult:
    """Clean, filter and deduplicate ``structures`` (against each other and ``training``), reporting every drop."""
    options = options or PostprocessOptions()
    reports = [StructureReport(index=index) for index in range(len(structures))]
    processed: dict[int, Structure] = {}
    for index, structure in enumerate(structures):
        report = reports[index]
        try:
            result = clean(structure, options, report)
        except Exception as exception:  # one broken candidate must not stop the batch
            report.drop(DropReason.ERROR, f'{type(exception).__name__}: {exception}')
            continue
        if result is not None:
            processed[index] = result

    matcher = make_matcher(options.ltol, options.stol, options.match_angle_tol)
    if training:
        indices = list(processed)
        for index, match in zip(indices, reference_matches([processed[i] for i in indices], training, matcher)):
            if match is not None:
                reports[index].drop(DropReason.IN_TRAINING, f'matches training structure {match}', match)
                del processed[index]
    if options.dedupe:
        indices = list(processed)
        duplicate_of = duplicate_indices([processed[index] for index in indices], matcher)
        for position, original in enumerate(duplicate_of):
            if original is not None:
                index, match = indices[position], indices[original]
                reports[index].drop(DropReason.DUPLICATE, f'same structure as candidate {match}', match)
                del processed[index]
    for index in processed:
        reports[index].kept = True
    return PostprocessResult(list(processed.values()), list(processed), reports)


def clean(structure: Structure, options: PostprocessOptions, report: StructureReport) -> Structure | None:
    """Wrap, merge, symmetrise and check one candidate; None when it is dropped (the reason is in ``report``)."""
    if len(structure) == 0:
        report.drop(DropReason.EMPTY, 'structure has no atoms')
        return None
    report.formula = structure.composition.reduced_formula
    structure = wrap(structure)
    if options.merge_distance:
        structure, notes = merge_close_atoms(structure, options.merge_distance)
        report.notes.extend(notes)
    if options.symmetrize:
        try:
            symmetrized = symmetrize(structure, options.symprec, options.angle_tolerance, options.primitive)
        except ValueError as exception:
            report.notes.append(f'{exception}; kept as P1')
            report.spacegroup_number, report.spacegroup_symbol = 1, 'P1'
        else:
            structure = symmetrized.structure
            report.spacegroup_number, report.spacegroup_symbol = symmetrized.number, symmetrized.symbol
    report.formula = structure.composition.reduced_formula
    problems = structural_problems(structure, options.validity)
    if problems:
        report.drop(DropReason.INVALID_STRUCTURE, '; '.join(problems))
        return None
    if options.require_charge_balance and not charge_balanced(structure.composition):
        report.drop(DropReason.CHARGE_IMBALANCED, f'no charge-balanced oxidation states for {report.formula}')
        return None
    return structure
