"""The search at a glance: objective per trial (mean ± spread over folds, best so far) and parameter importances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_search(trials: Sequence[Mapping[str, Any]], importances: Mapping[str, float], path: str | Path) -> Path:
    """Write a two-panel PNG to ``path``; the first objective is plotted when there are several."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    done = [trial for trial in trials if trial['value'] is not None]
    numbers = [trial['number'] for trial in done]
    values = np.array([np.atleast_1d(trial['value'])[0] for trial in done])
    spread = np.array([np.atleast_1d(trial['spread'])[0] for trial in done])
    pruned = [trial['state'] == 'pruned' for trial in done]
    colours = ['tab:grey' if p else 'tab:blue' for p in pruned]
    left.errorbar(numbers, values, yerr=spread, fmt='none', ecolor='tab:grey', alpha=0.6)
    left.scatter(numbers, values, c=colours, zorder=3)
    if not all(pruned):
        best = np.minimum.accumulate(np.where(pruned, np.inf, values))
        left.step(numbers, best, where='post', color='tab:red', label='best complete trial so far (grey: pruned)')
        left.legend()
    left.set_xlabel('trial')
    left.set_ylabel('objective (mean ± spread over folds)')
    names = list(importances)[::-1]
    right.barh(names, [importances[name] for name in names], color='tab:green')
    right.set_xlabel('importance (Optuna fANOVA)')
    if not names:
        right.text(0.5, 0.5, 'no importances (fewer than two complete trials)', ha='center', transform=right.transAxes)
        right.set_yticks([])
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
