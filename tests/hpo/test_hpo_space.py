"""Search spaces: parsing, Optuna distributions, grids and the refusals of bad ranges."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from aiida_crystalgan.hpo.space import SearchSpace

SPACE = {
    'generator_lr': {'low': 1e-4, 'high': 1e-2, 'log': True, 'num': 3},
    'critic_depth': {'low': 1, 'high': 3},
    'critic_width': {'choices': [16, 32]},
    'mixed_precision': {'choices': [True, False]},
}


def test_distributions_follow_the_config_field_types():
    distributions = SearchSpace(SPACE).distributions()
    assert distributions['generator_lr'] == FloatDistribution(1e-4, 1e-2, log=True)
    assert distributions['critic_depth'] == IntDistribution(1, 3)
    assert distributions['critic_width'] == CategoricalDistribution([16, 32])
    assert distributions['mixed_precision'] == CategoricalDistribution([True, False])


def test_grid_enumerates_every_combination():
    space = SearchSpace(SPACE)
    axes = space.grid()
    assert axes['generator_lr'] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert axes['critic_depth'] == [1, 2, 3]
    assert space.grid_size() == 3 * 3 * 2 * 2
    points = space.grid_points()
    assert len(points) == 36
    assert len({repr(sorted(p.items())) for p in points}) == 36


@pytest.mark.parametrize(
    ('space', 'message'),
    [
        ({'generator_lrr': {'low': 1e-4, 'high': 1e-3}}, 'unknown field.*generator_lrr'),
        ({'cutoff': {'low': 5.0, 'high': 5.0}}, 'cutoff.*empty range'),
        ({'critic_depth': {'low': 3, 'high': 1}}, 'critic_depth.*empty range'),
        ({'critic_width': {'choices': []}}, 'critic_width.*non-empty'),
        ({'critic_depth': {'low': 1.5, 'high': 3}}, 'integer field'),
        ({'generator_lr': {'low': 0.0, 'high': 1e-3, 'log': True}}, 'log range'),
        ({'generator_lr': {'low': 1e-4, 'hi': 1e-3}}, 'a range takes'),
        ({'mixed_precision': {'low': 0, 'high': 1}}, 'boolean field'),
        ({}, 'non-empty mapping'),
    ],
)
def test_bad_spaces_are_refused(space, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace(space)


def test_grid_over_the_cap_is_refused():
    space = SearchSpace({'critic_depth': {'low': 1, 'high': 10}, 'generator_depth': {'low': 1, 'high': 10}})
    with pytest.raises(ValueError, match='100 points, more than the cap of 50'):
        space.grid(cap=50)


def test_float_range_without_grid_points_cannot_be_gridded():
    with pytest.raises(ValueError, match='needs `num`'):
        SearchSpace({'cutoff': {'low': 4.0, 'high': 6.0}}).grid()


def test_values_invalid_for_the_config_are_refused():
    with pytest.raises(ValueError, match='ema_decay.*1.5'):
        SearchSpace({'ema_decay': {'low': 0.5, 'high': 1.5}}).check_config({})
