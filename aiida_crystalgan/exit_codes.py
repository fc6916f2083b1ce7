"""The exit codes of the plugin's CalcJobs and engine workchains: one number, one meaning, grouped by range.

The table of every process's codes is ``docs/exit_codes.md`` (written by ``scripts/exit_codes_table.py``).

=========  ==========================================================================================================
range      owner and meaning
=========  ==========================================================================================================
1-199      aiida-core: CalcJob and scheduler (e.g. 100 ERROR_NO_RETRIEVED_FOLDER, 120 ERROR_SCHEDULER_OUT_OF_WALLTIME)
300-302    aiida-core's ``BaseRestartWorkChain``: 301 ERROR_SUB_PROCESS_EXCEPTED, 302 ERROR_SUB_PROCESS_KILLED;
           aiida-vasp's ``VaspWorkChain``: 300 ERROR_MISSING_REQUIRED_OUTPUT
310-339    our CalcJobs: output files missing or unreadable (aiida-vasp's ``VaspCalculation`` keeps 333)
340-379    our CalcJobs: errors reported by the executables, VASP's named errors at 360-369 (aiida-vasp keeps 350-352)
380-399    our CalcJobs: recoverable stops reported by the executables (soft wall-clock checkpoint)
400-405    aiida-core's ``BaseRestartWorkChain`` (401, 402) and aiida-vasp's ``VaspWorkChain`` (400-405)
500-599    engine workchains (MLIP, VASP); aiida-vasp's ``VaspWorkChain`` keeps 500-505
600-699    stage workchains
700-749    campaign; aiida-vasp keeps 700-704 (``VaspCalculation``, ``VaspWorkChain``)
1002-1005  aiida-vasp's ``VaspCalculation`` parser
=========  ==========================================================================================================
"""

from __future__ import annotations

from typing import Any

#: ``label: (status, message)`` of every exit code that this package defines on its CalcJobs and engines.
EXIT_CODES: dict[str, tuple[int, str]] = {
    # 310-339: output files missing or unreadable
    'ERROR_NO_OUTPUT': (310, 'The executable wrote none of its output files: {message}'),
    'ERROR_CORRUPT_OUTPUT': (311, 'An output file could not be read: {message}'),
    # 340-379: errors reported by the executables
    'ERROR_INVALID_INPUT': (340, 'The executable rejected its input: {message}'),
    'ERROR_EXECUTABLE_FAILED': (341, 'The executable failed: {message}'),
    'ERROR_EXECUTABLE_CRASHED': (342, 'The executable ended without writing `status.json` (crash, out of memory, '
                                      'killed by the scheduler): {message}'),
    'ERROR_VASP_IONS_TOO_CLOSE': (360, 'VASP found ions too close to each other.'),
    'ERROR_VASP_ZPOTRF': (361, 'VASP failed in ZPOTRF/ZTRTRI (Cholesky decomposition of the overlap matrix).'),
    'ERROR_VASP_EDDDAV_ZHEGV': (362, 'VASP failed in ZHEGV of the Davidson solver (EDDDAV).'),
    'ERROR_VASP_SUBSPACE_ROTATION': (363, 'VASP failed in the subspace rotation (PSSYEVX/PDSYEVX).'),
    'ERROR_VASP_WFINIT_LINEAR_DEPENDENCE': (364, 'VASP found the orbitals linearly dependent at WFINIT.'),
    # 380-399: recoverable stops reported by the executables
    'ERROR_SOFT_WALLTIME_CHECKPOINT': (380, 'The soft wall-clock limit was reached; the work done so far was kept '
                                            '(a checkpoint, the finished structures) to resume from.'),
    # 500-599: engine workchains
    'ERROR_CALCULATION_FAILED': (510, 'The engine calculation failed: {message}'),
    'ERROR_MISSING_OUTPUT': (511, 'The engine returned no output for structures {keys}.'),
    'ERROR_IONS_TOO_CLOSE': (520, 'VASP found ions too close to each other: the structure is unphysical, discard it.'),
}

#: The CalcJob exit code of each ``status`` that an executable writes in ``status.json`` (see ``io.status``).
STATUS_EXIT_CODES = {
    'failed': 'ERROR_EXECUTABLE_FAILED',
    'invalid_input': 'ERROR_INVALID_INPUT',
    'soft_wallclock': 'ERROR_SOFT_WALLTIME_CHECKPOINT',
}

#: The codes of the CalcJobs that run one of this package's executables (parsed through ``status.json``).
EXECUTABLE_EXIT_CODES = ('ERROR_NO_OUTPUT', 'ERROR_CORRUPT_OUTPUT', 'ERROR_INVALID_INPUT', 'ERROR_EXECUTABLE_FAILED',
                         'ERROR_EXECUTABLE_CRASHED', 'ERROR_SOFT_WALLTIME_CHECKPOINT')


def define_exit_codes(spec: Any, *labels: str) -> None:
    """Add the exit codes ``labels`` of :data:`EXIT_CODES` to the process ``spec``."""
    for label in labels:
        status, message = EXIT_CODES[label]
        spec.exit_code(status, label, message=message)
