"""The greedy choice of distinct structures that the cheap pass ranks by (``first_distinct``)."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from aiida_crystalgan.analysis.matching import first_distinct


def test_keeps_the_first_of_each_kind_until_the_count_is_reached():
    first = Structure(Lattice.cubic(4.2), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    layered = Structure(Lattice.tetragonal(3.0, 5.0), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.3]])
    other_formula = Structure(Lattice.cubic(4.0), ['Nb', 'O', 'O'], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])
    structures = [first, first.copy(), layered, first.copy(), other_formula, layered.copy()]

    assert first_distinct(structures, 10) == ([0, 2, 4], {1: 0, 3: 0, 5: 2})
    # it stops once `count` are kept: what comes after is not examined
    assert first_distinct(structures, 2) == ([0, 2], {1: 0})
    assert first_distinct([], 3) == ([], {})
