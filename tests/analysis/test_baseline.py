"""Random symmetric structure baseline with PyXtal."""

from __future__ import annotations

import pytest

from aiida_crystalgan.analysis.baseline import compatible_space_groups, random_crystals
from aiida_crystalgan.analysis.validity import minimum_distance


def test_seeded_generation_is_reproducible():
    first = random_crystals(['NbO2', 'NbO'], 2, formula_units=(1, 2), seed=7, space_groups=range(2, 75))
    second = random_crystals(['NbO2', 'NbO'], 2, formula_units=(1, 2), seed=7, space_groups=range(2, 75))
    assert [c.structure for c in first] == [c.structure for c in second]
    assert [(c.space_group, c.formula_units) for c in first] == [(c.space_group, c.formula_units) for c in second]
    other = random_crystals(['NbO2', 'NbO'], 2, formula_units=(1, 2), seed=8, space_groups=range(2, 75))
    assert [c.structure for c in other] != [c.structure for c in first]


def test_compositions_and_formula_units():
    crystals = random_crystals('Nb4O10', 3, formula_units=(2,), seed=1, space_groups=range(2, 75))
    assert len(crystals) == 3
    for crystal in crystals:
        assert crystal.structure.composition.reduced_formula == 'Nb2O5'
        assert len(crystal.structure) == 14
        assert crystal.formula_units == 2
        assert 2 <= crystal.space_group < 75
        assert minimum_distance(crystal.structure) > 0.5


def test_compatible_space_groups():
    cubic = [221, 225, 229]
    assert compatible_space_groups('Nb', 1, cubic) == [221]  # fcc and bcc conventional cells hold 4 and 2 atoms
    assert compatible_space_groups('Nb', 2, cubic) == [221, 229]
    assert compatible_space_groups('NbO', 4, cubic) == [221, 225]


def test_impossible_requests():
    with pytest.raises(ValueError, match='no space group among the 2 allowed fits NbO2'):
        random_crystals('NbO2', 1, formula_units=(1,), space_groups=[221, 225])
    with pytest.raises(ValueError, match='between 1 and 230'):
        random_crystals('NbO2', 1, space_groups=[0, 2])
    with pytest.raises(ValueError, match='formula_units'):
        random_crystals('NbO2', 1, formula_units=(0,))
    with pytest.raises(ValueError, match='volume_factor'):
        random_crystals('NbO2', 1, volume_factor=0.01)


def test_retry_limit(monkeypatch):
    import pyxtal

    def fail(self, *args, **kwargs):
        raise RuntimeError('could not place atoms')

    monkeypatch.setattr(pyxtal.pyxtal, 'from_random', fail)
    with pytest.raises(RuntimeError, match=r'generated only 0 of 2 random NbO2 crystals in 3 failed attempts'):
        random_crystals('NbO2', 2, space_groups=range(2, 20), max_attempts=3)
