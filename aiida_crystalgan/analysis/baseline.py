"""Random symmetric structure search (the baseline a generative model must beat), with PyXtal.

For each composition, random crystals are drawn in space groups chosen uniformly among those whose
Wyckoff positions can hold the atoms, for a random number of formula units. The output is plain pymatgen
structures, so the same post-processing, relaxation and metrics run on the baseline and on the GAN.
Seeded runs are reproducible: every random choice, PyXtal's included, is drawn from one numpy generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Composition, Structure

__all__ = ('RandomCrystal', 'compatible_space_groups', 'random_crystals')


@dataclass(frozen=True)
class RandomCrystal:
    """One random crystal: the structure, the space group it was generated in and its number of formula units."""

    structure: Structure
    space_group: int
    formula_units: int


@cache
def _group(number: int):
    from pyxtal.symmetry import Group

    return Group(number)


@cache
def _compatible(counts: tuple[int, ...], space_groups: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(number for number in space_groups if _group(number).check_compatible(list(counts))[0])


def compatible_space_groups(
    composition: Composition | str, formula_units: int = 1, space_groups: Sequence[int] = range(2, 231)
) -> list[int]:
    """Space groups (among ``space_groups``) with Wyckoff positions that fit ``formula_units`` of ``composition``."""
    _, counts = _formula_unit(composition)
    return list(_compatible(tuple(count * formula_units for count in counts), _checked_groups(space_groups)))


def random_crystals(
    compositions: Sequence[Composition | str] | Composition | str,
    count: int,
    formula_units: Sequence[int] = (1, 2, 3, 4),
    seed: int | None = 0,
    space_groups: Sequence[int] = range(2, 231),
    volume_factor: float = 1.1,
    max_attempts: int | None = None,
) -> list[RandomCrystal]:
    """``count`` random symmetric crystals of every composition, in order of ``compositions``.

    A composition is taken as one formula unit of its reduced formula (``'Nb4O10'`` means Nb2O5); each crystal
    gets a number of formula units drawn from ``formula_units``. ``volume_factor`` (0.5 to 5) scales PyXtal's
    volume estimate from atomic radii. Raises ValueError when no space group fits any of the formula units, and
    RuntimeError when ``max_attempts`` (default ``10 * count`` per composition) generations fail.
    """
    if isinstance(compositions, str | Composition):
        compositions = [compositions]
    if count < 0:
        raise ValueError(f'count must be >= 0, got {count}')
    if not formula_units or any(int(n) < 1 for n in formula_units):
        raise ValueError(f'formula_units must be positive integers, got {list(formula_units)}')
    if not 0.5 <= volume_factor <= 5.0:
        raise ValueError(f'volume_factor must be between 0.5 and 5 (PyXtal stalls in dense cells), got {volume_factor}')
    groups = _checked_groups(space_groups)
    rng = np.random.default_rng(seed)
    crystals: list[RandomCrystal] = []
    for composition in compositions:
        crystals.extend(
            _random_crystals_of(composition, count, formula_units, groups, rng, volume_factor, max_attempts)
        )
    return crystals


def _random_crystals_of(
    composition: Composition | str,
    count: int,
    formula_units: Sequence[int],
    groups: tuple[int, ...],
    rng: np.random.Generator,
    volume_factor: float,
    max_attempts: int | None,
) -> list[RandomCrystal]:
    from pyxtal import pyxtal

    species, counts = _formula_unit(composition)
    options = {int(n): _compatible(tuple(c * int(n) for c in counts), groups) for n in sorted(set(formula_units))}
    options = {n: numbers for n, numbers in options.items() if numbers}
    if not options:
        raise ValueError(
            f'no space group among the {len(groups)} allowed fits {Composition(composition).reduced_formula} with '
            f'formula units {sorted(set(formula_units))}: allow more formula units or space groups'
        )
    choices = sorted(options)
    attempts = max_attempts if max_attempts is not None else 10 * max(count, 1)
    crystals: list[RandomCrystal] = []
    failures: list[str] = []
    while len(crystals) < count:
        if len(failures) >= attempts:
            raise RuntimeError(
                f'generated only {len(crystals)} of {count} random {Composition(composition).reduced_formula} crystals '
                f'in {attempts} failed attempts (last: {failures[-1]}); raise max_attempts or volume_factor'
            )
        units = int(rng.choice(choices))
        group = int(rng.choice(options[units]))
        crystal = pyxtal()
        try:
            crystal.from_random(3, group, species, [c * units for c in counts], factor=volume_factor, random_state=rng)
        except Exception as exception:  # PyXtal signals failures with several exception types
            failures.append(f'space group {group}, {units} f.u.: {exception}')
            continue
        if not crystal.valid:
            failures.append(f'space group {group}, {units} f.u.: no valid crystal')
            continue
        crystals.append(RandomCrystal(crystal.to_pymatgen(), group, units))
    return crystals


def _formula_unit(composition: Composition | str) -> tuple[list[str], list[int]]:
    reduced = Composition(composition).reduced_composition.element_composition
    if reduced.num_atoms == 0:
        raise ValueError(f'empty composition {composition!r}')
    symbols = [element.symbol for element in reduced.elements]
    counts = [reduced[symbol] for symbol in symbols]
    if any(abs(c - round(c)) > 1e-8 for c in counts):
        raise ValueError(f'composition {composition!r} has non-integer amounts')
    return symbols, [round(c) for c in counts]


def _checked_groups(space_groups: Sequence[int]) -> tuple[int, ...]:
    groups = tuple(sorted({int(number) for number in space_groups}))
    if not groups or groups[0] < 1 or groups[-1] > 230:
        raise ValueError(f'space groups must be numbers between 1 and 230, got {list(space_groups)}')
    return groups
