"""Post-processing: wrapping, merging, symmetrisation, filtering and deduplication with a full report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from aiida_crystalgan.analysis import postprocess as postprocess_module
from aiida_crystalgan.analysis.matching import duplicate_indices, make_matcher, reference_matches
from aiida_crystalgan.analysis.postprocess import (
    DropReason,
    PostprocessOptions,
    merge_close_atoms,
    postprocess,
    space_group,
    symmetrize,
    wrap,
)


def _rotated_permuted_supercell(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal seen differently: rotated, doubled along c, shifted, atoms shuffled."""
    copy = structure.copy()
    copy.apply_operation(SymmOp.from_axis_angle_and_translation([1, 1, 0], 37.0))
    copy.make_supercell([1, 1, 2])
    copy.translate_sites(list(range(len(copy))), [0.13, 0.02, 0.31])
    order = np.random.default_rng(seed).permutation(len(copy))
    return Structure(copy.lattice, [copy[i].species for i in order], copy.frac_coords[order])


def test_wrap():
    structure = Structure(Lattice.cubic(4.0), ['Nb', 'O'], [[1.25, -0.5, 2.0], [-1e-12, 0.5, 0.5]])
    wrapped = wrap(structure)
    assert np.all((wrapped.frac_coords >= 0) & (wrapped.frac_coords < 1))
    assert wrapped.frac_coords[0] == pytest.approx([0.25, 0.5, 0.0])
    assert structure.frac_coords[0][0] == 1.25  # input untouched


def test_merge_same_species_across_the_boundary():
    structure = Structure(Lattice.cubic(10.0), ['Nb', 'Nb', 'O'], [[0.01, 0.5, 0.5], [0.99, 0.5, 0.5], [0.5, 0, 0]])
    merged, notes = merge_close_atoms(structure, distance=0.5)
    assert len(merged) == 2
    assert merged.composition.reduced_formula == 'NbO'
    x = merged[0].frac_coords[0]
    assert min(x, 1 - x) == pytest.approx(0.0, abs=1e-8)  # mean taken through the boundary, not at x = 0.5
    assert notes == ['merged 2 Nb atoms (sites [0, 1]) closer than 0.5 Å into one']


def test_merge_cluster_of_three_and_keeps_different_species():
    structure = Structure(
        Lattice.cubic(8.0),
        ['Nb', 'Nb', 'Nb', 'O', 'Nb'],
        [[0.5, 0.5, 0.5], [0.55, 0.5, 0.5], [0.6, 0.5, 0.5], [0.0, 0.0, 0.0], [0.04, 0.0, 0.0]],
    )
    merged, notes = merge_close_atoms(structure, distance=0.5)
    assert len(merged) == 3
    assert sorted(site.species_string for site in merged) == ['Nb', 'Nb', 'O']
    assert any(np.allclose(site.frac_coords, [0.55, 0.5, 0.5]) for site in merged)
    assert any('different species: not merged' in note for note in notes)
    assert any('merged 3 Nb atoms' in note for note in notes)


def test_merge_nothing(rutile):
    merged, notes = merge_close_atoms(rutile)
    assert merged == rutile
    assert notes == []
    with pytest.raises(ValueError, match='positive'):
        merge_close_atoms(rutile, distance=0)


def test_symmetrize_noisy_rutile(rutile):
    noisy = rutile.copy()
    noisy.perturb(0.02, min_distance=0.01)
    result = symmetrize(noisy, symprec=0.1)
    assert (result.number, result.symbol) == (136, 'P4_2/mnm')
    assert len(result.structure) == 6
    assert symmetrize(noisy, symprec=1e-4).number < 136  # tight tolerance sees the noise


def test_space_group_is_p1_where_spglib_fails(rutile, monkeypatch):
    noisy = rutile.copy()
    noisy.perturb(0.02, min_distance=0.01)
    assert space_group(noisy) == (136, 'P4_2/mnm')

    def fail(*args, **kwargs):
        raise ValueError('no symmetry dataset')

    monkeypatch.setattr(postprocess_module, 'SpacegroupAnalyzer', fail)
    assert space_group(noisy) == (1, 'P1')


def test_matching_finds_rotated_permuted_copies(rutile, rocksalt):
    copy = _rotated_permuted_supercell(rutile)
    assert duplicate_indices([rutile, rocksalt, copy]) == [None, None, 0]
    assert reference_matches([copy, rocksalt], [rocksalt, rutile], make_matcher()) == [1, 0]


def test_pipeline_reports_every_candidate(rutile, rocksalt, bcc, nbo):
    too_close = Structure(Lattice.cubic(4.0), ['Nb', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    imbalanced = Structure.from_spacegroup(225, Lattice.cubic(5.5), ['Na', 'Cl'], [[0, 0, 0], [0.25, 0.25, 0.25]])
    with_artefact = nbo.copy()
    with_artefact.append('Nb', nbo[0].frac_coords + [0.01, 0, 0])  # a generation artefact 0.04 Å away
    candidates = [
        rutile,  # 0 kept
        _rotated_permuted_supercell(rutile),  # 1 duplicate of 0
        too_close,  # 2 invalid
        imbalanced,  # 3 charge imbalanced
        bcc,  # 4 in training
        Structure(Lattice.cubic(3.0), [], []),  # 5 empty
        with_artefact,  # 6 kept after a merge
        rocksalt,  # 7 kept
    ]
    result = postprocess(candidates, training=[_rotated_permuted_supercell(bcc, seed=3)])

    assert result.kept_indices == [0, 6, 7]
    assert [s.composition.reduced_formula for s in result.structures] == ['NbO2', 'NbO', 'NbO']
    assert len(result.structures[0]) == 6  # primitive standard cell
    reasons = [report.reason for report in result.reports]
    assert reasons == [
        None, DropReason.DUPLICATE, DropReason.INVALID_STRUCTURE, DropReason.CHARGE_IMBALANCED,
        DropReason.IN_TRAINING, DropReason.EMPTY, None, None,
    ]  # fmt: skip
    assert result.reports[1].match_index == 0
    assert result.reports[4].match_index == 0
    assert 'below 0.5' in result.reports[2].detail
    assert 'NaCl2' in result.reports[3].detail
    assert any('merged 2 Nb atoms' in note for note in result.reports[6].notes)
    assert result.reports[6].spacegroup_number == 221
    assert result.reports[0].spacegroup_symbol == 'P4_2/mnm'
    assert result.counts == {
        'kept': 3, 'empty': 1, 'invalid_structure': 1, 'charge_imbalanced': 1, 'in_training': 1, 'duplicate': 1,
        'error': 0,
    }  # fmt: skip
    assert sum(result.counts.values()) == len(candidates)
    assert all(report.detail for report in result.reports if not report.kept)
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary['reports'][3]['reason'] == 'charge_imbalanced'


def test_pipeline_options(rutile):
    imbalanced = Structure.from_spacegroup(225, Lattice.cubic(5.5), ['Na', 'Cl'], [[0, 0, 0], [0.25, 0.25, 0.25]])
    options = PostprocessOptions(require_charge_balance=False, dedupe=False, symmetrize=False)
    result = postprocess([imbalanced, rutile, rutile.copy()], options=options)
    assert result.kept_indices == [0, 1, 2]
    assert len(result.structures[0]) == 12  # not reduced to the primitive cell without symmetrisation
    assert postprocess([]).counts['kept'] == 0


def test_pipeline_turns_exceptions_into_reports(rutile, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('spglib exploded')

    monkeypatch.setattr(postprocess_module, 'symmetrize', broken)
    result = postprocess([rutile])
    assert result.reports[0].reason is DropReason.ERROR
    assert 'RuntimeError: spglib exploded' in result.reports[0].detail


def test_symmetrisation_failure_keeps_p1():
    overlapping = Structure(Lattice.cubic(4.0), ['Nb', 'Nb'], [[0, 0, 0], [1e-4, 0, 0]])
    with pytest.raises(ValueError, match='spglib could not symmetrise'):
        symmetrize(overlapping)
    result = postprocess([overlapping], options=PostprocessOptions(merge_distance=None))
    report = result.reports[0]
    assert report.spacegroup_symbol == 'P1'
    assert 'kept as P1' in report.notes[0]
    assert report.reason is DropReason.INVALID_STRUCTURE
    merged = postprocess([overlapping])  # merging first makes it a valid simple cubic Nb
    assert merged.kept_indices == [0]
    assert merged.reports[0].spacegroup_number == 221
