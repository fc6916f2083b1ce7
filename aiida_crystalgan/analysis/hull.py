"""Convex hull and energy above the hull with pymatgen's ``PhaseDiagram``.

All energies are total energies in eV of the composition as written (``('Nb2O5', -66.1)`` is 7 atoms'
worth). They must come from one engine with one set of settings: mixing DFT and MLIP energies, or
different DFT settings, makes the hull meaningless.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

__all__ = (
    'BELOW_HULL_TOLERANCE',
    'EntryLike',
    'build_phase_diagram',
    'energy_above_hull',
    'hull_phases',
    'named_entry',
)

EntryLike: TypeAlias = 'PDEntry | tuple[Composition | Structure | str, float]'

#: eV/atom: a phase this far below the hull of the known phases is a possible new ground state, not a routine result.
BELOW_HULL_TOLERANCE = 1e-3


def _composition(value: Composition | Structure | str) -> Composition:
    composition = value.composition if isinstance(value, Structure) else Composition(value)
    if composition.num_atoms <= 0:
        raise ValueError(f'empty composition {value!r}')
    return composition.element_composition


def _entry(value: EntryLike, name: str | None = None) -> PDEntry:
    if isinstance(value, PDEntry):
        return value
    composition, energy = value
    if not np.isfinite(energy):
        raise ValueError(f'energy of {composition} is not finite: {energy}')
    return PDEntry(_composition(composition), float(energy), name=name)


def named_entry(name: str, composition: Composition | Structure | str, energy: float) -> PDEntry:
    """A phase-diagram entry of total energy ``energy`` (eV) that :func:`hull_phases` reports as ``name``."""
    return _entry((composition, energy), name)


def build_phase_diagram(entries: Iterable[EntryLike]) -> PhaseDiagram:
    """The phase diagram of ``entries`` (``PDEntry`` or ``(composition, total energy in eV)`` pairs).

    Raises ValueError when there are no entries or an element of the system has no elemental entry.
    """
    pd_entries = [_entry(value) for value in entries]
    if not pd_entries:
        raise ValueError('cannot build a phase diagram from no entries')
    elements = sorted({element for entry in pd_entries for element in entry.composition.elements})
    elemental = {entry.composition.elements[0] for entry in pd_entries if entry.composition.is_element}
    missing = [element.symbol for element in elements if element not in elemental]
    if missing:
        raise ValueError(
            f'no elemental reference energy for {", ".join(missing)}: the hull needs one entry of each pure element '
            'computed with the same engine'
        )
    return PhaseDiagram(pd_entries)


def energy_above_hull(diagram: PhaseDiagram, composition: Composition | Structure | str, energy: float) -> float:
    """Energy above the hull in eV/atom of a phase of ``composition`` with total energy ``energy`` (eV).

    Negative when the phase lies below the current hull, i.e. it would be a new stable phase. Raises ValueError
    when the composition has elements outside the diagram's.
    """
    composition = _composition(composition)
    outside = sorted({element.symbol for element in composition.elements} - {e.symbol for e in diagram.elements})
    if outside:
        system = '-'.join(sorted(element.symbol for element in diagram.elements))
        raise ValueError(f'{composition.reduced_formula} has elements {outside} outside the {system} phase diagram')
    entry = _entry((composition, energy))
    _, e_above_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True, check_stable=False)
    return float(e_above_hull)


def hull_phases(diagram: PhaseDiagram) -> list[dict[str, object]]:
    """The phases on the hull, along the composition axis: ``name``, ``formula``, ``energy_per_atom`` and
    ``formation_energy_per_atom`` (eV/atom, relative to the elemental phases of the hull)."""
    last = diagram.elements[-1]
    entries = sorted(
        diagram.stable_entries,
        key=lambda entry: (entry.composition.get_atomic_fraction(last), entry.composition.reduced_formula),
    )
    return [
        {
            'name': entry.name,
            'formula': entry.composition.reduced_formula,
            'energy_per_atom': float(entry.energy_per_atom),
            'formation_energy_per_atom': float(diagram.get_form_energy_per_atom(entry)),
        }
        for entry in entries
    ]
