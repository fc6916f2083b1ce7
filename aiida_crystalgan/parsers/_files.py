"""Helpers shared by the parsers: copy retrieved files out, read the tail of stderr, read the executables' status."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_crystalgan.exit_codes import STATUS_EXIT_CODES
from aiida_crystalgan.io.status import parse_status


def copy_retrieved(retrieved: orm.FolderData, name: str, directory: Path) -> Path | None:
    """Copy ``name`` from ``retrieved`` into ``directory``; ``None`` when it was not retrieved."""
    if name not in retrieved.base.repository.list_object_names():
        return None
    target = directory / name
    with retrieved.base.repository.open(name, 'rb') as source, target.open('wb') as handle:
        shutil.copyfileobj(source, handle)
    return target


def stderr_tail(retrieved: orm.FolderData, stderr_name: str, limit: int = 500) -> str:
    """The last ``limit`` characters of the executable's stderr; empty when it was not retrieved or is empty."""
    try:
        return retrieved.base.repository.get_object_content(stderr_name).strip()[-limit:]
    except FileNotFoundError:
        return ''


def error_message(retrieved: orm.FolderData, stderr_name: str, limit: int = 500) -> str:
    """The last lines of the executable's stderr (where it explains a failure), or why there are none."""
    try:
        retrieved.base.repository.get_object_content(stderr_name)
    except FileNotFoundError:
        return 'no stderr was retrieved'
    return stderr_tail(retrieved, stderr_name, limit) or 'stderr is empty'


def executable_exit_code(parser: Parser, status_path: str, stderr_name: str) -> ExitCode | None:
    """The exit code that the executable's ``status.json`` names: ``None`` for ``ok``.

    No ``status.json`` means that the executable died before writing it: ``ERROR_EXECUTABLE_CRASHED``, with the tail
    of stderr. The CalcJob must define the codes of ``exit_codes.EXECUTABLE_EXIT_CODES``.
    """
    try:
        status = parse_status(parser.retrieved.base.repository.get_object_content(status_path))
    except FileNotFoundError:
        return parser.exit_codes.ERROR_EXECUTABLE_CRASHED.format(message=error_message(parser.retrieved, stderr_name))
    except ValueError as exception:
        return parser.exit_codes.ERROR_CORRUPT_OUTPUT.format(message=f'{status_path}: {exception}')
    label = STATUS_EXIT_CODES.get(status['status'])
    return None if label is None else parser.exit_codes[label].format(message=status['message'])
