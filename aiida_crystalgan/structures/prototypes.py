"""Seed structures for a chemical system: elemental ground states and common binary prototypes.

Nothing here is specific to one system. For every element of ``system`` the seeds hold its ground-state
structure and for every pair of elements the binary prototypes whose stoichiometry is compatible with
the elements' oxidation states (or, for two metals, the simple intermetallic types).

Where the data come from, recorded in each :class:`Seed`'s ``source``:

* elements: ASE's ``ase.data.reference_states`` (experimental lattice constants of bcc, fcc, hcp,
  diamond and simple-cubic elements). Diatomic gases (H, N, O, F...) get an alpha-O2-type molecular
  crystal (C2/m, 2 atoms in the primitive cell, molecular axes normal to the ab plane) with the
  molecule's bond length and alpha-O2's lattice scaled by an intermolecular spacing from van der Waals
  radii: close to solid O2, a placeholder for the others (alpha-N2 is cubic Pa-3) that relaxation or MD
  refines. Elements with a complex ground state are given bcc, fcc and hcp cells sized from their
  atomic (noble gases: van der Waals) radius.
* binaries: each prototype is a reference compound's crystallographic data (space group, Wyckoff
  positions, lattice) rescaled isotropically so that its shortest cation-anion distance matches an
  estimate from pymatgen's ionic radii for the implied oxidation states (bond-valence correction for
  the coordination number), or from atomic radii for two metals.
* known phases: where the exact crystallographic data of a phase are listed in ``_KNOWN_PHASES`` they
  replace the estimate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from itertools import combinations

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup

__all__ = ('Seed', 'parse_system', 'seed_structures')

_SYSTEM_TOKEN = re.compile(r'^[A-Z][a-z]{0,2}$')
_BOND_VALENCE_B = 0.37  # Å, Brown's universal softness parameter: d(CN) = d(6) + b ln(CN / 6)


@dataclass(frozen=True)
class Seed:
    """One seed structure with a human label (``'NbO2-rutile'``) and where its data came from."""

    label: str
    structure: Structure
    source: str


@dataclass(frozen=True)
class _Prototype:
    """A reference crystal: A is the cation (less electronegative) site, B the anion site."""

    name: str
    spacegroup: int
    lattice: tuple[float, ...]  # a, b, c, alpha, beta, gamma (Å, degrees)
    sites_a: tuple[tuple[float, float, float], ...]
    sites_b: tuple[tuple[float, float, float], ...]
    stoichiometry: tuple[int, int]  # reduced A:B ratio
    coordination: int  # of the A site, for the bond-valence correction of the ionic bond length
    reference: str
    bonding: str = 'any'  # 'ionic' (a cation and an anion), 'metallic' (no anion) or 'any'

    def build(self, element_a: str, element_b: str, lattice: tuple[float, ...] | None = None) -> Structure:
        """The prototype decorated with ``element_a`` and ``element_b``, on its own or a given lattice."""
        species = [element_a] * len(self.sites_a) + [element_b] * len(self.sites_b)
        coords = list(self.sites_a) + list(self.sites_b)
        return _from_spacegroup(self.spacegroup, Lattice.from_parameters(*(lattice or self.lattice)), species, coords)


@cache
def _symmetry_operations(number: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations and translations of a space group (hexagonal setting for rhombohedral groups), cached."""
    operations = SpaceGroup.from_int_number(number).symmetry_ops
    return (np.array([op.rotation_matrix for op in operations]), np.array([op.translation_vector for op in operations]))


def _from_spacegroup(number: int, lattice: Lattice, species: list[str], coords: list) -> Structure:
    """Like ``Structure.from_spacegroup`` but with the (slow to build) space group operations cached."""
    rotations, translations = _symmetry_operations(number)
    all_species, all_coords = [], []
    for specie, coord in zip(species, coords):
        images = (np.einsum('nij,j->ni', rotations, np.asarray(coord, dtype=float)) + translations) % 1.0
        unique: list[np.ndarray] = []
        for image in images:
            if not any(np.allclose(_wrapped_difference(image, kept), 0.0, atol=1e-4) for kept in unique):
                unique.append(image)
        all_species.extend([specie] * len(unique))
        all_coords.extend(unique)
    return Structure(lattice, all_species, all_coords)


def _wrapped_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    difference = first - second
    return difference - np.round(difference)


def _cubic(a: float) -> tuple[float, ...]:
    return (a, a, a, 90.0, 90.0, 90.0)


def _tetragonal(a: float, c: float) -> tuple[float, ...]:
    return (a, a, c, 90.0, 90.0, 90.0)


def _hexagonal(a: float, c: float) -> tuple[float, ...]:
    return (a, a, c, 90.0, 90.0, 120.0)


_ALPHA_O2_LATTICE = (5.403, 3.429, 5.086, 132.53)  # a, b, c (Å), beta (degrees); C2/m at 23 K
_ALPHA_O2_BOND, _ALPHA_O2_VDW = 1.21, 1.52  # Å: ASE's O2 bond length, pymatgen's van der Waals radius of O
_B_NB2O5_LATTICE = (12.7202, 4.8284, 5.4798, 90.0, 105.1834, 90.0)

_PROTOTYPES: tuple[_Prototype, ...] = (
    _Prototype('rocksalt', 225, _cubic(4.212), ((0, 0, 0),), ((0.5, 0.5, 0.5),), (1, 1), 6, 'MgO, a=4.212'),
    _Prototype('CsCl', 221, _cubic(4.123), ((0, 0, 0),), ((0.5, 0.5, 0.5),), (1, 1), 8, 'CsCl, a=4.123'),
    _Prototype(
        'zincblende',
        216,
        _cubic(5.409),
        ((0, 0, 0),),
        ((0.25, 0.25, 0.25),),
        (1, 1),
        4,
        'ZnS, a=5.409',
        bonding='ionic',
    ),
    _Prototype(
        'wurtzite',
        186,
        _hexagonal(3.2495, 5.2069),
        ((1 / 3, 2 / 3, 0),),
        ((1 / 3, 2 / 3, 0.3819),),
        (1, 1),
        4,
        'ZnO, a=3.2495 c=5.2069 u=0.3819',
        bonding='ionic',
    ),
    _Prototype(
        'NbO-type',
        221,
        _cubic(4.2101),
        ((0, 0.5, 0.5),),
        ((0.5, 0, 0),),
        (1, 1),
        4,
        'NbO (rocksalt with ordered 25% vacancies), a=4.2101',
        bonding='ionic',
    ),
    _Prototype(
        'rutile',
        136,
        _tetragonal(4.5937, 2.9587),
        ((0, 0, 0),),
        ((0.3048, 0.3048, 0),),
        (1, 2),
        6,
        'TiO2 rutile, a=4.5937 c=2.9587 x=0.3048',
        bonding='ionic',
    ),
    _Prototype('fluorite', 225, _cubic(5.4626), ((0, 0, 0),), ((0.25, 0.25, 0.25),), (1, 2), 8, 'CaF2, a=5.4626'),
    _Prototype(
        'antifluorite',
        225,
        _cubic(4.619),
        ((0.25, 0.25, 0.25),),
        ((0, 0, 0),),
        (2, 1),
        4,
        'Li2O, a=4.619',
        bonding='ionic',
    ),
    _Prototype(
        'corundum',
        167,
        _hexagonal(4.7589, 12.991),
        ((0, 0, 0.35216),),
        ((0.30624, 0, 0.25),),
        (2, 3),
        6,
        'Al2O3 corundum, a=4.7589 c=12.991 z(Al)=0.35216 x(O)=0.30624',
        bonding='ionic',
    ),
    _Prototype(
        'B-Nb2O5-type',
        15,
        _B_NB2O5_LATTICE,
        ((0.63961, 0.26028, 0.25322),),
        ((0.60917, 0.94689, 0.46907), (0.79360, 0.07261, 0.37245), (0.0, 0.90325, 0.25)),
        (2, 5),
        6,
        'B-Nb2O5 (C2/c), OQMD entry 3586 (DFT-relaxed)',
        bonding='ionic',
    ),
    _Prototype('ReO3', 221, _cubic(3.75), ((0, 0, 0),), ((0.5, 0, 0),), (1, 3), 6, 'ReO3, a=3.75', bonding='ionic'),
    _Prototype(
        'anti-ReO3', 221, _cubic(3.814), ((0.5, 0, 0),), ((0, 0, 0),), (3, 1), 2, 'Cu3N, a=3.814', bonding='ionic'
    ),
    _Prototype(
        'L1_2', 221, _cubic(3.75), ((0, 0.5, 0.5),), ((0, 0, 0),), (3, 1), 12, 'Cu3Au, a=3.75', bonding='metallic'
    ),
)

# Exact crystallographic data of known phases: (reduced formula, prototype) -> (lattice, source).
_KNOWN_PHASES: dict[tuple[str, str], tuple[tuple[float, ...], str]] = {
    ('NbO', 'NbO-type'): (_cubic(4.2101), 'NbO, Pm-3m, Nb 3c / O 3d, a=4.2101 Å (experimental)'),
    ('NbO2', 'rutile'): (_tetragonal(4.846, 3.032), 'high-temperature rutile NbO2, a=4.846 c=3.032 Å (experimental)'),
    ('Nb2O5', 'B-Nb2O5-type'): (_B_NB2O5_LATTICE, 'B-Nb2O5, C2/c, OQMD entry 3586 (DFT-relaxed lattice)'),
    ('TiO2', 'rutile'): (_tetragonal(4.5937, 2.9587), 'TiO2 rutile, a=4.5937 c=2.9587 Å (experimental)'),
    ('MgO', 'rocksalt'): (_cubic(4.212), 'MgO periclase, a=4.212 Å (experimental)'),
    ('Li2O', 'antifluorite'): (_cubic(4.619), 'Li2O, a=4.619 Å (experimental)'),
    ('ZnO', 'wurtzite'): (_hexagonal(3.2495, 5.2069), 'ZnO wurtzite, a=3.2495 c=5.2069 Å (experimental)'),
    ('Al2O3', 'corundum'): (_hexagonal(4.7589, 12.991), 'Al2O3 corundum, a=4.7589 c=12.991 Å (experimental)'),
}


def parse_system(system: str) -> list[str]:
    """Sorted element symbols of a chemical system written like ``'Nb-O'``; ValueError when malformed."""
    if not isinstance(system, str) or not system.strip():
        raise ValueError(f'chemical system must be a non-empty string like "Nb-O", got {system!r}')
    tokens = [token.strip() for token in system.strip().split('-')]
    for token in tokens:
        if not token:
            raise ValueError(f'malformed chemical system {system!r}: empty element between "-" (write e.g. "Nb-O")')
        if not _SYSTEM_TOKEN.match(token) or not Element.is_valid_symbol(token):
            raise ValueError(f'malformed chemical system {system!r}: {token!r} is not an element symbol')
        if Element(token).symbol != token:
            raise ValueError(f'chemical system {system!r}: isotope symbol {token!r} is not supported, use the element')
    if len(set(tokens)) != len(tokens):
        raise ValueError(f'malformed chemical system {system!r}: an element is repeated')
    return sorted(tokens)


def seed_structures(system: str, max_atoms: int | None = None) -> list[Seed]:
    """Seeds for every element and every pair of elements of ``system``, optionally at most ``max_atoms`` per cell.

    A conventional cell larger than ``max_atoms`` is replaced by its primitive cell when that fits; seeds that
    still do not fit are left out.
    """
    elements = parse_system(system)
    if max_atoms is not None and max_atoms < 1:
        raise ValueError(f'max_atoms must be a positive integer, got {max_atoms}')
    seeds = [seed for element in elements for seed in _elemental_seeds(element)]
    for first, second in combinations(elements, 2):
        seeds.extend(_binary_seeds(first, second))
    return [fitted for seed in seeds if (fitted := _fit(seed, max_atoms)) is not None]


def _fit(seed: Seed, max_atoms: int | None) -> Seed | None:
    if max_atoms is None or len(seed.structure) <= max_atoms:
        return seed
    primitive = seed.structure.get_primitive_structure()
    if len(primitive) <= max_atoms:
        return Seed(seed.label, primitive, seed.source + '; primitive cell')
    return None


# Cubic elemental structures: space group and the one Wyckoff site (pymatgen's settings: 227 in origin choice 1).
_CUBIC_ELEMENTS = {'sc': 221, 'fcc': 225, 'bcc': 229, 'diamond': 227}


def _elemental_seeds(symbol: str) -> list[Seed]:
    from ase.data import reference_states

    state = reference_states[Element(symbol).Z] or {}
    kind = state.get('symmetry')
    if kind == 'diatom':
        return [_molecular_crystal(symbol, state['d'])]
    if kind == 'hcp':
        structure = _hcp(symbol, state['a'], state['a'] * state['c/a'])
    elif kind in _CUBIC_ELEMENTS:
        structure = _cubic_element(symbol, kind, state['a'])
    else:
        return _close_packed_estimates(symbol)
    return [Seed(f'{symbol}-{kind}', structure, f'ASE reference_states ({kind}, experimental lattice constant)')]


def _cubic_element(symbol: str, kind: str, a: float) -> Structure:
    return _from_spacegroup(_CUBIC_ELEMENTS[kind], Lattice.cubic(a), [symbol], [[0, 0, 0]])


def _hcp(symbol: str, a: float, c: float) -> Structure:
    return _from_spacegroup(194, Lattice.hexagonal(a, c), [symbol], [[1 / 3, 2 / 3, 0.25]])


def _molecular_crystal(symbol: str, bond: float) -> Seed:
    """alpha-O2-type crystal (C2/m, one molecule per primitive cell, axes normal to the ab plane).

    The lattice is alpha-O2's, scaled by the ratio of intermolecular spacings estimated as twice the van der
    Waals radius plus half the bond: exact for O2 up to the bond length, a placeholder for other diatomics.
    """
    vdw = float(Element(symbol).van_der_waals_radius)
    a, b, c, beta = _ALPHA_O2_LATTICE
    scale = (2.0 * vdw + bond / 2.0) / (2.0 * _ALPHA_O2_VDW + _ALPHA_O2_BOND / 2.0)
    lattice = Lattice.from_parameters(a * scale, b * scale, c * scale, 90.0, beta, 90.0)
    normal = np.cross(lattice.matrix[0], lattice.matrix[1])
    frac = lattice.get_fractional_coords(normal / np.linalg.norm(normal) * bond / 2.0)
    frac[1] = 0.0  # Wyckoff 4i (x, 0, z)
    structure = _from_spacegroup(12, lattice, [symbol], [frac])
    source = (
        f'alpha-O2-type molecular crystal (C2/m; alpha-O2 lattice a=5.403 b=3.429 c=5.086 Å beta=132.53°, '
        f'scaled by {scale:.3f}), bond {bond} Å from ASE reference_states; a placeholder for the solid'
    )
    return Seed(f'{symbol}2-molecular-C2m', structure, source)


def _close_packed_estimates(symbol: str) -> list[Seed]:
    radius = _atomic_radius(symbol)
    source = f'estimated from pymatgen atomic radius {radius:.2f} Å (complex ground state not tabulated)'
    return [
        Seed(f'{symbol}-bcc', _cubic_element(symbol, 'bcc', 4 * radius / math.sqrt(3)), source),
        Seed(f'{symbol}-fcc', _cubic_element(symbol, 'fcc', 2 * math.sqrt(2) * radius), source),
        Seed(f'{symbol}-hcp', _hcp(symbol, 2 * radius, 2 * radius * math.sqrt(8 / 3)), source),
    ]


def _atomic_radius(symbol: str) -> float:
    """Metallic radius, else atomic radius; van der Waals radius for noble gases (Å)."""
    element = Element(symbol)
    candidates = (element.van_der_waals_radius,) if element.is_noble_gas else ()
    for value in (*candidates, element.metallic_radius, element.atomic_radius, element.atomic_radius_calculated):
        if value is not None and float(value) > 0:
            return float(value)
    raise ValueError(f'no atomic radius known for {symbol}: cannot size its seed structures')


def _binary_seeds(first: str, second: str) -> list[Seed]:
    cation, anion = sorted((first, second), key=lambda symbol: (Element(symbol).X, symbol))
    anion_charge = min(Element(anion).common_oxidation_states, default=0)
    ionic = anion_charge < 0
    orientations = [(cation, anion)] if ionic else [(cation, anion), (anion, cation)]
    seeds: dict[str, Seed] = {}
    for element_a, element_b in orientations:
        for prototype in _PROTOTYPES:
            if prototype.bonding != 'any' and (prototype.bonding == 'ionic') != ionic:
                continue
            formula = Composition({element_a: prototype.stoichiometry[0], element_b: prototype.stoichiometry[1]})
            label = f'{formula.reduced_formula}-{prototype.name}'
            if label in seeds:
                continue
            seed = _binary_seed(prototype, element_a, element_b, anion_charge if ionic else None, label)
            if seed is not None:
                seeds[label] = seed
    return list(seeds.values())


def _binary_seed(
    prototype: _Prototype, element_a: str, element_b: str, anion_charge: int | None, label: str
) -> Seed | None:
    formula = Composition({element_a: prototype.stoichiometry[0], element_b: prototype.stoichiometry[1]})
    known = _KNOWN_PHASES.get((formula.reduced_formula, prototype.name))
    if known is not None:
        lattice, source = known
        return Seed(label, prototype.build(element_a, element_b, lattice), source)
    bond, estimate = _atomic_radius(element_a) + _atomic_radius(element_b), 'atomic radii'
    if anion_charge is not None:
        charge = Fraction(-anion_charge * prototype.stoichiometry[1], prototype.stoichiometry[0])
        if charge.denominator != 1 or int(charge) not in Element(element_a).oxidation_states:
            return None
        radii = _ionic_radius(element_a, int(charge)), _ionic_radius(element_b, anion_charge)
        if None not in radii:  # else a covalent compound (SiC): keep the atomic radii
            bond = sum(radii) + _BOND_VALENCE_B * math.log(prototype.coordination / 6)
            estimate = f'ionic radii {element_a}{int(charge):+d}/{element_b}{anion_charge:+d}'
    structure = prototype.build(element_a, element_b)
    structure.scale_lattice(structure.volume * (bond / _shortest_ab_distance(structure, element_a, element_b)) ** 3)
    source = f'{prototype.name} prototype ({prototype.reference}) rescaled to a {bond:.2f} Å bond from {estimate}'
    return Seed(label, structure, source)


def _ionic_radius(symbol: str, charge: int) -> float | None:
    """pymatgen's average ionic radius at ``charge``, or at the nearest tabulated charge of the same sign."""
    radii = {int(ox): float(radius) for ox, radius in Element(symbol).ionic_radii.items()}
    same_sign = {ox: radius for ox, radius in radii.items() if ox * charge > 0}
    if not same_sign:
        return None
    return same_sign[min(same_sign, key=lambda ox: (abs(ox - charge), ox))]


def _shortest_ab_distance(structure: Structure, element_a: str, element_b: str) -> float:
    distances = structure.distance_matrix
    is_a = np.array([site.specie.symbol == element_a for site in structure])
    is_b = np.array([site.specie.symbol == element_b for site in structure])
    return float(distances[np.ix_(is_a, is_b)].min())
