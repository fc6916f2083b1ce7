"""Structure matching: duplicates among candidates and matches against a reference set.

All comparisons use pymatgen's ``StructureMatcher`` (invariant to cell choice, rotation, translation and
atom order) and compare only structures of the same reduced formula, which makes the cost grow with
the size of each composition group rather than with the square of the whole set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

__all__ = (
    'BENCHMARK_TOLERANCES',
    'duplicate_indices',
    'first_distinct',
    'group_by_formula',
    'make_matcher',
    'reference_matches',
)

#: Tolerances of CDVAE / DiffCSP's match rate and RMSE (``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``).
BENCHMARK_TOLERANCES = {'ltol': 0.3, 'stol': 0.5, 'angle_tol': 10.0}


def make_matcher(ltol: float = 0.2, stol: float = 0.3, angle_tol: float = 5.0, scale: bool = True) -> StructureMatcher:
    """A ``StructureMatcher`` (pymatgen's default tolerances unless given) comparing primitive cells."""
    return StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, scale=scale)


def group_by_formula(structures: Sequence[Structure]) -> dict[str, list[int]]:
    """Indices of ``structures`` grouped by reduced formula, in input order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, structure in enumerate(structures):
        groups[structure.composition.reduced_formula].append(index)
    return dict(groups)


def duplicate_indices(structures: Sequence[Structure], matcher: StructureMatcher | None = None) -> list[int | None]:
    """For each structure, the index of an earlier structure it duplicates, or None if it is the first of its kind."""
    matcher = matcher or make_matcher()
    duplicate_of: list[int | None] = [None] * len(structures)
    for indices in group_by_formula(structures).values():
        representatives: list[int] = []
        for index in indices:
            match = next((rep for rep in representatives if matcher.fit(structures[rep], structures[index])), None)
            if match is None:
                representatives.append(index)
            else:
                duplicate_of[index] = match
    return duplicate_of


def first_distinct(
    structures: Sequence[Structure], count: int, matcher: StructureMatcher | None = None
) -> tuple[list[int], dict[int, int]]:
    """Walk ``structures`` in order (best first) and keep each that matches none kept before it, until ``count`` are
    kept: the kept indices, and for each structure skipped on the way the index of the kept one it matches."""
    matcher = matcher or make_matcher()
    kept: list[int] = []
    duplicate_of: dict[int, int] = {}
    for index, structure in enumerate(structures):
        if len(kept) == count:
            break
        match = reference_matches([structure], [structures[k] for k in kept], matcher)[0]
        if match is None:
            kept.append(index)
        else:
            duplicate_of[index] = kept[match]
    return kept, duplicate_of


def reference_matches(
    structures: Sequence[Structure],
    references: Sequence[Structure],
    matcher: StructureMatcher | None = None,
) -> list[int | None]:
    """For each structure, the index of the first reference it matches, or None when it matches none."""
    matcher = matcher or make_matcher()
    by_formula = group_by_formula(references)
    matches: list[int | None] = []
    for structure in structures:
        candidates = by_formula.get(structure.composition.reduced_formula, [])
        matches.append(next((ref for ref in candidates if matcher.fit(structure, references[ref])), None))
    return matches
