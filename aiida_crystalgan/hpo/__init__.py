"""Hyperparameter search without AiiDA: search spaces over ``GanConfig`` fields, strategies (grid, random, Optuna's
TPE), the study rebuilt from stored trials, pruning thresholds and the plot of a search.

* :mod:`.space`: ranges and choices, their Optuna distributions and grids;
* :mod:`.study`: trials as plain dicts, the rebuilt study, next suggestions, best trial, importances;
* :mod:`.plot`: objective per trial and parameter importances.
"""
