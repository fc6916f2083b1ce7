"""Which steps of a relaxation an engine returns as its ``trajectories`` output (``trajectory_frames``)."""

from __future__ import annotations

import numpy as np


def relaxation_picks(count: int, maximum: int) -> list[int]:
    """At most ``maximum`` indices of ``count`` steps, evenly spaced, the first (the starting structure) included.

    The caller passes the steps before the last one: the last is the relaxed structure, an output of its own.
    """
    if count <= 0 or maximum <= 0:
        return []
    return sorted({int(index) for index in np.round(np.linspace(0, count - 1, min(maximum, count)))})
