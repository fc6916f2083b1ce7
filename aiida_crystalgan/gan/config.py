"""Hyperparameters of the GAN: one validated dataclass that round-trips through a plain dict / JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Fields that fix the shape of the networks: a resumed run must keep them.
ARCHITECTURE_FIELDS = (
    'n_max',
    'cutoff',
    'num_rbf',
    'max_images',
    'angular_order',
    'angular_cutoff',
    'latent_dim',
    'slot_latent_dim',
    'generator_width',
    'generator_depth',
    'critic_width',
    'critic_depth',
    'physics_width',
    'physics_depth',
)


@dataclass
class GanConfig:
    """Everything that defines a training run; every field has a default suitable for a small CPU run.

    ``checkpoint.pt`` is rewritten (atomically) every ``checkpoint_every_steps`` steps or ``checkpoint_every_minutes``
    minutes, whichever comes first (0 turns either off), so a killed run loses at most that much.

    ``angular_order`` > 0 adds three-body features (moments ``cos(theta)^n``, ``n = 1 .. angular_order``, of the bond
    angles within ``angular_cutoff``) to the radial ones; 0 turns them off.

    The physics head learns from the labelled data only: ``physics_pretrain_steps`` updates before the first GAN
    step, then one per step. Guidance: after ``physics_warmup_steps`` the generator also minimises ``energy_weight``
    x the physics head's energy per atom above the lowest labelled energy of its composition (no reward below it,
    where the head extrapolates) plus ``force_weight`` x a pseudo-Huber penalty of its forces, both ramped in linearly
    over ``physics_ramp_steps``. Both weights 0: no guidance.

    Priors on generated structures: a contact wall per species pair at ``min_distance_scale`` x the
    ``contact_quantile`` quantile of the minima's shortest contacts of that pair (``min_distance`` Å for a pair that no
    minimum has), penalised with ``repulsion_weight`` in training and enforced by separating atoms at generation; and
    ``volume_weight`` x the squared excess of the log volume per atom beyond one standard deviation of the minima's.
    """

    # representation and features
    n_max: int = 24
    cutoff: float = 5.0
    num_rbf: int = 16
    max_images: int = 4
    angular_order: int = 0
    angular_cutoff: float = 3.5
    # networks
    latent_dim: int = 32
    slot_latent_dim: int = 8
    generator_width: int = 128
    generator_depth: int = 3
    critic_width: int = 64
    critic_depth: int = 2
    physics_width: int = 64
    physics_depth: int = 2
    # optimisation
    steps: int = 300
    batch_size: int = 32
    critic_steps: int = 2
    generator_lr: float = 2e-4
    critic_lr: float = 2e-4
    physics_lr: float = 1e-3
    adam_beta1: float = 0.5
    adam_beta2: float = 0.9
    gradient_penalty_weight: float = 10.0
    diversity_weight: float = 1.0
    drift_weight: float = 1e-3
    ema_decay: float = 0.99
    # physics head and priors on generated structures
    head_force_weight: float = 1.0
    energy_weight: float = 0.1
    force_weight: float = 0.01
    physics_pretrain_steps: int = 100
    physics_warmup_steps: int = 50
    physics_ramp_steps: int = 100
    repulsion_weight: float = 10.0
    min_distance: float = 1.0
    min_distance_scale: float = 1.0
    contact_quantile: float = 0.05
    volume_weight: float = 1.0
    # bookkeeping
    validation_fraction: float = 0.0
    log_every: int = 10
    checkpoint_every_steps: int = 100
    checkpoint_every_minutes: float = 10.0
    seed: int = 0
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field with a bad type or value."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = {'int': int, 'float': (int, float), 'bool': bool}[field.type]
            if isinstance(value, bool) and field.type != 'bool' or not isinstance(value, expected):
                raise ValueError(f'config `{field.name}` must be of type {field.type}, got {value!r}')
            if field.type == 'float':
                setattr(self, field.name, float(value))
        positive = (
            'n_max',
            'cutoff',
            'num_rbf',
            'max_images',
            'latent_dim',
            'generator_width',
            'generator_depth',
            'critic_width',
            'critic_depth',
            'physics_width',
            'physics_depth',
            'steps',
            'batch_size',
            'critic_steps',
            'generator_lr',
            'critic_lr',
            'physics_lr',
            'angular_cutoff',
            'min_distance',
            'min_distance_scale',
            'log_every',
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f'config `{name}` must be positive, got {getattr(self, name)!r}')
        non_negative = (
            'slot_latent_dim',
            'gradient_penalty_weight',
            'diversity_weight',
            'drift_weight',
            'head_force_weight',
            'energy_weight',
            'force_weight',
            'angular_order',
            'physics_pretrain_steps',
            'physics_warmup_steps',
            'physics_ramp_steps',
            'repulsion_weight',
            'volume_weight',
            'checkpoint_every_steps',
            'checkpoint_every_minutes',
            'seed',
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f'config `{name}` must be non-negative, got {getattr(self, name)!r}')
        if self.angular_order > 0 and self.angular_cutoff > self.cutoff:
            raise ValueError(
                f'config `angular_cutoff` ({self.angular_cutoff}) must not exceed `cutoff` ({self.cutoff})'
            )
        for name in ('adam_beta1', 'adam_beta2', 'ema_decay', 'validation_fraction', 'contact_quantile'):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f'config `{name}` must be in [0, 1), got {getattr(self, name)!r}')

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GanConfig:
        """Build a config from a dict; unknown keys are an error so that typos do not pass silently."""
        if not isinstance(values, dict):
            raise ValueError(f'config must be a JSON object / dict, got {type(values).__name__}')
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown config key(s): {", ".join(unknown)}; valid keys: {", ".join(sorted(known))}')
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> GanConfig:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exception:
            raise ValueError(f'config file `{path}` is not valid JSON: {exception}') from exception
        return cls.from_dict(values)

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}
