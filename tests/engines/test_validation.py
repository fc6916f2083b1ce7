"""Validation at submission: wrong types and out-of-bound values are messages, never exceptions of the validators."""

from __future__ import annotations

import re

import pytest
from aiida import orm

from aiida_crystalgan.engines.base import validate_operation_parameters
from aiida_crystalgan.engines.vasp import VaspEngineWorkChain
from aiida_crystalgan.workflows.phonons import PhononWorkChain
from aiida_crystalgan.workflows.phonons import validate_parameters as validate_phonons
from aiida_crystalgan.workflows.stability import StabilityWorkChain
from aiida_crystalgan.workflows.stability import validate_parameters as validate_stability

MD = {'temperature': 300, 'steps': 100, 'timestep': 2.0}


@pytest.mark.parametrize(
    ('operation', 'parameters', 'message'),
    [
        ('md', {**MD, 'temperature': '300'}, "`temperature` must be a number, got '300'"),
        ('md', {**MD, 'temperature': 3e5}, '`temperature` must be positive and at most 10000'),
        ('md', {**MD, 'steps': 10.5}, '`steps` must be an integer'),
        ('md', {**MD, 'steps': True}, '`steps` must be an integer'),
        ('md', {**MD, 'timestep': 2000}, '`timestep` must be positive and at most 10'),
        ('md', {**MD, 'thermostat': 'berendsen'}, '`thermostat` must be one of'),
        ('md', {**MD, 'seed': 'a'}, '`seed` must be an integer'),
        ('relax', {'fmax': None, 'max_steps': 10}, '`fmax` must be a number'),
        ('relax', {'fmax': 0.05, 'max_steps': 10, 'relax_cell': 'yes'}, '`relax_cell` must be true or false'),
        ('relax', {'fmax': 0.05, 'max_steps': 10, 'trajectory_frames': -1}, '`trajectory_frames` must be between 0'),
        ('relax', {'fmax': 0.05, 'max_steps': 10, 'trajectory_frames': 2.0}, '`trajectory_frames` must be an integer'),
    ],
)
def test_operation_parameters_return_messages(operation, parameters, message):
    result = validate_operation_parameters(operation, parameters)
    assert result is not None
    assert re.search(message, result), result


def test_valid_operation_parameters():
    assert validate_operation_parameters('md', {**MD, 'sample_interval': 10, 'thermostat': 'langevin'}) is None
    assert validate_operation_parameters('relax', {'fmax': 0.05, 'max_steps': 100, 'relax_cell': False}) is None
    assert validate_operation_parameters('relax', {'fmax': 0.05, 'max_steps': 100, 'trajectory_frames': 0}) is None


@pytest.mark.parametrize(
    ('settings', 'message'),
    [
        ({'max_concurrent': 0}, '`max_concurrent` must be positive'),
        ({'kpoints_spacing': '0.2'}, '`kpoints_spacing` must be a number'),
        ({'max_iterations': 1000}, '`max_iterations` must be positive and at most 50'),
        ({'incar': 'encut=500'}, '`incar` must be a mapping'),
    ],
)
def test_vasp_settings_bounds(settings, message):
    assert message in VaspEngineWorkChain.spec().inputs['settings'].validate(orm.Dict(settings)).message


@pytest.mark.parametrize(
    ('overrides', 'message'),
    [
        ({'mesh': [1000, 1000, 1000]}, '`mesh` must be 3 integers from 1 to 64'),
        ({'mesh': ['8', 8, 8]}, '`mesh` must be 3 integers'),
        ({'supercell_matrix': [20, 20, 20]}, 'supercell of 1 to 1000 unit cells, not 8000'),
        ({'supercell_matrix': [2.5, 2, 2]}, '`supercell_matrix` must be 3 integers'),
        ({'displacement': 3.0}, '`displacement` must be positive and at most 0.5'),
        ({'dos': 'no'}, '`dos` must be true or false'),
    ],
)
def test_phonon_parameters_bounds(overrides, message):
    parameters = {**PhononWorkChain.get_protocol_inputs('fast'), **overrides}
    assert message in validate_phonons(orm.Dict(parameters), None)


def test_stability_parameters_checked_at_submission():
    """A string ``fmax`` or a phonon mesh typo in the stability parameters is refused before anything runs."""
    parameters = StabilityWorkChain.get_protocol_inputs('fast')
    assert validate_stability(orm.Dict(parameters), None) is None
    message = validate_stability(orm.Dict({**parameters, 'relax': {**parameters['relax'], 'fmax': '0.1'}}), None)
    assert '`fmax` must be a number' in message
    message = validate_stability(
        orm.Dict({**parameters, 'phonons': {**parameters['phonons'], 'mesh': [0, 4, 4]}}), None
    )
    assert 'phonons: `mesh` must be 3 integers' in message


@pytest.mark.parametrize(
    ('overrides', 'message'),
    [
        ({'force_tolerance': '0.1'}, 'override `force_tolerance` must be a number'),
        ({'check_phonons': 'yes'}, 'override `check_phonons` must be true or false'),
        ({'relax': 0.1}, 'override `relax` must be a mapping'),
        ({'phonons': {'mesh': 8}}, 'override `mesh` must be a list'),
    ],
)
def test_protocol_override_types(overrides, message):
    with pytest.raises(ValueError, match=message):
        StabilityWorkChain.get_protocol_inputs('fast', overrides)
