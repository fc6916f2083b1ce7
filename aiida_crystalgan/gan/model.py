"""The networks of one GAN, built in one place from a config, and rebuilt from a checkpoint by the checkpoint alone.

As CHGNet's ``model.py`` (``as_dict`` / ``from_dict`` / ``load``): the configuration travels with the weights, so
training, resumption and generation all build the networks the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .config import ARCHITECTURE_FIELDS, GanConfig
from .critic import Critic
from .data import Normalisation
from .features import InvariantFeatures, PairList
from .generator import Generator
from .physics import PhysicsHead
from .representation import CrystalBatch


class CrystalGan(nn.Module):
    """The invariant featurizer, the generator and its EMA copy, the critic and the physics head of one model.

    The architecture comes from ``config`` (its :data:`~.config.ARCHITECTURE_FIELDS`); the element vocabulary and the
    dataset statistics (the generator's volume scale) from ``normalisation``. Both are stored with the weights by
    :meth:`as_dict`. Networks are built in a fixed order, so a given torch seed gives given initial weights.
    """

    #: The networks whose weights a checkpoint holds (the featurizer has none).
    NETWORKS = ('generator', 'generator_ema', 'critic', 'physics')

    def __init__(self, config: GanConfig, normalisation: Normalisation) -> None:
        super().__init__()
        self.config = config
        self.normalisation = normalisation
        num_species = len(normalisation.elements)
        condition_dim = num_species + 1
        self.featurizer = InvariantFeatures(
            num_species, config.cutoff, config.num_rbf, config.max_images, config.angular_order, config.angular_cutoff
        )
        num_features = self.featurizer.num_features
        self.generator = Generator(
            config.latent_dim,
            condition_dim,
            config.n_max,
            config.generator_width,
            config.generator_depth,
            volume_log_mean=normalisation.volume_log_mean,
            volume_log_std=normalisation.volume_log_std,
            slot_latent_dim=config.slot_latent_dim,
        )
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.critic = Critic(num_features, condition_dim, config.critic_width, config.critic_depth)
        self.physics = PhysicsHead(num_features, config.physics_width, config.physics_depth)

    @property
    def elements(self) -> list[str]:
        """Element symbols of the vocabulary, in species-index order."""
        return list(self.normalisation.elements)

    def features(self, batch: CrystalBatch) -> tuple[torch.Tensor, PairList]:
        """Invariant per-atom features (B, N, F) of ``batch`` and its periodic pair list."""
        return self.featurizer(batch.cell, batch.frac, batch.species, batch.mask)

    def as_dict(self) -> dict[str, Any]:
        """Config, vocabulary, normalisation and weights: plain data that ``torch.load(weights_only=True)`` reads."""
        return {
            'config': self.config.to_dict(),
            'elements': self.elements,
            'normalisation': self.normalisation.to_dict(),
            'models': {name: getattr(self, name).state_dict() for name in self.NETWORKS},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], config: GanConfig | None = None) -> CrystalGan:
        """Rebuild the networks of :meth:`as_dict` (or of a whole checkpoint), on the CPU.

        ``config`` replaces the saved one (a resumed run may change its schedule) but must keep the architecture:
        ``ValueError`` otherwise.
        """
        saved = GanConfig.from_dict(dict(state['config']))
        if config is None:
            config = saved
        changed = [name for name in ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise ValueError(f'config changes the architecture of the checkpoint: {", ".join(changed)}')
        model = cls(config, Normalisation.from_dict(dict(state['normalisation'])))
        for name in cls.NETWORKS:
            getattr(model, name).load_state_dict(state['models'][name])
        return model

    @classmethod
    def load(cls, path: str | Path) -> CrystalGan:
        """The networks of the checkpoint file ``path``; ``ValueError`` when it is not a crystalgan checkpoint."""
        return cls.from_dict(load_checkpoint(path))

    def architecture(self) -> dict[str, Any]:
        """Human-readable description of the networks for the model node's attributes."""
        config = self.config
        counts = {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in self.NETWORKS}
        return {
            'representation': f'lower-triangular lattice + fractional coordinates, {config.n_max} masked slots',
            'features': f'{self.featurizer.num_features} per atom: {config.num_rbf} Gaussian RBFs per species '
            f'pair, cosine cutoff {config.cutoff} A'
            + (
                f'; bond-angle moments cos^1..{config.angular_order} per species triple within '
                f'{config.angular_cutoff} A'
                if config.angular_order
                else ''
            ),
            'generator': 'residual MLP with LayerNorm (z, composition, atom count) -> lattice; per-slot noise and '
            'random start positions, masked self-attention across slots -> coordinates',
            'critic': 'DeepSets residual MLP with LayerNorm on invariant features, conditional, WGAN-GP',
            'physics_head': 'sum of atomic energies from invariant features; forces by autograd',
            'parameters': counts,
            **config.architecture(),
        }
