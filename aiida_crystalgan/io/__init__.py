"""File formats shared by the AiiDA layer and the executables that run on compute nodes (no AiiDA import)."""

from .datafile import (
    LABELLED,
    MINIMUM,
    ROLES,
    DataFile,
    DataFileWriter,
    StructureRecord,
    check_role,
    read_datafile,
    write_datafile,
)

__all__ = (
    'LABELLED',
    'MINIMUM',
    'ROLES',
    'DataFile',
    'DataFileWriter',
    'StructureRecord',
    'check_role',
    'read_datafile',
    'write_datafile',
)
