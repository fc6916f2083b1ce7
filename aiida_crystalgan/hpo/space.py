"""The search space of a hyperparameter search: ranges and choices over ``GanConfig`` fields.

Written as a plain dict (a YAML file, an ``orm.Dict``), one entry per searched field::

    generator_lr: {low: 1.0e-5, high: 1.0e-3, log: true}    # log-uniform float
    cutoff: {low: 4.0, high: 6.0, num: 3}                    # uniform float; `num` grid points for `grid`
    critic_depth: {low: 1, high: 4}                          # integer (the field's type), `step` optional
    critic_width: {choices: [32, 64, 128]}                   # categorical

Architecture fields (depth, width, cutoff, radial basis size...) are searched like any other field.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from aiida_crystalgan.gan.config import GanConfig

#: Largest grid a search accepts unless told otherwise.
DEFAULT_GRID_CAP = 256
_RANGE_KEYS = {'low', 'high', 'log', 'step', 'num'}


def config_field_types() -> dict[str, str]:
    """``GanConfig`` field names and their type names (``int``, ``float``, ``bool``)."""
    return {field.name: str(field.type) for field in dataclasses.fields(GanConfig)}


@dataclass(frozen=True)
class Parameter:
    """One searched field: a numeric range (``low``..``high``, optionally ``log``/``step``) or ``choices``."""

    name: str
    kind: str  # 'int', 'float' or 'categorical'
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    num: int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of this parameter."""
        if self.kind == 'categorical':
            return CategoricalDistribution(self.choices)
        if self.kind == 'int':
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[Any]:
        """The values a grid search visits: the choices, every integer step, or ``num`` points (log-spaced if log)."""
        if self.kind == 'categorical':
            return list(self.choices)
        if self.kind == 'int':
            step = int(self.step or 1)
            if self.log and self.num:
                return sorted({int(round(v)) for v in np.geomspace(self.low, self.high, self.num)})
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step:
            return [float(v) for v in np.arange(self.low, self.high + 0.5 * self.step, self.step)]
        if not self.num:
            raise ValueError(
                f'search space `{self.name}`: a float range needs `num` (grid points) or `step` for a grid search'
            )
        spaced = np.geomspace if self.log else np.linspace
        return [float(v) for v in spaced(self.low, self.high, self.num)]


class SearchSpace:
    """Validated search space; ``ValueError`` with a message naming the field for every mistake."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping) or not values:
            raise ValueError('the search space must be a non-empty mapping of GanConfig fields to ranges or choices')
        types = config_field_types()
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(
                f'unknown field(s) in the search space: {", ".join(unknown)}; searchable fields are the '
                f'GanConfig fields: {", ".join(sorted(types))}'
            )
        self.parameters = {name: _parameter(name, types[name], spec) for name, spec in sorted(values.items())}

    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: parameter.distribution() for name, parameter in self.parameters.items()}

    def grid_size(self) -> int:
        return math.prod(len(parameter.grid_values()) for parameter in self.parameters.values())

    def grid(self, cap: int = DEFAULT_GRID_CAP) -> dict[str, list[Any]]:
        """The grid axes (for Optuna's ``GridSampler``); ``ValueError`` when the grid has more than ``cap`` points."""
        size = self.grid_size()
        if size > cap:
            raise ValueError(
                f'the grid has {size} points, more than the cap of {cap}: narrow the ranges, lower `num` '
                'or raise the cap'
            )
        return {name: parameter.grid_values() for name, parameter in self.parameters.items()}

    def grid_points(self, cap: int = DEFAULT_GRID_CAP) -> list[dict[str, Any]]:
        axes = self.grid(cap)
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def check_config(self, base: Mapping[str, Any]) -> None:
        """``ValueError`` when ``base`` with the extreme values of any parameter is not a valid ``GanConfig``."""
        for name, parameter in self.parameters.items():
            extremes = parameter.choices if parameter.kind == 'categorical' else (parameter.low, parameter.high)
            for value in extremes:
                if parameter.kind == 'int':
                    value = int(value)
                try:
                    GanConfig.from_dict({**base, name: value})
                except ValueError as exception:
                    raise ValueError(f'search space `{name}` = {value!r}: {exception}') from exception


def _parameter(name: str, field_type: str, spec: Any) -> Parameter:
    if not isinstance(spec, Mapping):
        raise ValueError(f'search space `{name}`: expected a mapping with `low`/`high` or `choices`, got {spec!r}')
    if 'choices' in spec:
        extra = sorted(set(spec) - {'choices'})
        if extra:
            raise ValueError(f'search space `{name}`: `choices` cannot be combined with {", ".join(extra)}')
        choices = spec['choices']
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f'search space `{name}`: `choices` must be a non-empty list')
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f'search space `{name}`: `choices` repeats a value')
        return Parameter(name, 'categorical', choices=tuple(choices))
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown or 'low' not in spec or 'high' not in spec:
        raise ValueError(
            f'search space `{name}`: a range takes `low`, `high` and optionally `log`, `step`, `num`; '
            f'got {", ".join(sorted(spec))}'
        )
    if field_type == 'bool':
        raise ValueError(f'search space `{name}`: a boolean field takes `choices: [true, false]`, not a range')
    low, high = spec['low'], spec['high']
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (low, high)):
        raise ValueError(f'search space `{name}`: `low` and `high` must be numbers')
    if field_type == 'int' and any(float(v) != int(v) for v in (low, high)):
        raise ValueError(f'search space `{name}`: integer field, `low` and `high` must be integers')
    if not low < high:
        raise ValueError(f'search space `{name}`: empty range, `low` ({low}) must be below `high` ({high})')
    log = bool(spec.get('log', False))
    if log and low <= 0:
        raise ValueError(f'search space `{name}`: a log range needs `low` > 0')
    step, num = spec.get('step'), spec.get('num')
    if step is not None and (log or not isinstance(step, int | float) or step <= 0):
        raise ValueError(f'search space `{name}`: `step` must be positive and cannot be combined with `log`')
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 2):
        raise ValueError(f'search space `{name}`: `num` (grid points) must be an integer of at least 2')
    return Parameter(name, field_type, float(low), float(high), log, None if step is None else float(step), num)
