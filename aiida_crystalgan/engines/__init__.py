"""Engines compute energies and forces; workflows only ever talk to them through ``engines.base``."""

from .base import OPERATIONS, EngineWorkChain, expose_engine_inputs, load_engine, submit_engine

__all__ = ('OPERATIONS', 'EngineWorkChain', 'expose_engine_inputs', 'load_engine', 'submit_engine')
