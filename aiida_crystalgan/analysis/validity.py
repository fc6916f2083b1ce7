"""Validity of a crystal: structural (interatomic distances, volume) and compositional (charge balance).

Structural validity follows CDVAE/DiffCSP (every interatomic distance, periodic images included, at
least 0.5 Å) and adds bounds on the volume per atom that catch collapsed or exploded cells.

Charge balance uses pymatgen's ``Composition.oxi_state_guesses`` rather than SMACT:
it needs no extra dependency, draws oxidation states from ICSD statistics (Nb 2+ to 5+, not only the
"common" 5+), and lets sites of one element take different states, so mixed-valence phases such as
Nb12O29 or Fe3O4 count as balanced, where SMACT's one-state-per-element rule rejects them.
Like SMACT's ``include_alloys`` option, pure elements and all-metal compositions count as valid.
The numbers are therefore close to, but not identical with, the SMACT "compositional validity" of
CDVAE papers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Structure

__all__ = (
    'ValidityCriteria',
    'charge_balanced',
    'minimum_distance',
    'structural_problems',
    'structurally_valid',
)


@dataclass(frozen=True)
class ValidityCriteria:
    """Thresholds of structural validity.

    The volume bounds are loose on purpose: the densest solids at ambient pressure have ~5 Å^3/atom
    (diamond), the most open metallic element ~115 Å^3/atom (bcc Cs).
    """

    min_distance: float = 0.5  # Å
    min_volume_per_atom: float = 2.0  # Å^3
    max_volume_per_atom: float = 150.0  # Å^3

    def __post_init__(self) -> None:
        if self.min_distance < 0:
            raise ValueError(f'min_distance must be >= 0, got {self.min_distance}')
        if not 0 <= self.min_volume_per_atom < self.max_volume_per_atom:
            raise ValueError(
                f'need 0 <= min_volume_per_atom < max_volume_per_atom, got '
                f'{self.min_volume_per_atom} and {self.max_volume_per_atom}'
            )


def minimum_distance(structure: Structure) -> float:
    """Shortest interatomic distance in Å, including an atom's distance to its own periodic images."""
    shortest = _shortest_lattice_vector(structure)
    if len(structure) > 1:
        distances = structure.distance_matrix.copy()
        np.fill_diagonal(distances, np.inf)
        shortest = min(shortest, float(distances.min()))
    return shortest


def _shortest_lattice_vector(structure: Structure) -> float:
    reduced = structure.lattice.get_lll_reduced_lattice().matrix
    combos = np.array([c for c in itertools.product((-1, 0, 1), repeat=3) if any(c)])
    return float(np.linalg.norm(combos @ reduced, axis=1).min())


def structural_problems(structure: Structure, criteria: ValidityCriteria | None = None) -> list[str]:
    """Human-readable reasons why ``structure`` is structurally invalid; empty when it is valid."""
    criteria = criteria or ValidityCriteria()
    problems = []
    volume_per_atom = structure.volume / len(structure)
    if not np.isfinite(volume_per_atom) or volume_per_atom < criteria.min_volume_per_atom:
        problems.append(f'volume {volume_per_atom:.3g} Å^3/atom below {criteria.min_volume_per_atom} Å^3/atom')
    elif volume_per_atom > criteria.max_volume_per_atom:
        problems.append(f'volume {volume_per_atom:.3g} Å^3/atom above {criteria.max_volume_per_atom} Å^3/atom')
    else:
        shortest = minimum_distance(structure)
        if shortest < criteria.min_distance:
            problems.append(f'shortest interatomic distance {shortest:.3f} Å below {criteria.min_distance} Å')
    return problems


def structurally_valid(structure: Structure, criteria: ValidityCriteria | None = None) -> bool:
    """Whether all distances and the volume per atom are within ``criteria``."""
    return not structural_problems(structure, criteria)


def charge_balanced(composition: Composition | Structure | str) -> bool:
    """Whether some assignment of ICSD oxidation states makes the composition neutral (elements, alloys: True)."""
    if isinstance(composition, Structure):
        composition = composition.composition
    return _charge_balanced(Composition(composition).reduced_formula)


@lru_cache(maxsize=4096)
def _charge_balanced(reduced_formula: str) -> bool:
    composition = Composition(reduced_formula)
    elements = composition.elements
    if len(elements) == 1 or all(element.is_metal for element in elements):
        return True
    return bool(composition.oxi_state_guesses(max_sites=-1))
