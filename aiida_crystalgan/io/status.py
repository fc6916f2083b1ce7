"""How the executables end: one ``status.json`` and one set of process exit codes for all of them (no AiiDA import).

``crystalgan-train``, ``crystalgan-generate`` and ``crystalgan-mlip`` write ``status.json`` next to their outputs
as the last thing they do, atomically, and exit with the matching process exit code:

* ``EXIT_OK`` (0), ``ok``: every output was written;
* ``EXIT_FAILED`` (1), ``failed``: an unexpected error stopped the run (the message names it);
* ``EXIT_INVALID_INPUT`` (2), ``invalid_input``: the input files were rejected (the message says why);
* ``EXIT_SOFT_WALLCLOCK`` (3), ``soft_wallclock``: the soft wall-clock limit was reached, the work done so far is
  kept (a checkpoint, the finished structures) to resume from;
* ``EXIT_DIVERGED`` (4), ``diverged``: training stopped on a NaN or infinite loss; ``checkpoint.pt``, where written,
  is the last good checkpoint.

Every ``status.json`` also holds ``timing``: the process's wall and CPU seconds until it was written (the cost
ledger's ``measured`` source).

No ``status.json`` at all means that the process died before it could write one (crash, out of memory, killed).

A scheduler can start the same job twice: when the AiiDA daemon dies while it submits a job, after the scheduler
started it and before its job id was stored, the daemon that takes over submits it again (aiida-core #3183). Each
executable therefore runs inside :func:`sole_instance`: the second instance waits for the first to end and then
exits with the first one's status instead of racing it in the same directory.

Executables that work through a batch of structures (``crystalgan-mlip``) report the structures that fail one by one:
``<key>.failed.json`` (see :func:`write_failure`) with one of :data:`FAILURE_REASONS`, and ``running.json`` names the
structure being worked on, so that a process that dies leaves the name of the structure it died on.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUS_FILE = 'status.json'
#: The lock that one instance of an executable holds on its working directory while it runs.
LOCK_FILE = '.crystalgan.lock'

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_SOFT_WALLCLOCK = 3
EXIT_DIVERGED = 4

#: The ``status`` written for each process exit code.
STATUS_NAMES = {
    EXIT_OK: 'ok',
    EXIT_FAILED: 'failed',
    EXIT_INVALID_INPUT: 'invalid_input',
    EXIT_SOFT_WALLCLOCK: 'soft_wallclock',
    EXIT_DIVERGED: 'diverged',
}
#: Why one structure of a batch failed: ``<key>.failed.json``'s ``reason``.
FAILURE_REASONS = {
    'unsupported_element': 'the model cannot evaluate an element of the structure',
    'non_finite': 'the energy, forces, stress or positions are NaN or infinite',
    'exploded': 'the relaxation blew the cell up or collapsed it',
    'error': 'the calculation of this structure raised an error',
    'crashed': 'the executable died while working on this structure',
}
FAILED_SUFFIX = '.failed.json'
RUNNING_FILE = 'running.json'
EXIT_NAMES = {
    EXIT_OK: 'EXIT_OK',
    EXIT_FAILED: 'EXIT_FAILED',
    EXIT_INVALID_INPUT: 'EXIT_INVALID_INPUT',
    EXIT_SOFT_WALLCLOCK: 'EXIT_SOFT_WALLCLOCK',
    EXIT_DIVERGED: 'EXIT_DIVERGED',
}


_IMPORTED = time.time()


def process_start_time() -> float:
    """When this process started (Unix time): from ``/proc`` on Linux, else when this module was imported."""
    try:
        after_name = Path('/proc/self/stat').read_text().rpartition(')')[2].split()
        boot = next(
            float(line.split()[1]) for line in Path('/proc/stat').read_text().splitlines() if line.startswith('btime ')
        )
        return boot + int(after_name[19]) / os.sysconf('SC_CLK_TCK')  # field 22 of proc(5): start time in ticks
    except (OSError, StopIteration, ValueError, IndexError):
        return _IMPORTED


def process_timing() -> dict[str, float]:
    """Wall seconds since this process started, and CPU seconds of it and of its finished child processes."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return {
        'wall_seconds': round(time.time() - process_start_time(), 3),
        'cpu_seconds': round(sum(usage.ru_utime + usage.ru_stime for usage in usages), 3),
    }


def write_status(directory: str | Path, exit_code: int, message: str, **details: Any) -> int:
    """Write ``directory/status.json`` atomically for ``exit_code``; return ``exit_code`` to exit with."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    content = {
        'status': STATUS_NAMES[exit_code],
        'exit_code': exit_code,
        'exit_name': EXIT_NAMES[exit_code],
        'message': message,
        'timing': process_timing(),
        **details,
    }
    partial = directory / f'{STATUS_FILE}.part'
    partial.write_text(json.dumps(content))
    os.replace(partial, directory / STATUS_FILE)
    return exit_code


def write_failure(directory: str | Path, key: str, reason: str, message: str) -> None:
    """Record atomically that structure ``key`` failed for ``reason`` (one of :data:`FAILURE_REASONS`)."""
    if reason not in FAILURE_REASONS:
        raise ValueError(f'unknown failure reason `{reason}`: use one of {", ".join(FAILURE_REASONS)}')
    partial = Path(directory) / f'{key}{FAILED_SUFFIX}.part'
    partial.write_text(json.dumps({'reason': reason, 'message': message}))
    os.replace(partial, Path(directory) / f'{key}{FAILED_SUFFIX}')


def parse_status(text: str) -> dict[str, Any]:
    """The content of a ``status.json``; raises ``ValueError`` when it is not one."""
    status = json.loads(text)
    if not isinstance(status, dict) or status.get('status') not in STATUS_NAMES.values():
        raise ValueError(f'not a status file: {text[:200]!r}')
    return status


@contextmanager
def sole_instance(status_directory: str | Path, lock_directory: str | Path | None = None) -> Iterator[int | None]:
    """Run as the only instance of an executable in a job's directory.

    The lock (``LOCK_FILE`` in ``lock_directory``, default ``status_directory``) is held until the block ends. An
    instance that finds it held is a second start of a running job: it waits for the first to end and gets the exit
    code of the ``status.json`` that the first left in ``status_directory``, to exit with it and leave everything as
    it is; ``None`` when the first died without one (the second then does the work) or when the lock was free (a
    first start, or a later run in the same directory). A file system without locks runs unlocked, with a warning.
    """
    lock_directory = Path(lock_directory if lock_directory is not None else status_directory)
    lock_directory.mkdir(parents=True, exist_ok=True)
    with open(lock_directory / LOCK_FILE, 'a') as handle:
        earlier = None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f'another instance runs in `{lock_directory}`: waiting for it to end', file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                status = parse_status((Path(status_directory) / STATUS_FILE).read_text())
                print(f'the first start ended `{status["status"]}`: its outputs stand', file=sys.stderr)
                earlier = int(status['exit_code'])
            except (OSError, ValueError):
                print('the first start died without a status: doing the work', file=sys.stderr)
        except OSError as exception:
            print(
                f'warning: cannot lock `{handle.name}` ({exception}): unguarded against a second start', file=sys.stderr
            )
        yield earlier
