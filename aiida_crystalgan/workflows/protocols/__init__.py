"""YAML protocols (``fast``, ``balanced``, ``precise``) of every workchain and engine: see :mod:`.utils`."""

from .utils import DEFAULT_PROTOCOL, PROTOCOL_DIRECTORY, ProtocolMixin, load_protocol_file, recursive_merge

__all__ = ('DEFAULT_PROTOCOL', 'PROTOCOL_DIRECTORY', 'ProtocolMixin', 'load_protocol_file', 'recursive_merge')
