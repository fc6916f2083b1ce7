"""CalcJob monitors (entry point group ``aiida.calculations.monitors``): progress of a job while it runs remotely.

``crystalgan.training_progress`` reads the last line of ``losses.csv`` in the remote working directory of a
``crystalgan.train`` job, stores it in the extra :data:`LATEST_LOSSES_EXTRA` of the job's node and reports it once
per new logged step (losses not defined yet, NaN in the file, are ``None``). It never kills the job: a missing or
half-written file just means no news yet. The training protocol adds it (``progress_poll_interval``); by hand::

    builder.monitors = {'progress': orm.Dict({'entry_point': 'crystalgan.training_progress',
                                              'minimum_poll_interval': 60})}
"""

from __future__ import annotations

import csv
import io
import math
import shlex
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from aiida.common.log import LOG_LEVEL_REPORT

from aiida_crystalgan.calculations.train import LOSSES_FILE

if TYPE_CHECKING:
    from aiida.orm import CalcJobNode
    from aiida.transports import Transport

#: Extra of a training job's node with its latest logged losses (``step`` and the columns of ``losses.csv``).
LATEST_LOSSES_EXTRA = 'crystalgan_latest_losses'
SHOWN_LOSSES = ('critic_loss', 'generator_loss', 'wasserstein_distance', 'physics_loss')


def parse_latest_losses(text: str) -> dict[str, float | None] | None:
    """The last row of a ``losses.csv`` (header and last line) by column, NaN as ``None``; ``None`` without a row."""
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2 or len(rows[-1]) != len(rows[0]):
        return None
    try:
        values = [float(value) for value in rows[-1]]
    except ValueError:
        return None
    return {name: value if math.isfinite(value) else None for name, value in zip(rows[0], values)}


def training_progress(node: CalcJobNode, transport: Transport) -> None:
    """Report the latest losses of a running training job (``None``: the job goes on)."""
    workdir = node.get_remote_workdir()
    if workdir is None:
        return None
    path = shlex.quote(str(PurePosixPath(workdir) / LOSSES_FILE))
    retval, stdout, _ = transport.exec_command_wait(f'head -n 1 {path} && tail -n 1 {path}')
    latest = parse_latest_losses(stdout) if retval == 0 else None
    if latest is None or latest.get('step') == node.base.extras.get(LATEST_LOSSES_EXTRA, {}).get('step'):
        return None
    node.base.extras.set(LATEST_LOSSES_EXTRA, latest)
    shown = ', '.join(f'{name} {latest[name]:.4g}' for name in SHOWN_LOSSES if latest.get(name) is not None)
    node.logger.log(LOG_LEVEL_REPORT, f'training step {int(latest["step"])}: {shown}')
    return None
