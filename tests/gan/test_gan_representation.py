"""Structure -> representation -> structure is exact; the standard frame keeps geometry and forces consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_crystalgan.gan.data import conditions, slot_species, standard_batch
from aiida_crystalgan.gan.representation import batch_to_records, records_to_batch, symbols_to_numbers


def test_round_trip_is_exact(records):
    elements = ['O', 'Nb']
    batch = records_to_batch(records, elements, n_max=10)
    assert batch.mask.sum(dim=1).tolist() == [r.num_atoms for r in records]
    back = batch_to_records(batch, elements)
    for original, decoded in zip(records, back):
        np.testing.assert_array_equal(decoded.numbers, original.numbers)
        np.testing.assert_array_equal(decoded.cell, original.cell)
        np.testing.assert_allclose(decoded.positions, original.positions, rtol=0, atol=1e-12)


def test_round_trip_rejects_unknown_element_and_overflow(records):
    with pytest.raises(ValueError, match='not in the model vocabulary'):
        records_to_batch(records, ['Nb'], n_max=10)
    with pytest.raises(ValueError, match='does not fit'):
        records_to_batch(records, ['Nb', 'O'], n_max=4)


def test_wrapping_keeps_the_crystal(records):
    elements = ['Nb', 'O']
    batch = records_to_batch(records, elements, n_max=10)
    batch.frac = batch.frac + 3.0
    wrapped = batch_to_records(batch, elements, wrap=True)
    for record in wrapped:
        frac = np.linalg.solve(record.cell.T, record.positions.T).T
        assert frac.min() >= 0 and frac.max() < 1


@pytest.mark.parametrize('elements', [['Nb', 'O'], ['O', 'Nb']])
def test_standard_frame_preserves_distances_and_rotates_forces(records, pair_potential, elements):
    """Forces go through the frame change with their atoms: in the standard frame, each atom's force vector is the
    force the labelling pair potential gives on that atom of the standard-frame structure (i.e. ``R F``, atom by atom).
    With O first in the vocabulary the atoms are also reordered.
    """
    batch, forces = standard_batch(records[:4], elements, n_max=8)
    cell = batch.cell.numpy()
    assert np.allclose(np.triu(cell, k=1), 0.0)
    for index, record in enumerate(records[:4]):
        gram = cell[index] @ cell[index].T
        assert np.isclose(np.linalg.det(gram), np.linalg.det(record.cell @ record.cell.T))
        norm_before = np.sort(np.linalg.norm(record.forces, axis=1))
        norm_after = np.sort(np.linalg.norm(forces[index, : record.num_atoms].numpy(), axis=1))
        np.testing.assert_allclose(norm_after, norm_before, atol=1e-10)
        count = record.num_atoms
        numbers = [symbols_to_numbers(elements)[s] for s in batch.species[index, :count].tolist()]
        positions = batch.frac[index, :count].numpy() @ cell[index]
        _, expected = pair_potential(numbers, positions, cell[index])
        np.testing.assert_allclose(forces[index, :count].numpy(), expected, atol=1e-9)
    assert torch.all(batch.species[:, :-1] <= batch.species[:, 1:] + (~batch.mask[:, 1:]).long() * 10)


def test_slot_species_follow_composition():
    counts = torch.tensor([[2, 4], [1, 0]])
    species, mask = slot_species(counts, n_max=8)
    assert species[0, :6].tolist() == [0, 0, 1, 1, 1, 1]
    assert mask.sum(dim=1).tolist() == [6, 1]
    condition = conditions(counts, n_max=8)
    np.testing.assert_allclose(condition[0].numpy(), [1 / 3, 2 / 3, 6 / 8], rtol=1e-6)
