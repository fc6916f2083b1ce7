"""The exit codes of the plugin's CalcJobs and engine workchains: one number, one meaning, grouped by :data:`RANGES`.

The table of every process's codes is ``docs/exit_codes.md``: ``python -m aiida_crystalgan.exit_codes`` writes it.
"""

from __future__ import annotations

import sys
from typing import Any

ENTRY_POINT_GROUPS = ('aiida.calculations', 'aiida.workflows')

#: Who owns which exit status numbers, and what they mean.
RANGES = (
    (
        '1-199',
        'aiida-core: CalcJob and scheduler (e.g. 100 ERROR_NO_RETRIEVED_FOLDER, 120 ERROR_SCHEDULER_OUT_OF_WALLTIME)',
    ),
    ('300-302', "aiida-core's BaseRestartWorkChain (301, 302); aiida-vasp's VaspWorkChain (300)"),
    ('310-339', 'CalcJobs: output files missing or unreadable (aiida-vasp keeps 333)'),
    (
        '340-379',
        'CalcJobs: errors reported by the executables; VASP errors named by the parser at 360-369 '
        '(aiida-vasp keeps 350-352)',
    ),
    ('380-399', 'CalcJobs: recoverable stops reported by the executables (soft wall-clock checkpoint)'),
    ('400-405', "aiida-core's BaseRestartWorkChain (401, 402); aiida-vasp's VaspWorkChain; aiida-phonopy (400, 401)"),
    ('500-599', "engine workchains (MLIP, VASP); aiida-vasp's VaspWorkChain keeps 500-505"),
    ('600-699', 'stage workchains'),
    ('700-749', 'aiida-vasp keeps 700-704 (VaspCalculation, VaspWorkChain); campaign 710-749'),
    ('1002-1005', "aiida-vasp's VaspCalculation parser"),
)

#: ``label: (status, message)`` of every exit code that this package defines on its CalcJobs and engines.
EXIT_CODES: dict[str, tuple[int, str]] = {
    # 310-339: output files missing or unreadable
    'ERROR_NO_OUTPUT': (311, 'The executable wrote none of its output files: {message}'),
    'ERROR_CORRUPT_OUTPUT': (312, 'An output file could not be read: {message}'),
    # 340-379: errors reported by the executables
    'ERROR_INVALID_INPUT': (340, 'The executable rejected its input: {message}'),
    'ERROR_EXECUTABLE_FAILED': (341, 'The executable failed: {message}'),
    'ERROR_EXECUTABLE_CRASHED': (
        342,
        'The executable ended without writing `status.json` (crash, out of memory, killed by the scheduler): {message}',
    ),
    'ERROR_TRAINING_DIVERGED': (
        343,
        'Training diverged (a NaN or infinite loss); the last good checkpoint, if any, is '
        'the `checkpoint` output: {message}',
    ),
    'ERROR_VASP_IONS_TOO_CLOSE': (360, 'VASP found ions too close to each other.'),
    'ERROR_VASP_ZPOTRF': (361, 'VASP failed in ZPOTRF/ZTRTRI (Cholesky decomposition of the overlap matrix).'),
    'ERROR_VASP_EDDDAV_ZHEGV': (362, 'VASP failed in ZHEGV of the Davidson solver (EDDDAV).'),
    'ERROR_VASP_SUBSPACE_ROTATION': (363, 'VASP failed in the subspace rotation (PSSYEVX/PDSYEVX).'),
    'ERROR_VASP_WFINIT_LINEAR_DEPENDENCE': (364, 'VASP found the orbitals linearly dependent at WFINIT.'),
    # 380-399: recoverable stops reported by the executables
    'ERROR_SOFT_WALLTIME_CHECKPOINT': (
        380,
        'The soft wall-clock limit was reached; the work done so far was kept '
        '(a checkpoint, the finished structures) to resume from.',
    ),
    # 500-599: engine workchains
    'ERROR_CALCULATION_FAILED': (510, 'The engine calculation failed: {message}'),
    'ERROR_MISSING_ENGINE_OUTPUT': (511, 'The engine returned no output for structures {keys}.'),
    'ERROR_TOO_FEW_SUCCEEDED': (
        512,
        'Only {succeeded} of {total} structures succeeded, fewer than the quorum of '
        '{required}; the failures are in the `failures` output: {failures}',
    ),
    'ERROR_IONS_TOO_CLOSE': (520, 'VASP found ions too close to each other: the structure is unphysical, discard it.'),
    # 521-539: why one structure of a batch failed (the ``exit_status`` of its entry in the ``failures`` output)
    'ERROR_STRUCTURE_UNSUPPORTED_ELEMENT': (521, 'The model cannot evaluate an element of the structure.'),
    'ERROR_STRUCTURE_NON_FINITE': (
        522,
        'The energy, forces, stress or positions of the structure are NaN or infinite.',
    ),
    'ERROR_STRUCTURE_EXPLODED': (523, 'The relaxation exploded: the volume changed by more than a factor 3.'),
    'ERROR_STRUCTURE_FAILED': (524, 'The calculation of the structure raised an error.'),
    'ERROR_STRUCTURE_CRASHED': (525, 'The engine died while working on the structure.'),
    'ERROR_STRUCTURE_NOT_RUN': (526, 'The structure was not run to the end within the allowed restarts.'),
    'ERROR_RELAX_NOT_CONVERGED': (
        527,
        'The relaxation did not converge within `max_relax_continuations` continuations from its last geometry.',
    ),
}

#: The per-structure code of each ``reason`` that ``crystalgan-mlip`` writes in ``<key>.failed.json``.
FAILURE_EXIT_CODES = {
    'unsupported_element': 'ERROR_STRUCTURE_UNSUPPORTED_ELEMENT',
    'non_finite': 'ERROR_STRUCTURE_NON_FINITE',
    'exploded': 'ERROR_STRUCTURE_EXPLODED',
    'error': 'ERROR_STRUCTURE_FAILED',
    'crashed': 'ERROR_STRUCTURE_CRASHED',
}
#: The codes of every engine workchain: what the batch ended with, and why single structures failed.
ENGINE_EXIT_CODES = (
    'ERROR_CALCULATION_FAILED',
    'ERROR_MISSING_ENGINE_OUTPUT',
    'ERROR_TOO_FEW_SUCCEEDED',
    *FAILURE_EXIT_CODES.values(),
    'ERROR_STRUCTURE_NOT_RUN',
)

#: The CalcJob exit code of each ``status`` that an executable writes in ``status.json`` (see ``io.status``).
STATUS_EXIT_CODES = {
    'failed': 'ERROR_EXECUTABLE_FAILED',
    'invalid_input': 'ERROR_INVALID_INPUT',
    'soft_wallclock': 'ERROR_SOFT_WALLTIME_CHECKPOINT',
    'diverged': 'ERROR_TRAINING_DIVERGED',
}

#: The codes of the CalcJobs that run one of this package's executables (parsed through ``status.json``).
EXECUTABLE_EXIT_CODES = (
    'ERROR_NO_OUTPUT',
    'ERROR_CORRUPT_OUTPUT',
    'ERROR_INVALID_INPUT',
    'ERROR_EXECUTABLE_FAILED',
    'ERROR_EXECUTABLE_CRASHED',
    'ERROR_SOFT_WALLTIME_CHECKPOINT',
)


def define_exit_codes(spec: Any, *labels: str) -> None:
    """Add the exit codes ``labels`` of :data:`EXIT_CODES` to the process ``spec``."""
    for label in labels:
        status, message = EXIT_CODES[label]
        spec.exit_code(status, label, message=message)


def collect_exit_codes() -> dict[int, dict[str, dict[str, Any]]]:
    """``{status: {label: {'message': ..., 'processes': [entry point, ...]}}}`` of every ``crystalgan.*`` process.

    Inherited codes (aiida-core's, aiida-vasp's) are included: they are part of what each process can return.
    """
    from aiida.plugins.entry_point import get_entry_point_names, load_entry_point

    codes: dict[int, dict[str, dict[str, Any]]] = {}
    for group in ENTRY_POINT_GROUPS:
        for name in get_entry_point_names(group):
            if not name.startswith('crystalgan.'):
                continue
            for label, exit_code in load_entry_point(group, name).spec().exit_codes.items():
                entry = codes.setdefault(exit_code.status, {}).setdefault(
                    label, {'message': exit_code.message, 'processes': []}
                )
                entry['processes'].append(f'{group.removeprefix("aiida.")}:{name}')
    return codes


def upstream_exit_codes() -> set[tuple[int, str]]:
    """``(status, label)`` of the codes that the ``crystalgan.*`` processes inherit from other packages' classes."""
    from aiida.engine import Process
    from aiida.plugins.entry_point import get_entry_point_names, load_entry_point

    inherited = set()
    for group in ENTRY_POINT_GROUPS:
        for name in get_entry_point_names(group):
            if not name.startswith('crystalgan.'):
                continue
            for base in load_entry_point(group, name).__mro__:
                if base.__module__.startswith('aiida_crystalgan') or not issubclass(base, Process):
                    continue
                inherited.update((code.status, label) for label, code in base.spec().exit_codes.items())
    return inherited


def render_table(codes: dict[int, dict[str, dict[str, Any]]]) -> str:
    """The Markdown page of ``docs/exit_codes.md`` for :func:`collect_exit_codes`'s result."""
    lines = [
        '# Exit codes',
        '',
        'Every exit code that a `crystalgan.*` CalcJob or WorkChain can end with, including those inherited from',
        "aiida-core, aiida-vasp and aiida-phonopy. The plugin's own are defined in `aiida_crystalgan/exit_codes.py`.",
        'Written by `python -m aiida_crystalgan.exit_codes > docs/exit_codes.md`; a test checks that it is current.',
        '',
        '| range | owner and meaning |',
        '|---|---|',
        *(f'| {numbers} | {meaning} |' for numbers, meaning in RANGES),
        '',
        '| status | label | message | processes (`calculations:` CalcJobs, `workflows:` WorkChains) |',
        '|---:|---|---|---|',
    ]
    everyone = {process for labels in codes.values() for entry in labels.values() for process in entry['processes']}
    for status in sorted(codes):
        for label, entry in sorted(codes[status].items()):
            message = entry['message'].replace('|', '\\|').replace('\n', ' ')
            processes = 'all' if set(entry['processes']) == everyone else ', '.join(sorted(entry['processes']))
            lines.append(f'| {status} | `{label}` | {message} | {processes} |')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.stdout.write(render_table(collect_exit_codes()))
