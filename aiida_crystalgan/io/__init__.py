"""File formats shared by the AiiDA layer and the executables that run on compute nodes (no AiiDA import)."""

from .datafile import DataFile, DataFileWriter, StructureRecord, read_datafile, write_datafile

__all__ = ('DataFile', 'DataFileWriter', 'StructureRecord', 'read_datafile', 'write_datafile')
