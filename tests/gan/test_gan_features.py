"""Invariance, smoothness and differentiability of the critic's features (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from aiida_crystalgan.gan.critic import Critic
from aiida_crystalgan.gan.data import conditions
from aiida_crystalgan.gan.features import InvariantFeatures, angular_moments, cosine_envelope, periodic_pairs
from aiida_crystalgan.gan.representation import CrystalBatch, records_to_batch

ELEMENTS = ['Nb', 'O']


@pytest.fixture(params=[0, 3], ids=['radial', 'angular'])
def model(request):
    """Featurizer and critic, without and with the three-body angular moments."""
    torch.manual_seed(0)
    featurizer = InvariantFeatures(
        num_species=2, cutoff=4.5, num_rbf=8, max_images=8, angular_order=request.param, angular_cutoff=3.0
    ).double()
    critic = Critic(featurizer.num_features, condition_dim=3, width=16, depth=1).double()
    return featurizer, critic


def score(model, batch: CrystalBatch) -> torch.Tensor:
    featurizer, critic = model
    counts = torch.stack([(batch.species == k).logical_and(batch.mask).sum(dim=1) for k in range(2)], dim=1)
    features, _ = featurizer(batch.cell, batch.frac, batch.species, batch.mask)
    return critic(features, batch.mask, conditions(counts, 10).double())


@pytest.fixture
def batch(records):
    return records_to_batch(records[:6], ELEMENTS, n_max=10)


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_translation_rotation_permutation_invariance(model, batch):
    reference = score(model, batch)
    generator = torch.Generator().manual_seed(1)
    moved = CrystalBatch(
        batch.cell,
        batch.frac + torch.rand(6, 1, 3, generator=generator, dtype=torch.float64),
        batch.species,
        batch.mask,
    )
    torch.testing.assert_close(score(model, moved), reference, rtol=0, atol=1e-5)
    rotation = random_rotation(generator)
    rotated = CrystalBatch(batch.cell @ rotation.T, batch.frac, batch.species, batch.mask)
    torch.testing.assert_close(score(model, rotated), reference, rtol=0, atol=1e-5)
    order = torch.randperm(10, generator=generator)
    permuted = CrystalBatch(batch.cell, batch.frac[:, order], batch.species[:, order], batch.mask[:, order])
    torch.testing.assert_close(score(model, permuted), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    'matrix',
    [
        [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
        [[2, 1, 1], [1, 1, 0], [0, 0, 1]],
        [[0, 1, 0], [1, 0, 0], [0, 1, -1]],
    ],
)
def test_unimodular_cell_change_invariance(model, batch, matrix):
    change = torch.tensor(matrix, dtype=torch.float64)
    assert abs(torch.linalg.det(change)) == pytest.approx(1.0)
    cell = change @ batch.cell
    frac = batch.frac @ torch.linalg.inv(change)
    frac = frac - torch.floor(frac)
    changed = CrystalBatch(cell, frac, batch.species, batch.mask)
    torch.testing.assert_close(score(model, changed), score(model, batch), rtol=0, atol=1e-5)


def test_pairs_match_brute_force(batch):
    pairs = periodic_pairs(batch.cell, batch.frac, batch.mask, cutoff=4.5, max_images=8)
    for index in range(2):
        count = int(batch.mask[index].sum())
        cart = batch.frac[index, :count] @ batch.cell[index]
        shifts = torch.cartesian_prod(*[torch.arange(-3, 4, dtype=torch.float64)] * 3) @ batch.cell[index]
        vectors = cart[None, :, None] + shifts[None, None] - cart[:, None, None]
        distance = vectors.norm(dim=-1).flatten()
        expected = torch.sort(distance[(distance > 1e-8) & (distance < 4.5)]).values
        found = torch.sort(pairs.distance[pairs.batch == index]).values
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-9)


def test_features_vanish_smoothly_at_cutoff():
    cutoff = 3.0
    featurizer = InvariantFeatures(num_species=1, cutoff=cutoff, num_rbf=6).double()
    cell = torch.eye(3, dtype=torch.float64)[None] * 20.0
    species = torch.zeros(1, 2, dtype=torch.long)
    mask = torch.ones(1, 2, dtype=torch.bool)

    def total(distance: float) -> torch.Tensor:
        frac = torch.tensor([[[0.0, 0.0, 0.0], [distance / 20.0, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
        features, _ = featurizer(cell, frac, species, mask)
        value = features.sum()
        (grad,) = torch.autograd.grad(value, frac)
        return value.detach(), grad.abs().max() / 20.0

    values = [total(cutoff - step) for step in (1e-1, 1e-2, 1e-3)]
    assert values[0][0] > values[1][0] > values[2][0] > 0
    assert values[0][1] > values[1][1] > values[2][1]
    assert values[2][0] < 1e-5 and values[2][1] < 1e-2
    assert total(cutoff + 1e-3)[0] == 0
    assert cosine_envelope(torch.tensor([0.0, cutoff, 2 * cutoff]), cutoff).tolist() == [1.0, 0.0, 0.0]
    assert math.isclose(float(cosine_envelope(torch.tensor(cutoff / 2), cutoff)), 0.5, abs_tol=1e-6)


def test_gradients_reach_cell_and_coordinates(model, batch):
    cell = batch.cell.clone().requires_grad_(True)
    frac = batch.frac.clone().requires_grad_(True)
    value = score(model, CrystalBatch(cell, frac, batch.species, batch.mask)).sum()
    grad_cell, grad_frac = torch.autograd.grad(value, (cell, frac), create_graph=True)
    assert torch.isfinite(grad_cell).all() and grad_cell.abs().sum() > 0
    assert torch.isfinite(grad_frac).all() and grad_frac[batch.mask].abs().sum() > 0
    assert (grad_frac[~batch.mask] == 0).all()
    (second,) = torch.autograd.grad(grad_frac.square().sum(), frac)
    assert torch.isfinite(second).all()


def test_angular_moments_match_triplet_sums(batch):
    """``sum_{j in a, k in b} w_ij w_ik cos(theta_jik)^n`` enumerated over neighbour pairs, for every atom."""
    order, cutoff = 3, 3.0
    pairs = periodic_pairs(batch.cell, batch.frac, batch.mask, cutoff=4.5, max_images=8)
    moments = angular_moments(pairs, batch.species, 2, cutoff, order).view(*batch.species.shape, 2, 2, order)
    for structure, atom in ((0, 0), (1, 3), (2, 5)):
        rows = (pairs.batch == structure) & (pairs.first == atom) & (pairs.distance < cutoff)
        unit = pairs.vector[rows] / pairs.distance[rows, None]
        weight = cosine_envelope(pairs.distance[rows], cutoff)
        kind = batch.species[structure, pairs.second[rows]]
        cosine = unit @ unit.T
        for a in range(2):
            for b in range(2):
                both = (kind[:, None] == a) & (kind[None, :] == b)
                for n in range(order):
                    expected = (weight[:, None] * weight[None, :] * cosine ** (n + 1) * both).sum()
                    torch.testing.assert_close(moments[structure, atom, a, b, n], expected, rtol=1e-10, atol=1e-10)
    assert moments[0, 0].abs().sum() > 0


def test_angular_features_see_bond_angles():
    """Two three-atom clusters with the same two bond lengths but different angles: equal radial features of the
    centre within the angular cutoff, different angular ones."""
    featurizer = InvariantFeatures(num_species=1, cutoff=2.5, num_rbf=4, angular_order=2, angular_cutoff=2.5).double()
    cell = torch.eye(3, dtype=torch.float64)[None] * 30.0
    species = torch.zeros(1, 3, dtype=torch.long)
    mask = torch.ones(1, 3, dtype=torch.bool)

    def centre_features(angle: float) -> torch.Tensor:
        bent = [1.5 * math.cos(angle), 1.5 * math.sin(angle), 0.0]
        positions = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], bent], dtype=torch.float64) + 10.0
        return featurizer(cell, (positions / 30.0)[None], species, mask)[0][0, 0]

    straight, bent = centre_features(math.pi), centre_features(math.pi / 2)
    torch.testing.assert_close(straight[:4], bent[:4])
    assert (straight[4:] - bent[4:]).abs().max() > 0.1


def test_angular_cutoff_may_not_exceed_cutoff():
    with pytest.raises(ValueError, match='angular_cutoff'):
        InvariantFeatures(num_species=1, cutoff=3.0, num_rbf=4, angular_order=2, angular_cutoff=4.0)
