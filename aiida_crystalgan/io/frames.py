"""Which steps of a relaxation an engine returns as its ``trajectories`` output (``trajectory_frames``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def relaxation_picks(steps: Mapping[str, Sequence], maximum: int) -> list[int]:
    """At most ``maximum`` indices of the recorded steps before the last, evenly spaced from the first (the starting
    structure) on, among those whose values are all finite.

    ``steps`` maps each array (positions, energies, ...) to its per-step values; the last step is left out because it
    is the relaxed structure, an output of its own.
    """
    count = len(next(iter(steps.values()))) - 1
    finite = [
        index
        for index in range(count)
        if all(np.isfinite(np.asarray(values[index], dtype=float)).all() for values in steps.values())
    ]
    if not finite or maximum <= 0:
        return []
    spaced = np.round(np.linspace(0, len(finite) - 1, min(maximum, len(finite))))
    return [finite[index] for index in sorted({int(index) for index in spaced})]
