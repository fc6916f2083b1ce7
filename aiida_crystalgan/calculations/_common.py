"""What the plugin's CalcJobs share: one serial executable, its stdout/stderr, a soft wall-clock margin."""

from __future__ import annotations

from aiida import orm
from aiida.common import CalcInfo, CodeInfo

#: Fraction of the scheduler's wall-clock limit after which the executables stop cleanly and keep their work.
SOFT_WALLTIME_FRACTION = 0.9


def set_serial_defaults(spec, parser_name: str) -> None:
    """One process on one machine without MPI, parsed by ``parser_name``."""
    options = spec.inputs['metadata']['options']
    options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
    options['withmpi'].default = False
    options['parser_name'].default = parser_name


def single_code_calcinfo(
    code: orm.AbstractCode, arguments: list[str], stdout: str, stderr: str, retrieve: list[str]
) -> CalcInfo:
    """The ``CalcInfo`` of one run of ``code`` with ``arguments``, retrieving ``retrieve`` plus stdout and stderr."""
    codeinfo = CodeInfo()
    codeinfo.code_uuid = code.uuid
    codeinfo.cmdline_params = arguments
    codeinfo.stdout_name = stdout
    codeinfo.stderr_name = stderr
    calcinfo = CalcInfo()
    calcinfo.codes_info = [codeinfo]
    calcinfo.retrieve_list = [*retrieve, stdout, stderr]
    return calcinfo
