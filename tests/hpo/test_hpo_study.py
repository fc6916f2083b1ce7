"""The study rebuilt from stored trials: deterministic suggestions, grids, pruning thresholds, best trial."""

from __future__ import annotations

import pytest

from aiida_crystalgan.hpo.space import SearchSpace
from aiida_crystalgan.hpo.study import best_trial, parameter_importances, pruning_thresholds, suggest, summarise_trial

SPACE = SearchSpace(
    {
        'generator_lr': {'low': 1e-4, 'high': 1e-2, 'log': True},
        'critic_depth': {'low': 1, 'high': 4},
        'critic_width': {'choices': [16, 32, 64]},
    }
)


def finished(params_list, values=None):
    """Complete trials with a made-up objective (low learning rate and deep critic are good)."""
    trials = []
    for number, params in enumerate(params_list):
        value = values[number] if values else params['generator_lr'] * 100 + 1.0 / params['critic_depth']
        trials.append(
            {
                'number': number,
                'params': params,
                'state': 'complete',
                'value': value,
                'spread': 0.0,
                'fold_values': [value, value],
                'curve': {'step': [2, 4], 'objective': [value + 1, value]},
                'wall_seconds': 1.0,
                'folds': [],
            }
        )
    return trials


@pytest.mark.parametrize('strategy', ['random', 'tpe'])
def test_same_seed_and_trials_give_the_same_suggestion(strategy):
    """What a restarted daemon relies on: the rebuilt study asks for exactly what the first one would have."""
    trials = []
    for _ in range(6):
        trials += finished([suggest(SPACE, strategy, 7, trials, 1, startup_trials=3)[0]])
        trials[-1]['number'] = len(trials) - 1
    again = suggest(SPACE, strategy, 7, trials, 2, startup_trials=3)
    assert again == suggest(SPACE, strategy, 7, trials, 2, startup_trials=3)
    assert again != suggest(SPACE, strategy, 8, trials, 2, startup_trials=3)
    assert again[0] != again[1]
    assert all(isinstance(params['critic_depth'], int) for params in again)


def test_successive_random_steps_do_not_repeat_the_first_suggestion():
    first = suggest(SPACE, 'random', 0, [], 1)
    second = suggest(SPACE, 'random', 0, finished(first), 1)
    assert first != second


def test_tpe_after_startup_leans_to_the_good_region():
    trials = []
    for _ in range(12):
        trials += finished(suggest(SPACE, 'random', 1, trials, 1))
        trials[-1]['number'] = len(trials) - 1
    proposals = suggest(SPACE, 'tpe', 1, trials, 4, startup_trials=3)
    median_lr = sorted(t['params']['generator_lr'] for t in trials)[len(trials) // 2]
    assert sum(p['generator_lr'] < median_lr for p in proposals) >= 3


def test_grid_visits_each_point_once_then_stops():
    space = SearchSpace({'critic_depth': {'low': 1, 'high': 2}, 'critic_width': {'choices': [16, 32]}})
    trials = []
    while batch := suggest(space, 'grid', 0, trials, 3):
        trials += finished(batch, values=[1.0] * len(batch))
    assert sorted((t['params']['critic_depth'], t['params']['critic_width']) for t in trials) == [
        (1, 16),
        (1, 32),
        (2, 16),
        (2, 32),
    ]


def test_summary_of_folds():
    folds = [
        {'objective': 1.0, 'objectives': [0.5, 0.5], 'curve': {'step': [2, 4], 'objective': [3.0, 1.0]}},
        {'objective': 3.0, 'objectives': [1.0, 2.0], 'curve': {'step': [2, 4], 'objective': [5.0, 3.0]}},
    ]
    trial = summarise_trial(0, {'critic_depth': 2}, folds, 10.0)
    assert trial['state'] == 'complete'
    assert trial['value'] == pytest.approx(2.0)
    assert trial['spread'] == pytest.approx(1.0)
    assert trial['curve'] == {'step': [2, 4], 'objective': [4.0, 2.0]}
    multi = summarise_trial(0, {'critic_depth': 2}, folds, 10.0, multi_objective=True)
    assert multi['value'] == pytest.approx([0.75, 1.25])
    assert summarise_trial(1, {}, [folds[0], None], 1.0)['state'] == 'failed'
    pruned = {**folds[1], 'pruned': True, 'curve': {'step': [2], 'objective': [9.0]}}
    assert summarise_trial(2, {}, [folds[0], pruned], 1.0)['state'] == 'pruned'


def test_pruning_thresholds_are_medians_of_complete_trials():
    trials = finished(
        [{'generator_lr': 1e-3, 'critic_depth': d, 'critic_width': 16} for d in (1, 2, 4)], values=[1.0, 2.0, 6.0]
    )
    trials[2]['state'] = 'pruned'
    thresholds = pruning_thresholds(trials, min_trials=2, warmup_steps=3)
    assert thresholds == {'steps': [2, 4], 'thresholds': [2.5, 1.5], 'warmup_steps': 3}
    assert pruning_thresholds(trials, min_trials=3, warmup_steps=0)['steps'] == []


def test_best_trial_and_pareto_choice():
    trials = finished(
        [{'generator_lr': 1e-3, 'critic_depth': d, 'critic_width': 16} for d in (1, 2, 3)], values=[3.0, 1.0, 2.0]
    )
    assert best_trial(trials)['number'] == 1
    for trial, value in zip(trials, ([1.0, 5.0], [2.0, 1.0], [3.0, 3.0])):
        trial['value'] = value
    assert best_trial(trials)['number'] == 1
    assert best_trial([]) is None


def test_importances_rank_the_parameter_that_matters():
    trials = []
    for _ in range(10):
        trials += finished(suggest(SPACE, 'random', 2, trials, 1), values=None)
        trials[-1]['number'] = len(trials) - 1
    for trial in trials:
        trial['value'] = float(trial['params']['critic_depth'])
    importances = parameter_importances(SPACE, trials)
    assert max(importances, key=importances.get) == 'critic_depth'
