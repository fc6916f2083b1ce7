"""Parser of the VASP engine's calculations: aiida-vasp's ``VaspParser`` that names the VASP errors as exit codes.

aiida-vasp reports a failed run as ``ERROR_DID_NOT_FINISH``, ``ERROR_ELECTRONIC_NOT_CONVERGED`` or
``ERROR_VASP_CRITICAL_ERROR`` whatever VASP printed. The restart handlers of ``VaspBaseWorkChain`` need to know which
error it was, so this parser replaces those codes by the one of the error found in VASP's standard output (the
``ERROR_VASP_*`` codes of ``exit_codes.py``). It scans with parsevasp's stream configuration, which aiida-vasp uses
for its ``notifications``, extended by the errors that parsevasp does not know.
"""

from __future__ import annotations

from typing import IO, Any

from aiida.engine import ExitCode
from aiida_vasp.parsers.vasp import VaspParser
from parsevasp.stream import Stream

STDOUT = 'vasp_output'

#: Errors added to parsevasp's stream configuration, which knows ``edddav_zhegv`` but matches the subspace rotation
#: errors only in the case VASP 5 printed them (``Error in``, where VASP 6 prints ``ERROR in``).
EXTRA_STREAM_ERRORS: dict[str, dict[str, Any]] = {
    'ions_too_close': {
        'kind': 'ERROR',
        'regex': '(?i)distance between some ions is very small',
        'message': 'Ions too close to each other.',
    },
    'zpotrf': {'kind': 'ERROR', 'regex': 'ZPOTRF|ZTRTRI', 'message': 'Cholesky decomposition of the overlap failed.'},
    'subspace_rotation': {
        'kind': 'ERROR',
        'regex': '(?i)subspace rotation (PSSYEVX|PDSYEVX)',
        'message': 'Error in the subspace rotation.',
    },
    'wfinit_linear_dependence': {
        'kind': 'ERROR',
        'regex': '(?i)linearly dependent at WFINIT',
        'message': 'Orbitals linearly dependent at WFINIT.',
    },
}

#: Exit code of each stream error, in order of precedence: a run that reports several gets the first one's code.
NAMED_ERRORS = (
    ('ions_too_close', 'ERROR_VASP_IONS_TOO_CLOSE'),
    ('zpotrf', 'ERROR_VASP_ZPOTRF'),
    ('edddav_zhegv', 'ERROR_VASP_EDDDAV_ZHEGV'),
    ('subspace_rotation', 'ERROR_VASP_SUBSPACE_ROTATION'),
    ('wfinit_linear_dependence', 'ERROR_VASP_WFINIT_LINEAR_DEPENDENCE'),
)
NAMED_EXIT_CODES = tuple(label for _, label in NAMED_ERRORS)


def named_vasp_error(stdout: IO[str]) -> str | None:
    """The exit code label of the error that VASP reports in ``stdout`` (see :data:`NAMED_ERRORS`), or ``None``."""
    found = {entry.shortname for entry in Stream(file_handler=stdout, config=EXTRA_STREAM_ERRORS).entries}
    return next((label for name, label in NAMED_ERRORS if name in found), None)


class VaspEngineParser(VaspParser):
    """``VaspParser`` whose failures carry the exit code of the VASP error behind them, when VASP named one."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        exit_code = super().parse(**kwargs)
        if exit_code is None or exit_code.status == 0:
            return exit_code
        try:
            with self.retrieved.base.repository.open(STDOUT) as handle:
                label = named_vasp_error(handle)
        except FileNotFoundError:
            return exit_code
        return exit_code if label is None else self.exit_codes[label]
