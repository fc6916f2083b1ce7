"""Helpers shared by the parsers: copy retrieved files out, read the tail of stderr."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiida import orm


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
