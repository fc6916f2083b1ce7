"""Metrics: validity, uniqueness, novelty, match rate / RMSE, coverage, stability, S.U.N. and phonons."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from aiida_crystalgan.analysis.fingerprints import composition_fingerprint, structure_fingerprint
from aiida_crystalgan.analysis.hull import build_phase_diagram
from aiida_crystalgan.analysis.metrics import compute_metrics, coverage, match_rate_and_rmse, phonon_stable_rate


def _rotated_supercell(structure: Structure) -> Structure:
    copy = structure.copy()
    copy.apply_operation(SymmOp.from_axis_angle_and_translation([0, 0, 1], 25.0))
    copy.make_supercell([2, 1, 1])
    return copy


def test_structure_fingerprint_is_invariant(rutile):
    fingerprint = structure_fingerprint(rutile)
    assert fingerprint.shape == (61,)
    assert np.allclose(structure_fingerprint(_rotated_supercell(rutile)), fingerprint, atol=1e-6)
    assert (
        np.linalg.norm(
            structure_fingerprint(rutile)
            - structure_fingerprint(
                Structure.from_spacegroup(221, Lattice.cubic(4.21), ['Nb', 'O'], [[0, 0.5, 0.5], [0.5, 0, 0]])
            )
        )
        > 0.4
    )


def test_fingerprint_of_cubic_metals(bcc):
    # layout: CN 1 at 0 (wt, single bond), CN 2 at 2 (wt + 5 motifs), ... CN 8 at 29 (wt, bcc, hexagonal
    # bipyramid), ..., CN 12 at 44 (wt, cuboctahedron, q2, q4, q6), then one weight per CN 13..24
    fcc = Structure.from_spacegroup(225, Lattice.cubic(4.0), ['Cu'], [[0, 0, 0]])
    assert structure_fingerprint(fcc)[44:49] == pytest.approx([1.0, 1.0, 0.0, 0.191, 0.575], abs=1e-3)
    fingerprint = structure_fingerprint(bcc)
    assert fingerprint[29] + fingerprint[50] == pytest.approx(1.0)  # CrystalNN splits bcc between CN 8 and 14
    assert fingerprint[30] == pytest.approx(fingerprint[29])  # a perfect bcc motif: order parameter 1


def test_composition_fingerprint():
    nbo2 = composition_fingerprint('NbO2')
    assert nbo2.shape == (78,)
    assert np.allclose(composition_fingerprint('Nb2O4'), nbo2)
    distance = np.linalg.norm(composition_fingerprint('TiO2') - nbo2)
    assert distance < np.linalg.norm(composition_fingerprint('LiFe') - nbo2)


def test_match_rate_and_rmse(rutile, rocksalt, nbo):
    noisy = rutile.copy()
    noisy.perturb(0.05, min_distance=0.02)
    broken = Structure(Lattice.cubic(4.0), ['Nb', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    result = match_rate_and_rmse([noisy, nbo, [broken, _rotated_supercell(rocksalt)]], [rutile, rocksalt, rocksalt])
    assert result['n_references'] == 3
    assert result['n_matched'] == 2
    assert result['match_rate'] == pytest.approx(2 / 3)
    assert 0 < result['rmse'] < 0.05
    with pytest.raises(ValueError, match='paired'):
        match_rate_and_rmse([rutile], [rutile, nbo])


def test_coverage(rutile, rocksalt, nbo, bcc):
    assert coverage([rutile, rocksalt], [rutile, rocksalt]) == {'cov_recall': 1.0, 'cov_precision': 1.0}
    result = coverage([rutile, bcc], [rutile, nbo])
    assert result == {'cov_recall': 0.5, 'cov_precision': 0.5}
    broken = Structure(Lattice.cubic(4.0), ['Nb', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    assert coverage([broken, rutile], [rutile]) == {'cov_recall': 1.0, 'cov_precision': 0.5}
    with pytest.raises(ValueError, match='at least one reference'):
        coverage([rutile], [])


def test_phonon_stable_rate():
    result = phonon_stable_rate([0.0, -0.05, -1.2, None, float('nan'), 3.0], imaginary_tolerance=0.1)
    assert result == {'n_phonons': 4, 'n_phonon_stable': 3, 'phonon_stable_rate': 0.75}


def test_compute_metrics_everything(rutile, rocksalt, nbo, bcc):
    broken = Structure(Lattice.cubic(4.0), ['Nb', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    imbalanced = Structure.from_spacegroup(225, Lattice.cubic(5.5), ['Na', 'Cl'], [[0, 0, 0], [0.25, 0.25, 0.25]])
    generated = [rutile, _rotated_supercell(rutile), nbo, broken, imbalanced, bcc]
    metrics = compute_metrics(
        generated,
        training=[_rotated_supercell(bcc), rocksalt],
        energies_above_hull=[0.0, 0.0, 0.05, None, 0.3, 0.0],
        min_phonon_frequencies=[0.0, 0.0, -2.0, None, None, 0.1],
    )
    assert metrics['n_structures'] == 6
    assert metrics['structural_validity'] == pytest.approx(5 / 6)
    assert metrics['compositional_validity'] == pytest.approx(5 / 6)
    assert metrics['validity'] == pytest.approx(4 / 6)
    assert metrics['n_unique'] == 4  # rutile, NbO, NaCl2, bcc (the rotated rutile is a duplicate)
    assert metrics['uniqueness'] == pytest.approx(4 / 5)
    assert metrics['n_novel'] == 3  # bcc is in the training set
    assert metrics['novelty'] == pytest.approx(3 / 4)
    assert metrics['n_stable'] == 4
    assert metrics['stable_rate'] == pytest.approx(4 / 5)
    assert metrics['n_sun'] == 2  # rutile and NbO: stable, first of their kind, novel
    assert metrics['sun_rate'] == pytest.approx(2 / 6)
    assert metrics['phonon_stable_rate'] == pytest.approx(3 / 4)
    assert 'cov_recall' not in metrics and 'match_rate' not in metrics
    json.dumps(metrics)


def test_compute_metrics_from_total_energies(rutile, nbo):
    diagram = build_phase_diagram([('Nb', -10.0), ('O2', -10.0), ('NbO2', -26.0)])
    # rutile cell is Nb2O4 (on the hull); NbO cell is Nb3O3 at 0.2 eV/atom above the hull (-1.5 eV/atom)
    metrics = compute_metrics(
        [rutile, nbo], energies=[-52.0, 3 * (-15.0 - 2.6)], phase_diagram=diagram, csp_references=[rutile, rutile]
    )
    assert metrics['n_stable'] == 1
    assert metrics['mean_energy_above_hull'] == pytest.approx(0.1)
    assert metrics['match_rate'] == pytest.approx(0.5)
    assert 'sun_rate' not in metrics  # novelty needs a training set


def test_compute_metrics_bad_input(rutile):
    with pytest.raises(ValueError, match='phase_diagram'):
        compute_metrics([rutile], energies=[-1.0])
    with pytest.raises(ValueError, match='energies_above_hull has 2 values for 1 structures'):
        compute_metrics([rutile], energies_above_hull=[0.0, 0.1])
    assert compute_metrics([]) == {
        'n_structures': 0, 'n_structurally_valid': 0, 'structural_validity': None, 'compositional_validity': None,
        'validity': None, 'n_unique': 0, 'uniqueness': None,
    }  # fmt: skip
