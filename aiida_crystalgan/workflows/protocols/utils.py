"""One protocol mechanism for the whole plugin: YAML files of ``fast`` / ``balanced`` / ``precise`` inputs.

A protocol file holds ``default_inputs`` (every value, none of them repeated in code) and ``protocols``, each with a
``description`` and the values it changes. :class:`ProtocolMixin` gives a workchain its available protocols, its
protocol inputs and validated overrides; :func:`load_protocol_file` is the one YAML loader, used by the engines too.
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

#: The protocol of every workchain and engine when none is named.
DEFAULT_PROTOCOL = 'fast'
#: Folder of the workchains' protocol files.
PROTOCOL_DIRECTORY = pathlib.Path(__file__).parent


def recursive_merge(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``left`` updated with ``right``, merging nested mappings key by key (neither argument is changed)."""
    merged = copy.deepcopy(dict(left))
    for key, value in right.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _read(path: pathlib.Path) -> dict[str, Any]:
    with path.open(encoding='utf8') as handle:
        return yaml.safe_load(handle)


def load_protocol_file(path: pathlib.Path) -> dict[str, Any]:
    """The content of the protocol file at ``path`` (read once; a fresh copy, safe to modify)."""
    return copy.deepcopy(_read(pathlib.Path(path)))


def check_protocol(protocol: str, data: Mapping[str, Any]) -> str:
    """Return ``protocol``, or raise ``ValueError`` when the protocol file ``data`` does not define it."""
    if protocol not in data['protocols']:
        raise ValueError(f'unknown protocol `{protocol}`: choose one of {", ".join(data["protocols"])}')
    return protocol


def _type_error(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace the protocol value ``default`` (a bool, number, string or list), if it cannot.

    A number may replace any number; ``None`` defaults (optional values) and sets (dynamic sub-dicts) take anything.
    """
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), 'true or false'
    elif isinstance(default, (int, float)):
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), 'a number'
    elif isinstance(default, str):
        ok, what = isinstance(value, str), 'a string'
    elif isinstance(default, list):
        ok, what = isinstance(value, (list, tuple)), 'a list'
    elif isinstance(default, Mapping):
        ok, what = isinstance(value, Mapping), 'a mapping'
    else:
        return None
    return None if ok else f'override `{name}` must be {what} like the protocol value {default!r}, got {value!r}'


def validate_override_keys(overrides: Mapping[str, Any], allowed: Mapping[str, Any], path: str = '') -> None:
    """Raise ``ValueError`` naming the first key of ``overrides`` that ``allowed`` does not have, or a wrong type.

    ``allowed`` mirrors the protocol inputs: a leaf takes a value of the type of the protocol value (see
    :func:`_type_error`), a nested mapping is checked key by key, and a set lists the keys of a dynamic sub-dict (e.g.
    the fields of ``GanConfig``, checked by the workchain's own validator).
    """
    for key, value in overrides.items():
        name = f'{path}.{key}' if path else key
        if key not in allowed:
            raise ValueError(f'unknown override key `{name}`: choose among {", ".join(sorted(allowed))}')
        expected = allowed[key]
        message = _type_error(name, value, expected)
        if message:
            raise ValueError(message)
        if isinstance(expected, (set, frozenset)) and isinstance(value, Mapping):
            unknown = sorted(set(value) - expected)
            if unknown:
                choices = ', '.join(sorted(expected))
                raise ValueError(f'unknown override key `{name}.{unknown[0]}`: choose among {choices}')
        elif isinstance(expected, Mapping) and isinstance(value, Mapping):
            validate_override_keys(value, expected, name)


class ProtocolMixin:
    """Protocols of a workchain from its YAML file: ``get_available_protocols``, ``get_protocol_inputs``."""

    #: File name of the protocol file in ``aiida_crystalgan/workflows/protocols/``.
    _protocol_file: str

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        """Path of the workchain's protocol file."""
        return PROTOCOL_DIRECTORY / cls._protocol_file

    @classmethod
    def get_default_protocol(cls) -> str:
        """The protocol used when none is named (the same for every workchain)."""
        return DEFAULT_PROTOCOL

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict[str, str]]:
        """Every protocol of the file with its description."""
        data = load_protocol_file(cls.get_protocol_filepath())
        return {name: {'description': values['description']} for name, values in data['protocols'].items()}

    @classmethod
    def get_child_protocols(cls) -> dict[str, type[ProtocolMixin]]:
        """Input keys filled from another workchain's protocol of the same name, e.g. ``{'phonons': PhononWorkChain}``
        (as aiida-quantumespresso's relax workchain builds its ``base`` from ``PwBaseWorkChain``); none by default."""
        return {}

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The keys ``overrides`` may have: those of the protocol inputs and of the child protocols (subclasses add
        dynamic sub-dicts)."""
        keys = load_protocol_file(cls.get_protocol_filepath())['default_inputs']
        return {**keys, **{key: child.get_override_keys() for key, child in cls.get_child_protocols().items()}}

    @classmethod
    def get_protocol_inputs(
        cls, protocol: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The inputs of ``protocol`` (default: :data:`DEFAULT_PROTOCOL`) with ``overrides`` merged on top.

        Each child protocol (:meth:`get_child_protocols`) is the child's own protocol of the same name, with the
        overrides given under its key.

        :raises ValueError: for an unknown protocol or an override key that the protocol does not have.
        """
        overrides = dict(overrides or {})
        children = {
            key: child.get_protocol_inputs(protocol, overrides.pop(key, None))
            for key, child in cls.get_child_protocols().items()
        }
        data = load_protocol_file(cls.get_protocol_filepath())
        protocol = check_protocol(protocol or cls.get_default_protocol(), data)
        chosen = {key: value for key, value in data['protocols'][protocol].items() if key != 'description'}
        inputs = recursive_merge(data['default_inputs'], chosen)
        if overrides:
            validate_override_keys(overrides, cls.get_override_keys())
            inputs = recursive_merge(inputs, overrides)
        return {**inputs, **children}

    @classmethod
    def get_builder_with_parameters(
        cls, protocol: str | None = None, overrides: Mapping[str, Any] | None = None, **inputs: Any
    ):
        """A builder with ``inputs`` whose ``parameters`` input is :meth:`get_protocol_inputs` of ``protocol`` and
        ``overrides``: the builder of every stage whose protocol is its ``parameters`` (sampling, stability, phonons).
        """
        from aiida import orm

        builder = cls.get_builder()
        for key, value in inputs.items():
            builder[key] = value
        builder.parameters = orm.Dict(cls.get_protocol_inputs(protocol, overrides))
        return builder
