"""Convex hull and energy above the hull."""

from __future__ import annotations

import pytest
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition

from aiida_crystalgan.analysis.hull import build_phase_diagram, energy_above_hull

# Toy energies (eV, total per formula as written): Nb -10 eV/atom, O -5 eV/atom, NbO2 formation -2 eV/atom.
ENTRIES = [('Nb', -10.0), ('O2', -10.0), ('NbO2', -10.0 - 10.0 - 6.0), ('Nb2O5', -20.0 - 25.0 - 14.0)]


@pytest.fixture
def diagram():
    return build_phase_diagram(ENTRIES)


def test_stable_phase_is_on_the_hull(diagram):
    assert energy_above_hull(diagram, 'NbO2', -26.0) == pytest.approx(0.0, abs=1e-9)
    assert energy_above_hull(diagram, 'Nb2O5', -59.0) == pytest.approx(0.0, abs=1e-9)


def test_unstable_phase_above_the_hull(diagram, nbo):
    # At NbO (x_O = 1/2, between Nb at 0 and NbO2 at x_O = 2/3, -2 eV/atom) the hull is at -1.5 eV/atom.
    assert energy_above_hull(diagram, 'NbO', -15.0 - 2 * 0.8) == pytest.approx(0.7)
    # structures are accepted as compositions; energy is that of the whole cell (Nb3O3)
    assert energy_above_hull(diagram, nbo, 3 * (-15.0 - 2 * 0.8)) == pytest.approx(0.7)
    # a polymorph of a stable phase 0.1 eV/atom higher
    assert energy_above_hull(diagram, Composition('Nb2O4'), 2 * -26.0 + 0.6) == pytest.approx(0.1)


def test_phase_below_the_hull_is_negative(diagram):
    assert energy_above_hull(diagram, 'NbO', -15.0 - 2 * 2.0) == pytest.approx(-0.5)


def test_elements_outside_the_diagram(diagram):
    with pytest.raises(ValueError, match=r"TiO2 has elements \['Ti'\] outside the Nb-O phase diagram"):
        energy_above_hull(diagram, 'TiO2', -20.0)


def test_missing_elemental_reference():
    with pytest.raises(ValueError, match='no elemental reference energy for O'):
        build_phase_diagram([('Nb', -10.0), ('NbO2', -26.0)])
    with pytest.raises(ValueError, match='no entries'):
        build_phase_diagram([])
    with pytest.raises(ValueError, match='not finite'):
        build_phase_diagram([('Nb', float('nan')), ('O2', -10.0)])


def test_pd_entries_accepted():
    diagram = build_phase_diagram([PDEntry(Composition('Nb'), -10.0), PDEntry(Composition('O'), -5.0)])
    assert energy_above_hull(diagram, 'NbO', -15.0) == pytest.approx(0.0)
