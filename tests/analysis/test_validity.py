"""Structural validity (distances, volume) and charge balance."""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Lattice, Structure

from aiida_crystalgan.analysis.validity import (
    ValidityCriteria,
    charge_balanced,
    minimum_distance,
    structural_problems,
    structurally_valid,
)


def test_minimum_distance_bcc(bcc):
    assert minimum_distance(bcc) == pytest.approx(3.30 * math.sqrt(3) / 2)
    assert structurally_valid(bcc)


def test_minimum_distance_counts_periodic_images():
    single = Structure(Lattice.cubic(3.0), ['Nb'], [[0, 0, 0]])
    assert minimum_distance(single) == pytest.approx(3.0)
    squashed = Structure(Lattice.tetragonal(3.0, 0.4), ['H'], [[0, 0, 0]])
    assert minimum_distance(squashed) == pytest.approx(0.4)
    assert (
        'shortest interatomic distance 0.400'
        in structural_problems(squashed, ValidityCriteria(min_volume_per_atom=0.1))[0]
    )


def test_close_pair_across_the_boundary_is_invalid():
    structure = Structure(Lattice.cubic(5.0), ['Nb', 'O'], [[0.01, 0, 0], [0.95, 0, 0]])
    assert minimum_distance(structure) == pytest.approx(0.3)
    assert not structurally_valid(structure)
    assert structurally_valid(structure, ValidityCriteria(min_distance=0.2))


def test_volume_bounds(bcc):
    expanded = bcc.copy()
    expanded.scale_lattice(bcc.volume * 20)
    assert 'above 150.0' in structural_problems(expanded)[0]
    collapsed = bcc.copy()
    collapsed.scale_lattice(bcc.volume / 10)
    assert 'below 2.0' in structural_problems(collapsed)[0]
    assert structurally_valid(collapsed, ValidityCriteria(min_distance=0.5, min_volume_per_atom=1.0))


@pytest.mark.parametrize('kwargs', [{'min_distance': -1.0}, {'min_volume_per_atom': 10.0, 'max_volume_per_atom': 5.0}])
def test_bad_criteria(kwargs):
    with pytest.raises(ValueError):
        ValidityCriteria(**kwargs)


@pytest.mark.parametrize(
    ('formula', 'balanced'),
    [
        ('NbO', True),
        ('NbO2', True),
        ('Nb2O5', True),
        ('Fe3O4', True),  # mixed valence: one Fe2+ and two Fe3+
        ('Nb4O5', True),  # mixed valence Nb2+/Nb3+
        ('Nb', True),
        ('O2', True),
        ('LiFe', True),  # all-metal alloy
        ('NaCl2', False),
        ('NbO4', False),
        ('Nb2O', False),
    ],
)
def test_charge_balance(formula, balanced):
    assert charge_balanced(formula) is balanced


def test_charge_balance_of_a_structure(rutile):
    assert charge_balanced(rutile)
