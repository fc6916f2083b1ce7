"""GanConfig: defaults, validation messages and the dict/JSON round trip."""

from __future__ import annotations

import json

import pytest

from aiida_crystalgan.gan import GanConfig


def test_defaults_round_trip_through_json(tmp_path):
    config = GanConfig(steps=7, cutoff=4)
    assert isinstance(config.cutoff, float)
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config.to_dict()))
    assert GanConfig.from_json(path) == config
    assert GanConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ('values', 'message'),
    [
        ({'steps': 0}, '`steps` must be positive'),
        ({'n_max': -3}, '`n_max` must be positive'),
        ({'gradient_penalty_weight': -1.0}, '`gradient_penalty_weight` must be non-negative'),
        ({'ema_decay': 1.0}, r'`ema_decay` must be in \[0, 1\)'),
        ({'validation_fraction': 1.5}, '`validation_fraction`'),
        ({'batch_size': 2.5}, '`batch_size` must be of type int'),
        ({'mixed_precision': 'yes'}, '`mixed_precision` must be of type bool'),
        ({'steps': True}, '`steps` must be of type int'),
        ({'stepz': 3}, 'unknown config key'),
    ],
)
def test_invalid_values_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        GanConfig.from_dict(values)


def test_invalid_json_is_a_value_error(tmp_path):
    path = tmp_path / 'config.json'
    path.write_text('{"steps": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        GanConfig.from_json(path)
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match='JSON object'):
        GanConfig.from_json(path)
