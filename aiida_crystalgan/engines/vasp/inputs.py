"""From an engine operation and a protocol to the INCAR, KPOINTS, POTCAR mapping and settings of a VASP run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiida_vasp.protocols
import yaml
from aiida import orm

from aiida_crystalgan.workflows.protocols.utils import DEFAULT_PROTOCOL, check_protocol

from .protocols import load_protocols

_AIIDA_VASP_PROTOCOL = Path(aiida_vasp.protocols.__file__).parent / 'vasp.yaml'
PROTOCOLS = tuple(load_protocols()['protocols'])


def default_potential_mapping() -> dict[str, str]:
    """aiida-vasp's recommended POTCAR per element (Materials Project choices, e.g. ``Nb: Nb_pv``)."""
    with _AIIDA_VASP_PROTOCOL.open(encoding='utf8') as handle:
        return yaml.safe_load(handle)['default_potential_mapping']


def species_order(structure: orm.StructureData) -> list[str]:
    """Element symbols in the order of the POSCAR species line (first appearance)."""
    symbols = [structure.get_kind(name).symbol for name in structure.get_site_kindnames()]
    return list(dict.fromkeys(symbols))


def operation_incar(operation: str, parameters: dict[str, Any], structure: orm.StructureData) -> dict[str, Any]:
    """INCAR tags that follow from the engine-independent operation ``parameters``."""
    defaults = load_protocols()['defaults']
    if operation == 'md':
        temperature = float(parameters['temperature'])
        tags = {
            'tebeg': temperature,
            'teend': temperature,
            'potim': float(parameters['timestep']),
            'nsw': int(parameters['steps']),
        }
        thermostat = parameters.get('thermostat', 'nose-hoover')
        if thermostat == 'nose-hoover':
            tags['mdalgo'] = 2
        elif thermostat == 'langevin':
            tags['mdalgo'] = 3
            tags['langevin_gamma'] = [defaults['langevin_gamma']] * len(species_order(structure))
        else:
            raise ValueError(f'unknown thermostat `{thermostat}`: use `nose-hoover` or `langevin`')
        if parameters.get('seed') is not None:
            tags['random_seed'] = [int(parameters['seed']), 0, 0]
        return tags
    if operation == 'relax':
        return {
            'ediffg': -abs(float(parameters['fmax'])),
            'nsw': int(parameters['max_steps']),
            'isif': 3 if parameters.get('relax_cell', True) else 2,
        }
    if operation == 'forces':
        return {}
    raise ValueError(f'unknown operation `{operation}`')


def get_incar(
    operation: str,
    parameters: dict[str, Any],
    structure: orm.StructureData,
    protocol: str = DEFAULT_PROTOCOL,
    incar_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the INCAR (lower-case tags): defaults < protocol < operation < operation parameters < overrides."""
    protocols = load_protocols()
    check_protocol(protocol, protocols)
    incar = dict(protocols['default_incar'])
    incar.update(protocols['protocols'][protocol]['incar'])
    incar.update(protocols['operations'][operation]['incar'])
    incar.update(operation_incar(operation, parameters, structure))
    incar.update({key.lower(): value for key, value in (incar_overrides or {}).items()})
    return incar


def get_kpoints(structure: orm.StructureData, spacing: float) -> orm.KpointsData:
    """Gamma-centred mesh with at most ``spacing`` (1/Å, 2π included) between k-points."""
    kpoints = orm.KpointsData()
    kpoints.set_cell_from_structure(structure)
    kpoints.set_kpoints_mesh_from_density(spacing)
    return kpoints


def get_potential_mapping(structure: orm.StructureData, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """POTCAR symbol for every kind and element of ``structure``: ``mapping`` (by kind or element) over aiida-vasp's.

    Elements are listed too, so that structures rebuilt from VASP files (kinds named by element) still find theirs.
    """
    full = {**default_potential_mapping(), **(mapping or {})}
    result = {}
    for kind in structure.kinds:
        symbol = full.get(kind.name, full.get(kind.symbol))
        if symbol is None:
            raise ValueError(f'no POTCAR for kind `{kind.name}`: add it to `potential_mapping`')
        result[kind.name] = symbol
        result.setdefault(kind.symbol, symbol)
    return result


def trajectory_frames(parameters: dict[str, Any]) -> int:
    """The relaxation steps to return as a trajectory: the parameter ``trajectory_frames``, else the protocol's."""
    return int(parameters.get('trajectory_frames', load_protocols()['defaults']['trajectory_frames']))


def get_settings(operation: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` of the ``VaspCalculation``: MD keeps its trajectory and is never an unconverged relaxation; a
    relaxation keeps its steps when it returns some (:func:`trajectory_frames`)."""
    if operation == 'md':
        return {
            'parser_settings': {'include_node': ['trajectory'], 'check_ionic_convergence': False},
            'CHECK_IONIC_CONVERGENCE': False,
        }
    if operation == 'relax' and trajectory_frames(parameters or {}) > 0:
        return {'parser_settings': {'include_node': ['trajectory']}}
    return {'parser_settings': {}}
