"""YAML protocols (``fast``, ``balanced``, ``precise``) and the deep merge of user overrides onto them."""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml


def recursive_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated with ``overrides``, merging nested dictionaries key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@cache
def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files(__package__).joinpath(f'{name}.yaml').read_text())


def available_protocols(name: str = 'campaign') -> dict[str, str]:
    """Protocol names of the ``name`` protocol file with their descriptions."""
    return {key: value.get('description', '') for key, value in _load(name)['protocols'].items()}


def get_protocol_inputs(protocol: str | None = None, overrides: dict[str, Any] | None = None,
                        name: str = 'campaign') -> dict[str, Any]:
    """The parameters of ``protocol`` (default: the file's default) with ``overrides`` merged on top."""
    data = _load(name)
    protocol = protocol or data['default_protocol']
    if protocol not in data['protocols']:
        raise ValueError(f'unknown protocol `{protocol}`: choose one of {", ".join(data["protocols"])}')
    chosen = {k: v for k, v in data['protocols'][protocol].items() if k != 'description'}
    return recursive_merge(recursive_merge(data['default_inputs'], chosen), overrides or {})
