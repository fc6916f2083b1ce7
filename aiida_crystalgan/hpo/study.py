"""Trials and the Optuna study rebuilt from them: the search keeps no database of its own.

A trial is a JSON-safe dict (what the workchain keeps in its context and writes to its trial table)::

    {'number': 3, 'params': {...}, 'state': 'complete' | 'pruned' | 'failed',
     'fold_values': [...], 'value': mean, 'spread': standard deviation (one entry per objective if several),
     'curve': {'step': [...], 'objective': [...]}, 'wall_seconds': ..., 'folds': [per-fold held-out values]}

At every step of the search the study is rebuilt in memory from the finished trials (``optuna.trial.create_trial``
+ ``study.add_trial``) with a sampler seeded from the search seed and the number of finished trials, and asked for
the next parameters: the search is deterministic given its seed and its provenance, and survives any restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from .space import DEFAULT_GRID_CAP, SearchSpace

STRATEGIES = ('grid', 'random', 'tpe')
STATES = {'complete': TrialState.COMPLETE, 'pruned': TrialState.PRUNED, 'failed': TrialState.FAIL}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(strategy: str, seed: int, startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """The sampler of ``random`` and ``tpe`` (grid points are enumerated by :func:`suggest`)."""
    if strategy == 'tpe':
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True)
    if strategy in ('random', 'grid'):
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f'unknown strategy `{strategy}`: choose one of {", ".join(STRATEGIES)}')


def frozen_trial(trial: Mapping[str, Any], space: SearchSpace) -> optuna.trial.FrozenTrial:
    """An Optuna trial from a stored one (its parameters, value(s), state and intermediate values)."""
    state = STATES[trial['state']]
    value = trial.get('value') if state == TrialState.COMPLETE else None
    curve = trial.get('curve') or {'step': [], 'objective': []}
    intermediate = {
        int(s): float(v) for s, v in zip(curve['step'], curve['objective']) if v is not None and math.isfinite(v)
    }
    distributions = space.distributions()
    return optuna.trial.create_trial(
        state=state,
        value=value if not isinstance(value, list) else None,
        values=value if isinstance(value, list) else None,
        params={name: trial['params'][name] for name in distributions},
        distributions=distributions,
        intermediate_values=intermediate,
        user_attrs={'number': trial['number']},
    )


def rebuild_study(
    space: SearchSpace,
    strategy: str,
    seed: int,
    trials: Sequence[Mapping[str, Any]],
    directions: Sequence[str] = ('minimize',),
    startup_trials: int = 10,
) -> optuna.Study:
    """An in-memory study holding ``trials``, with a sampler seeded by ``seed`` and the number of trials."""
    sampler = make_sampler(strategy, seed + len(trials), startup_trials)
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    for trial in trials:
        study.add_trial(frozen_trial(trial, space))
    return study


def suggest(
    space: SearchSpace,
    strategy: str,
    seed: int,
    trials: Sequence[Mapping[str, Any]],
    count: int,
    directions: Sequence[str] = ('minimize',),
    startup_trials: int = 10,
    grid_cap: int = DEFAULT_GRID_CAP,
) -> list[dict[str, Any]]:
    """Parameters of the next ``count`` trials (fewer when a grid is exhausted), given the finished ``trials``.

    ``grid`` visits the grid points in an order shuffled by ``seed``; ``random`` and ``tpe`` ask the rebuilt study
    (asked trials stay running, so TPE's constant liar spreads a batch out).
    """
    if strategy == 'grid':
        points = space.grid_points(grid_cap)
        order = np.random.default_rng(seed).permutation(len(points))
        done = [_key(trial['params']) for trial in trials]
        fresh = [points[i] for i in order if _key(points[i]) not in done]
        return [_plain(point) for point in fresh[:count]]
    study = rebuild_study(space, strategy, seed, trials, directions, startup_trials)
    distributions = space.distributions()
    return [_plain(study.ask(distributions).params) for _ in range(count)]


def _key(params: Mapping[str, Any]) -> str:
    return repr(sorted(params.items()))


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as plain Python values (no numpy scalars), for JSON and ``orm.Dict``."""
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in params.items()}


def summarise_trial(
    number: int,
    params: Mapping[str, Any],
    folds: Sequence[Mapping[str, Any] | None],
    wall_seconds: float,
    multi_objective: bool = False,
) -> dict[str, Any]:
    """A trial from the held-out values of its folds (``None`` for a fold that failed).

    Failed when any fold failed or has no objective; pruned when any fold was pruned; else complete, with the mean
    and the standard deviation of the fold objectives (each objective when ``multi_objective``).
    """
    key = 'objectives' if multi_objective else 'objective'
    curve = mean_curve([fold['curve'] for fold in folds if fold is not None and fold.get('curve')])
    trial: dict[str, Any] = {
        'number': number,
        'params': dict(params),
        'folds': list(folds),
        'curve': curve,
        'wall_seconds': wall_seconds,
        'fold_values': None,
        'value': None,
        'spread': None,
    }
    if any(fold is None or fold.get(key) is None for fold in folds):
        return {**trial, 'state': 'pruned' if any(fold and fold.get('pruned') for fold in folds) else 'failed'}
    if multi_objective and any(value is None for fold in folds for value in fold[key]):
        return {**trial, 'state': 'failed'}
    values = np.array([fold[key] for fold in folds], dtype=float)
    state = 'pruned' if any(fold.get('pruned') for fold in folds) else 'complete'
    return {
        **trial,
        'state': state,
        'fold_values': values.tolist(),
        'value': values.mean(axis=0).tolist(),
        'spread': values.std(axis=0).tolist(),
    }


def mean_curve(curves: Sequence[Mapping[str, list]]) -> dict[str, list]:
    """The mean intermediate objective over folds at the steps all folds logged."""
    if not curves:
        return {'step': [], 'objective': []}
    by_fold = [{s: v for s, v in zip(c['step'], c['objective']) if v is not None} for c in curves]
    steps = sorted(set.intersection(*(set(values) for values in by_fold)))
    return {'step': steps, 'objective': [float(np.mean([values[s] for values in by_fold])) for s in steps]}


def pruning_thresholds(trials: Sequence[Mapping[str, Any]], min_trials: int, warmup_steps: int) -> dict[str, Any]:
    """The median rule of Optuna's ``MedianPruner``: at each logged step seen in at least ``min_trials`` complete
    trials, the median of their intermediate objectives; a trial above it at that step is pruned."""
    values: dict[int, list[float]] = {}
    for trial in trials:
        if trial['state'] == 'complete':
            for step, value in zip(trial['curve']['step'], trial['curve']['objective']):
                values.setdefault(int(step), []).append(float(value))
    steps = sorted(step for step, seen in values.items() if len(seen) >= min_trials)
    return {'steps': steps, 'thresholds': [float(np.median(values[s])) for s in steps], 'warmup_steps': warmup_steps}


def best_trial(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The complete trial with the lowest mean objective; with several objectives, the trial of the Pareto front
    with the lowest sum of objectives. ``None`` when no trial completed."""
    complete = [trial for trial in trials if trial['state'] == 'complete']
    if not complete:
        return None
    values = [np.atleast_1d(trial['value']) for trial in complete]
    front = [t for t, v in zip(complete, values) if not any(np.all(w <= v) and np.any(w < v) for w in values)]
    return dict(min(front, key=lambda trial: (float(np.sum(trial['value'])), trial['number'])))


def parameter_importances(space: SearchSpace, trials: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the complete trials; empty when fewer than two completed."""
    complete = [trial for trial in trials if trial['state'] == 'complete']
    if len(complete) < 2:
        return {}
    directions = ['minimize'] * len(np.atleast_1d(complete[0]['value']))
    study = rebuild_study(space, 'random', 0, complete, directions)
    target = (lambda frozen: float(np.sum(frozen.values))) if len(directions) > 1 else None
    importances = optuna.importance.get_param_importances(study, target=target)
    return {name: float(value) for name, value in importances.items()}
