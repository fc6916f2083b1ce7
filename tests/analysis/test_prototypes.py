"""Seed structures: system parsing, Nb-O phases from crystallographic data, generality for other systems."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from aiida_crystalgan.analysis.validity import charge_balanced, minimum_distance, structurally_valid
from aiida_crystalgan.structures.prototypes import Seed, parse_system, seed_structures


@pytest.mark.parametrize(
    ('system', 'expected'),
    [
        ('Nb-O', ['Nb', 'O']),
        ('O-Nb', ['Nb', 'O']),
        (' Ti - O ', ['O', 'Ti']),
        ('Nb', ['Nb']),
        ('Li-Fe-O', ['Fe', 'Li', 'O']),
    ],
)
def test_parse_system(system, expected):
    assert parse_system(system) == expected


@pytest.mark.parametrize(
    ('system', 'message'),
    [
        ('', 'non-empty'),
        ('   ', 'non-empty'),
        ('Nb--O', 'empty element'),
        ('Nb-', 'empty element'),
        ('-O', 'empty element'),
        ('Xx-O', "'Xx' is not an element"),
        ('nb-o', "'nb' is not an element"),
        ('NbO', "'NbO' is not an element"),
        ('Nb-Nb', 'repeated'),
        ('D-O', 'isotope'),
        ('Nb_O', 'is not an element'),
        (None, 'non-empty string'),
    ],
)
def test_parse_system_rejects_malformed(system, message):
    with pytest.raises(ValueError, match=message):
        parse_system(system)


def _by_label(system: str, **kwargs) -> dict[str, Seed]:
    seeds = seed_structures(system, **kwargs)
    labels = [seed.label for seed in seeds]
    assert len(labels) == len(set(labels)), 'labels must be unique'
    return {seed.label: seed for seed in seeds}


def _spacegroup(structure) -> int:
    return SpacegroupAnalyzer(structure, symprec=0.01).get_space_group_number()


def test_nb_o_known_phases():
    seeds = _by_label('Nb-O')
    assert {'Nb-bcc', 'NbO-NbO-type', 'NbO2-rutile', 'Nb2O5-B-Nb2O5-type', 'O2-molecular-C2m'} <= set(seeds)

    nb = seeds['Nb-bcc'].structure
    assert _spacegroup(nb) == 229
    assert nb.lattice.a == pytest.approx(3.30, abs=0.01)

    nbo = seeds['NbO-NbO-type'].structure
    assert _spacegroup(nbo) == 221
    assert nbo.lattice.a == pytest.approx(4.21, abs=0.01)
    assert nbo.composition == Composition('Nb3O3')
    assert minimum_distance(nbo) == pytest.approx(4.2101 / 2, abs=1e-3)  # Nb-O square-planar bond: a / 2

    rutile = seeds['NbO2-rutile'].structure
    assert _spacegroup(rutile) == 136
    assert rutile.lattice.abc == pytest.approx((4.846, 4.846, 3.032), abs=0.01)

    nb2o5 = seeds['Nb2O5-B-Nb2O5-type'].structure
    assert nb2o5.composition.reduced_formula == 'Nb2O5'
    assert _spacegroup(nb2o5) == 15
    assert 'experimental' in seeds['NbO2-rutile'].source
    assert 'OQMD' in seeds['Nb2O5-B-Nb2O5-type'].source


def test_nb_o_seeds_are_sane():
    for seed in seed_structures('Nb-O'):
        assert seed.source
        assert structurally_valid(seed.structure), seed.label
        assert minimum_distance(seed.structure) > 1.0, seed.label
        formula = seed.label.split('-')[0]
        assert seed.structure.composition.reduced_formula == Composition(formula).reduced_formula
        if len(seed.structure.composition) == 2:
            assert charge_balanced(seed.structure.composition), seed.label
            assert 1.8 < minimum_distance(seed.structure) < 2.4, seed.label  # a Nb-O bond, estimated or exact


def test_ti_o_seeds_follow_oxidation_states():
    seeds = _by_label('Ti-O')
    assert {'Ti-hcp', 'TiO-rocksalt', 'TiO2-rutile', 'Ti2O3-corundum'} <= set(seeds)
    assert not any(label.startswith('Ti2O5') for label in seeds), 'Ti5+ does not exist'
    assert seeds['TiO2-rutile'].structure.lattice.a == pytest.approx(4.594, abs=1e-3)
    assert 'rescaled' in seeds['Ti2O3-corundum'].source
    assert all(structurally_valid(seed.structure) for seed in seeds.values())


def test_metallic_pair_gets_intermetallic_prototypes():
    seeds = _by_label('Li-Fe')
    assert {'Fe-bcc', 'Li-bcc', 'LiFe-CsCl', 'LiFe2-fluorite', 'Li2Fe-fluorite'} <= set(seeds)
    assert not any('rutile' in label or 'corundum' in label for label in seeds), 'oxide types need an anion'
    assert all(structurally_valid(seed.structure) for seed in seeds.values())


def test_gaseous_and_complex_elements_get_placeholders():
    seeds = _by_label('Ga-N')
    assert {'N2-molecular-C2m', 'Ga-bcc', 'Ga-fcc', 'Ga-hcp', 'GaN-wurtzite'} <= set(seeds)
    assert 'placeholder' in seeds['N2-molecular-C2m'].source
    assert minimum_distance(seeds['N2-molecular-C2m'].structure) == pytest.approx(1.10, abs=0.01)


def test_max_atoms_uses_primitive_cells():
    seeds = _by_label('Nb-O', max_atoms=12)
    assert all(len(seed.structure) <= 12 for seed in seeds.values())
    assert len(seeds['Nb2O3-corundum'].structure) == 10  # 30-atom hexagonal cell -> rhombohedral primitive
    assert 'Nb2O5-B-Nb2O5-type' not in seeds  # 14 atoms even when primitive
    smallest = _by_label('Nb-O', max_atoms=2)
    assert {'Nb-bcc', 'O2-molecular-C2m'} <= set(smallest)  # every element keeps a seed: the hull needs them
    with pytest.raises(ValueError, match='max_atoms'):
        seed_structures('Nb-O', max_atoms=0)


def test_ternary_system_has_all_pairs():
    labels = {seed.label for seed in seed_structures('Li-Nb-O', max_atoms=8)}
    assert {'Li-bcc', 'Nb-bcc', 'Li2O-antifluorite', 'NbO-NbO-type', 'LiNb-CsCl'} <= labels


def test_covalent_and_nitride_systems():
    seeds = _by_label('C-Si')
    assert minimum_distance(seeds['C-diamond'].structure) == pytest.approx(3.57 * 3**0.5 / 4, abs=1e-3)
    assert len(seeds['Si-diamond'].structure) == 8
    # C4- has no tabulated ionic radius: the Si-C bond comes from atomic radii, close to the real 1.89 Å
    assert 1.7 < minimum_distance(seeds['SiC-zincblende'].structure) < 2.0
    assert 'atomic radii' in seeds['SiC-zincblende'].source
    assert set(_by_label('Li-N')) == {'Li-bcc', 'N2-molecular-C2m', 'Li3N-anti-ReO3'}
