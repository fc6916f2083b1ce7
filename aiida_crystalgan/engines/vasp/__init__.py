"""The ``vasp`` engine: aiida-vasp's ``vasp.vasp`` with protocols, MD mapping and restart handlers."""

from .base import VaspBaseWorkChain
from .workchain import VaspEngineWorkChain

__all__ = ('VaspBaseWorkChain', 'VaspEngineWorkChain')
