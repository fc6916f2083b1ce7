"""The screening funnel: fast filters and fingerprint dedupe of the executable, best-first selection, funnel metrics."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from aiida_crystalgan.analysis.metrics import funnel_metrics
from aiida_crystalgan.analysis.postprocess import DropReason, PostprocessOptions
from aiida_crystalgan.analysis.screening import postprocess_in_order, predicted_energy_above_hull, select_ranked
from aiida_crystalgan.io import StructureRecord


def record(structure: Structure, label: str) -> StructureRecord:
    return StructureRecord.from_ase(AseAtomsAdaptor.get_atoms(structure), label=label)


@pytest.fixture(scope='module')
def model():
    """An untrained model over Nb and O (its physics head gives arbitrary but finite energies)."""
    import torch

    from aiida_crystalgan.gan import CrystalGan, GanConfig
    from aiida_crystalgan.gan.data import fit_normalisation

    torch.manual_seed(0)
    config = GanConfig(n_max=8, generator_width=16, critic_width=8, physics_width=8, latent_dim=8)
    rocksalt = Structure.from_spacegroup(225, Lattice.cubic(4.24), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    records = [record(rocksalt, 'NbO')]
    records[0].energy = -70.0
    normalisation = fit_normalisation(records, ['Nb', 'O'], 1.5, config.cutoff, config.max_images)
    return CrystalGan(config, normalisation)


def test_fast_filters_and_fingerprint_dedupe(model, rocksalt, bcc):
    """Each fast filter drops its own failure; copies moved, permuted or repeated are near-duplicates."""
    from aiida_crystalgan.gan.screening import ScreeningCriteria, screen

    primitive = rocksalt.get_primitive_structure()
    moved = primitive.copy()
    moved.translate_sites(list(range(len(moved))), [0.13, 0.2, 0.31])
    permuted = Structure(primitive.lattice, list(reversed(primitive.species)), list(reversed(primitive.frac_coords)))
    supercell = primitive * (2, 1, 1)
    cscl = Structure(Lattice.cubic(2.6), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    close = Structure(Lattice.cubic(3.4), ['Nb', 'O'], [[0, 0, 0], [0.05, 0.05, 0.05]])
    dense = Structure(Lattice.cubic(1.9), ['Nb', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    records = [
        record(primitive, 'NbO'),
        record(moved, 'NbO'),
        record(permuted, 'NbO'),
        record(supercell, 'NbO'),
        record(cscl, 'NbO'),
        record(close, 'NbO'),
        record(dense, 'NbO'),
        record(bcc, 'NbO'),
    ]
    result = screen(model, records, ScreeningCriteria(min_distance=1.0))
    assert result.reasons[5:] == ['min_distance', 'volume', 'composition']
    assert sorted(result.reasons[:4]).count('duplicate') == 3  # the lowest in energy of the four copies is kept
    assert result.reasons[4] == ''
    assert result.counts == {
        'generated': 8,
        'composition': 1,
        'volume': 1,
        'min_distance': 1,
        'duplicate': 3,
        'ranked': 2,
    }
    energies = result.predicted_energy_per_atom[result.ranked]
    assert np.all(np.isfinite(energies)) and list(energies) == sorted(energies)
    summary = result.to_dict(records)
    assert summary['per_composition'] == {'NbO': {'generated': 8, 'ranked': 2}}
    assert [row[0] for row in summary['ranked']] == result.ranked


def test_bad_screening_keys_are_refused():
    from aiida_crystalgan.gan.screening import ScreeningCriteria

    with pytest.raises(ValueError, match='unknown screening key'):
        ScreeningCriteria.from_dict({'min_distanse': 1.0})
    with pytest.raises(ValueError, match='min_volume_per_atom'):
        ScreeningCriteria.from_dict({'min_volume_per_atom': 50.0})


def test_predicted_energy_above_hull():
    """The hull energy per atom of each composition is subtracted from the predicted energy per atom."""
    diagram = PhaseDiagram(
        [PDEntry(Composition('Nb'), -10.0), PDEntry(Composition('O2'), -10.0), PDEntry(Composition('NbO'), -18.0)]
    )
    e_hull = predicted_energy_above_hull(diagram, ['NbO', 'Nb', 'NbO'], [-8.5, -9.0, -9.5])
    assert e_hull == pytest.approx([0.5, 1.0, -0.5])


def test_select_ranked_stops_at_count_and_drops_known_and_duplicates(rocksalt, rutile, bcc):
    """Best first: a training match and a duplicate of a selected candidate are dropped, then it stops at two."""
    nbo = Structure.from_spacegroup(221, Lattice.cubic(4.21), ['Nb', 'O'], [[0, 0.5, 0.5], [0.5, 0, 0]])
    candidates = {0: rutile, 1: rocksalt, 2: rutile.copy(), 3: nbo, 4: bcc}
    loaded = []

    def load(index: int) -> Structure:
        loaded.append(index)
        return candidates[index]

    options = PostprocessOptions(require_charge_balance=False)
    selection = select_ranked(load, [1, 0, 2, 3, 4], count=2, training=[rocksalt], options=options)
    assert list(selection.structures) == [0, 3]
    assert loaded == [1, 0, 2, 3]  # the last candidate is never post-processed
    assert selection.counts['examined'] == 4
    assert selection.counts['in_training'] == 1 and selection.counts['duplicate'] == 1
    assert selection.to_dict()['selected'] == [0, 3]

    bounded = select_ranked(
        candidates.__getitem__, [1, 0, 2, 3, 4], count=2, training=[rocksalt], options=options, max_examined=3
    )
    assert list(bounded.structures) == [0] and bounded.counts['examined'] == 3


def test_postprocess_in_order_is_lazy_and_a_selection_is_its_prefix(rocksalt, rutile, bcc):
    """The lazy walk post-processes one candidate per step, and its kept candidates begin with any smaller selection."""
    nbo = Structure.from_spacegroup(221, Lattice.cubic(4.21), ['Nb', 'O'], [[0, 0.5, 0.5], [0.5, 0, 0]])
    candidates = {0: rutile, 1: rocksalt, 2: rutile.copy(), 3: nbo, 4: bcc, 5: 'not a structure'}
    loaded = []

    def load(index: int) -> Structure:
        loaded.append(index)
        return candidates[index]

    options = PostprocessOptions(require_charge_balance=False)
    walk = postprocess_in_order(load, [1, 0, 2, 5, 3, 4], training=[rocksalt], options=options)
    report, structure = next(walk)
    assert loaded == [1] and structure is None and report.reason == DropReason.IN_TRAINING
    rest = list(walk)
    assert [report.index for report, structure in rest if structure is not None] == [0, 3, 4]
    reasons = {report.index: report.reason for report, _ in rest}
    assert reasons[2] == DropReason.DUPLICATE and reasons[5] == DropReason.ERROR
    assert next(report for report, _ in rest if report.index == 2).match_index == 0
    for count in (1, 2, 3):
        selection = select_ranked(candidates.__getitem__, [1, 0, 2, 5, 3, 4], count, [rocksalt], options)
        assert list(selection.structures) == [0, 3, 4][:count]


def test_funnel_metrics():
    screening = {
        'counts': {'generated': 100, 'composition': 0, 'volume': 10, 'min_distance': 10, 'duplicate': 40, 'ranked': 40},
        'per_composition': {'NbO2': {'generated': 50, 'ranked': 30}, 'NbO3': {'generated': 50, 'ranked': 10}},
    }
    selection = {'counts': {'examined': 12, 'selected': 8, 'in_training': 2, 'duplicate': 1}}
    row = {
        'is_local_minimum': True,
        'e_above_hull': 0.0,
        'is_novel': True,
        'dynamically_stable': True,
        'rediscovered': None,
        'passes': True,
    }
    evaluation = {
        'c1': row,
        'c2': {**row, 'is_novel': False, 'rediscovered': 'NbO2'},
        'c3': {**row, 'is_local_minimum': False, 'dynamically_stable': False, 'passes': False},
        'c4': {**row, 'dynamically_stable': None, 'passes': False},
    }
    metrics = funnel_metrics(screening, selection, evaluation, num_cheap_pass=8, num_references=2)
    assert metrics['structural_validity'] == pytest.approx(0.8)
    assert metrics['compositional_validity'] == pytest.approx(0.5)  # NbO3 has no charge-balanced assignment
    assert metrics['uniqueness'] == pytest.approx(0.5)
    assert metrics['novelty'] == pytest.approx(0.8)
    assert metrics['n_sun'] == 1 and metrics['sun_rate_per_relaxation'] == pytest.approx(0.25)
    assert metrics['phonon_stable_fraction'] == pytest.approx(2 / 3)
    assert metrics['n_rediscovered'] == 1 and metrics['rediscovered_phases'] == 'NbO2'
    assert metrics['rediscovery_rate'] == pytest.approx(0.5)
    assert metrics['n_passed'] == 2 and metrics['n_local_minima'] == 3


def test_predicted_energies_are_those_the_screening_ranks_by(model, rocksalt):
    """The public prediction gives every record the energy ``screen`` ranks it by, whatever the batch size."""
    from aiida_crystalgan.gan.screening import predicted_energy_per_atom, screen

    primitive = rocksalt.get_primitive_structure()
    strained = [primitive.copy() for _ in range(3)]
    for index, structure in enumerate(strained):
        structure.scale_lattice(structure.volume * (0.9 + 0.1 * index))
    records = [record(structure, 'NbO') for structure in (*strained, rocksalt)]
    predicted = predicted_energy_per_atom(model, records, batch_size=2)
    result = screen(model, records)
    assert len(predicted) == len(records) and np.all(np.isfinite(predicted))
    np.testing.assert_allclose(predicted[result.ranked], result.predicted_energy_per_atom[result.ranked], atol=1e-10)
    assert len(set(np.round(predicted[:3], 8))) == 3  # strained copies differ
    assert predicted[3] == pytest.approx(predicted[1], abs=1e-6)  # the conventional cell is the same crystal


def test_even_share_order_takes_the_compositions_in_turn():
    """Best first within a composition, one composition at a time; an offset of one composition changes nothing."""
    from aiida_crystalgan.analysis.screening import even_share_order

    formulas = ['NbO2', 'NbO2', 'Nb2O5', 'NbO2', 'Nb2O5', 'NbO']
    scores = [0.30, 0.10, 0.05, 0.20, 0.40, 0.90]
    order = even_share_order(formulas, scores)
    assert order == [2, 1, 5, 4, 3, 0]
    offset = [score + (5.0 if formula == 'Nb2O5' else 0.0) for formula, score in zip(formulas, scores)]
    shifted = even_share_order(formulas, offset)
    assert shifted == [1, 5, 2, 3, 4, 0]  # a global ranking would put both Nb2O5 candidates last
    assert {formulas[position] for position in shifted[:3]} == set(formulas)
    assert even_share_order([], []) == []
