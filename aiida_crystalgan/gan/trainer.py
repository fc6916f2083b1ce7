"""The trainer: optimisers, random stream, step counter and loss history of one run around a :class:`CrystalGan`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import FORMAT, FORMAT_VERSION
from .config import GanConfig
from .data import Normalisation, TrainingSet
from .losses import (
    diversity_penalty,
    energy_excess,
    energy_force_error,
    force_penalty,
    gradient_penalty,
    repulsion_penalty,
    volume_penalty,
)
from .model import CrystalGan
from .physics import energy_and_forces
from .representation import CrystalBatch

#: Columns of ``losses.csv`` (and keys of the loss history), in order. ``generated_energy`` (eV/atom above the lowest
#: labelled energy of the composition) and ``generated_force`` (mean |F|, eV/Å) are the physics head's predictions for
#: the generated batch, logged whenever there are energies, whether or not guidance is on.
LOSS_COLUMNS = (
    'step',
    'critic_loss',
    'generator_loss',
    'gradient_penalty',
    'wasserstein_distance',
    'physics_loss',
    'generated_energy',
    'generated_force',
    'repulsion',
    'volume_penalty',
    'diversity',
    'seconds_per_step',
)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: training stopped without saving the diverged weights.

    ``step`` is the step whose losses were not finite, ``losses`` maps their names to their values, and
    ``checkpoint_path`` is the last good checkpoint to resume from (with a smaller learning rate, say), or ``None``
    when the run diverged before writing one and did not start from one.
    """

    def __init__(self, step: int, losses: Mapping[str, float], checkpoint_path: str | Path | None = None) -> None:
        self.step = step
        self.losses = dict(losses)
        self.checkpoint_path = checkpoint_path
        values = ', '.join(f'{name}={value}' for name, value in self.losses.items())
        last_good = f'last good checkpoint: {checkpoint_path}' if checkpoint_path else 'no checkpoint to resume from'
        super().__init__(f'training diverged at step {step} ({values}); {last_good}')


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Disable parameter gradients of ``modules`` inside the block (inputs still get gradients)."""
    for module in modules:
        module.requires_grad_(False)
    try:
        yield
    finally:
        for module in modules:
            module.requires_grad_(True)


class Trainer:
    """Optimises a :class:`CrystalGan`; :meth:`state` is a full checkpoint and :meth:`from_state` resumes it exactly."""

    def __init__(self, model: CrystalGan, device: torch.device) -> None:
        config = model.config
        self.config = config
        self.model = model.to(device)
        self.normalisation = model.normalisation
        self.device = device
        self.amp = config.mixed_precision and device.type == 'cuda'
        betas = (config.adam_beta1, config.adam_beta2)
        self.optimisers = {
            'generator': torch.optim.Adam(model.generator.parameters(), lr=config.generator_lr, betas=betas),
            'critic': torch.optim.Adam(model.critic.parameters(), lr=config.critic_lr, betas=betas),
            'physics': torch.optim.Adam(model.physics.parameters(), lr=config.physics_lr),
        }
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: dict[str, list[float]] = {name: [] for name in LOSS_COLUMNS}
        self.metrics: dict[str, Any] = {}
        self.force_units = model.normalisation.energy_scale / model.normalisation.force_scale
        distances = torch.tensor(model.normalisation.min_pair_distance, dtype=torch.float32)
        self.min_distance = (config.min_distance_scale * distances).to(device)

    @classmethod
    def from_config(cls, config: GanConfig, normalisation: Normalisation, device: torch.device) -> Trainer:
        """A fresh run: networks initialised from ``config.seed``."""
        torch.manual_seed(config.seed)
        return cls(CrystalGan(config, normalisation), device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(device_type='cuda', dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sample(self, data: TrainingSet, pool: torch.Tensor, paired: bool = False) -> TrainingSet:
        """A random batch (with replacement) of rows of ``data`` drawn from the indices ``pool``; with ``paired`` the
        second half of the batch repeats the first (rows ``i`` and ``i + batch_size // 2``), for the diversity term.
        """
        draw = torch.randint(len(pool), (self.config.batch_size,), generator=self.rng)
        if paired:
            half = len(draw) // 2
            draw[half : 2 * half] = draw[:half]
        return data.select(pool[draw], self.device)

    def fake(self, real: TrainingSet) -> tuple[CrystalBatch, torch.Tensor]:
        """Generated structures with the compositions and atom counts of ``real``, and the noise (B, noise_dim)."""
        generator = self.model.generator
        z = generator.sample_noise(len(real), self.rng).to(self.device)
        cell, frac = generator(z, real.condition, real.batch.num_atoms)
        return CrystalBatch(cell, frac, real.batch.species, real.batch.mask), z

    def critic_step(self, data: TrainingSet, pool: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        real = self.sample(data, pool)
        with torch.no_grad(), self.autocast():
            fake, _ = self.fake(real)
        fake = CrystalBatch(fake.cell.float(), fake.frac.float(), fake.species, fake.mask)
        mix = torch.rand(len(real), 1, 1, generator=self.rng).to(self.device)
        cell = (mix * real.batch.cell + (1 - mix) * fake.cell).requires_grad_(True)
        frac = (mix * real.batch.frac + (1 - mix) * fake.frac).requires_grad_(True)
        with self.autocast():
            score_real = model.critic(real.features, real.batch.mask, real.condition)
            score_fake = model.critic(model.features(fake)[0], fake.mask, real.condition)
            features, _ = model.featurizer(cell, frac, fake.species, fake.mask)
            score_mix = model.critic(features, fake.mask, real.condition)
        penalty = gradient_penalty(score_mix, cell, frac)
        distance = score_real.float().mean() - score_fake.float().mean()
        drift = score_real.float().square().mean()
        loss = -distance + self.config.gradient_penalty_weight * penalty + self.config.drift_weight * drift
        self._update('critic', loss)
        return {'critic_loss': loss, 'gradient_penalty': penalty, 'wasserstein_distance': distance}

    def physics_loss(self, real: TrainingSet, create_graph: bool = True) -> torch.Tensor:
        """Mean squared error of normalised energies plus ``head_force_weight`` x that of normalised forces."""
        batch = CrystalBatch(
            real.batch.cell, real.batch.frac.detach().requires_grad_(True), real.batch.species, real.batch.mask
        )
        with self.autocast():
            features, _ = self.model.features(batch)
            energy, forces = energy_and_forces(self.model.physics, features, batch, create_graph=create_graph)
        with_forces = real.batch.mask & real.has_forces[:, None]
        return energy_force_error(
            energy,
            self.force_units * forces.float(),
            real.energy,
            real.forces,
            with_forces,
            self.config.head_force_weight,
        )

    def physics_step(self, data: TrainingSet, pool: torch.Tensor) -> torch.Tensor:
        loss = self.physics_loss(self.sample(data, pool))
        self._update('physics', loss)
        return loss

    def guidance(self) -> float:
        """Factor of the energy and force terms at this step: 0 during warm-up, then rising linearly to 1."""
        past = self.step - self.config.physics_warmup_steps
        if past < 0:
            return 0.0
        return min(1.0, (past + 1) / self.config.physics_ramp_steps) if self.config.physics_ramp_steps else 1.0

    def generator_step(self, data: TrainingSet, pool: torch.Tensor, physics_on: bool) -> dict[str, torch.Tensor]:
        """One generator update; with ``physics_on`` the physics head's energy and forces of the generated batch are
        logged and, weighted by :meth:`guidance`, added to the loss (the head is frozen: it learns only from data).
        """
        config, model = self.config, self.model
        paired = config.diversity_weight > 0 and config.batch_size >= 2
        real = self.sample(data, pool, paired)
        num_atoms = real.batch.num_atoms
        guidance = self.guidance() if physics_on else 0.0
        guided = guidance > 0 and (config.energy_weight > 0 or config.force_weight > 0)
        with frozen(model.critic, model.physics), self.autocast():
            fake, z = self.fake(real)
            features, pairs = model.features(fake)
            adversarial = -model.critic(features, fake.mask, real.condition).float().mean()
            repulsion = repulsion_penalty(pairs, fake.species, self.min_distance, num_atoms)
            volume = volume_penalty(
                fake.cell, num_atoms, self.normalisation.volume_log_mean, self.normalisation.volume_log_std
            )
            loss = adversarial + config.repulsion_weight * repulsion + config.volume_weight * volume
            diversity = torch.zeros((), device=self.device)
            if paired:
                diversity = diversity_penalty(features.float(), fake.mask, z, config.batch_size // 2)
                loss = loss + config.diversity_weight * diversity
            logged = {}
            if physics_on:
                if not guided:
                    detached = fake.frac.detach().requires_grad_(True)
                    fake = CrystalBatch(fake.cell.detach(), detached, fake.species, fake.mask)
                    features = model.features(fake)[0]
                energy, forces = energy_and_forces(model.physics, features, fake, create_graph=guided)
                forces = self.force_units * forces.float()
                if guided:
                    physics = config.energy_weight * energy_excess(
                        energy, real.energy_floor
                    ) + config.force_weight * force_penalty(forces, fake.mask)
                    loss = loss + guidance * physics
                scale = self.normalisation.energy_scale
                force_norm = (forces.detach().norm(dim=-1) * fake.mask).sum() / fake.mask.sum()
                logged = {
                    'generated_energy': (energy.detach().float() - real.energy_floor).mean() * scale,
                    'generated_force': force_norm * self.normalisation.force_scale,
                }
        self._update('generator', loss)
        self.update_ema()
        return {
            'generator_loss': loss,
            **logged,
            'repulsion': repulsion,
            'volume_penalty': volume,
            'diversity': diversity,
        }

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimiser = self.optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self.config.ema_decay
        for average, current in zip(self.model.generator_ema.parameters(), self.model.generator.parameters()):
            average.lerp_(current, 1.0 - decay)

    def train_step(self, data: TrainingSet, pool: torch.Tensor, energy_pool: torch.Tensor) -> None:
        """One generator update after ``critic_steps`` critic updates and one physics-head update (at the first step,
        ``physics_pretrain_steps`` more, so that the head knows the data before it guides the generator).

        Raises :class:`TrainingDiverged` (step and history unchanged) when a loss is not finite.
        """
        started = time.perf_counter()
        losses: dict[str, torch.Tensor] = {}
        for _ in range(self.config.critic_steps):
            losses.update(self.critic_step(data, pool))
        has_energies = len(energy_pool) > 0
        if has_energies:
            if self.step == 0:
                for _ in range(self.config.physics_pretrain_steps):
                    self.physics_step(data, energy_pool)
            losses['physics_loss'] = self.physics_step(data, energy_pool)
        losses.update(self.generator_step(data, pool, has_energies))
        self.check_finite(losses)
        for name in ('physics_loss', 'generated_energy', 'generated_force'):
            losses.setdefault(name, torch.tensor(math.nan))
        self.step += 1
        if self.step % self.config.log_every == 0 or self.step == self.config.steps:
            self.history['step'].append(self.step)
            for name, value in losses.items():
                self.history[name].append(float(value.detach()))
            self.history['seconds_per_step'].append(time.perf_counter() - started)

    def check_finite(self, losses: Mapping[str, torch.Tensor]) -> None:
        """``TrainingDiverged`` naming the losses of this step that are NaN or infinite, if any."""
        values = torch.stack([value.detach().float().to(self.device) for value in losses.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = {name: float(value) for name, value in zip(losses, values.cpu()) if not math.isfinite(value)}
        raise TrainingDiverged(self.step + 1, bad)

    def state(self) -> dict[str, Any]:
        """A checkpoint: plain dict of tensors and Python primitives (loads with ``weights_only=True``)."""
        return {
            'format': FORMAT,
            'format_version': FORMAT_VERSION,
            'step': self.step,
            **self.model.as_dict(),
            'optimisers': {name: optimiser.state_dict() for name, optimiser in self.optimisers.items()},
            'rng': {
                'trainer': self.rng.get_state(),
                'torch': torch.get_rng_state(),
                'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            'history': {name: list(values) for name, values in self.history.items()},
            'metrics': dict(self.metrics),
            'architecture': self.model.architecture(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: GanConfig, device: torch.device) -> Trainer:
        """Rebuild a trainer from a checkpoint; ``config`` may change the schedule but not the architecture."""
        trainer = cls(CrystalGan.from_dict(state, config), device)
        for name, optimiser in trainer.optimisers.items():
            optimiser.load_state_dict(state['optimisers'][name])
        for group in trainer.optimisers['generator'].param_groups:
            group['lr'] = config.generator_lr
        for group in trainer.optimisers['critic'].param_groups:
            group['lr'] = config.critic_lr
        for group in trainer.optimisers['physics'].param_groups:
            group['lr'] = config.physics_lr
        trainer.step = int(state['step'])
        trainer.history = {name: list(state['history'].get(name, [])) for name in LOSS_COLUMNS}
        trainer.metrics = dict(state.get('metrics', {}))
        rng = state['rng']
        trainer.rng.set_state(rng['trainer'])
        torch.set_rng_state(rng['torch'])
        if rng['cuda'] and torch.cuda.is_available() and len(rng['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng['cuda'])
        return trainer
