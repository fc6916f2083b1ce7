"""Training: WGAN-GP on invariant features, a physics head on DFT energies/forces, priors, EMA and resumable state."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aiida_crystalgan.io import StructureRecord

from .checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from .config import ARCHITECTURE_FIELDS, GanConfig
from .critic import Critic, masked_mean
from .data import Normalisation, TrainingSet, build_training_set, element_vocabulary, fit_normalisation
from .features import InvariantFeatures, PairList
from .generator import Generator
from .physics import PhysicsHead, energy_and_forces
from .representation import CrystalBatch, species_indices

#: Columns of ``losses.csv`` (and keys of the loss history), in order.
LOSS_COLUMNS = (
    'step', 'critic_loss', 'generator_loss', 'gradient_penalty', 'wasserstein_distance', 'physics_loss',
    'generated_energy', 'generated_force', 'repulsion', 'volume_penalty', 'diversity', 'seconds_per_step',
)


def resolve_device(device: str | torch.device = 'auto') -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; ``ValueError`` when CUDA is asked for but absent."""
    if str(device) == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    resolved = torch.device(device)
    if resolved.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device `cuda` requested but CUDA is not available on this machine')
    if resolved.type not in ('cpu', 'cuda'):
        raise ValueError(f'unsupported device `{device}`: use auto, cpu or cuda')
    return resolved


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


def repulsion_penalty(pairs: PairList, species: torch.Tensor, threshold: torch.Tensor,
                      num_atoms: torch.Tensor) -> torch.Tensor:
    """Mean over structures of ``sum relu(threshold[s_i, s_j] - d_ij)^2 / n_atoms`` (Å^2). ``threshold`` (K, K)."""
    limit = threshold[species[pairs.batch, pairs.first], species[pairs.batch, pairs.second]]
    overlap = torch.relu(limit - pairs.distance).square()
    per_structure = overlap.new_zeros(len(num_atoms)).index_add(0, pairs.batch, overlap)
    return (per_structure / num_atoms.to(overlap.dtype)).mean()


def volume_penalty(cell: torch.Tensor, num_atoms: torch.Tensor, log_mean: float, log_std: float) -> torch.Tensor:
    """Squared excess of ``|log(V/atom) - mean| / std`` beyond one standard deviation, averaged. ``cell`` (B, 3, 3)."""
    log_volume = torch.log(torch.linalg.det(cell).abs() / num_atoms.to(cell.dtype))
    return torch.relu((log_volume - log_mean).abs() / log_std - 1.0).square().mean()


def diversity_penalty(features: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, half: int) -> torch.Tensor:
    """Mode-seeking term (MSGAN): ``1 / (0.1 + d_x / d_z)`` averaged over the pairs ``(i, i + half)``.

    Structures ``i`` and ``i + half`` share their composition; ``d_x`` is the relative L1 distance of their mean
    invariant per-atom features (``features`` (B, N, F), ``mask`` (B, N)), ``d_z`` the mean absolute difference of
    their noise (B, D). Small when different noise gives different structures, so collapse is penalised.
    """
    pooled = masked_mean(features, mask)
    first, second = pooled[:half], pooled[half:2 * half]
    scale = 0.5 * (first.abs() + second.abs()).sum(dim=-1) + 1e-6
    distance = (first - second).abs().sum(dim=-1) / scale
    noise_distance = (noise[:half] - noise[half:2 * half]).abs().mean(dim=-1).to(distance.dtype)
    return (1.0 / (0.1 + distance / noise_distance)).mean()


@dataclass
class TrainResult:
    """Outcome of :func:`train`: ``completed`` is false when the wall-clock limit stopped it first."""

    completed: bool
    checkpoint_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """The networks, optimisers, random stream and history of one run; :meth:`state` is a full checkpoint."""

    def __init__(self, config: GanConfig, normalisation: Normalisation, device: torch.device) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.normalisation = normalisation
        self.device = device
        self.amp = config.mixed_precision and device.type == 'cuda'
        num_species = len(normalisation.elements)
        condition_dim = num_species + 1
        self.featurizer = InvariantFeatures(num_species, config.cutoff, config.num_rbf, config.max_images).to(device)
        features = self.featurizer.num_features
        self.generator = Generator(
            config.latent_dim, condition_dim, config.n_max, config.generator_width, config.generator_depth,
            volume_log_mean=normalisation.volume_log_mean, volume_log_std=normalisation.volume_log_std,
            slot_latent_dim=config.slot_latent_dim,
        ).to(device)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.critic = Critic(features, condition_dim, config.critic_width, config.critic_depth).to(device)
        self.physics = PhysicsHead(features, config.physics_width, config.physics_depth).to(device)
        betas = (config.adam_beta1, config.adam_beta2)
        self.optimisers = {
            'generator': torch.optim.Adam(self.generator.parameters(), lr=config.generator_lr, betas=betas),
            'critic': torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, betas=betas),
            'physics': torch.optim.Adam(self.physics.parameters(), lr=config.physics_lr),
        }
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: dict[str, list[float]] = {name: [] for name in LOSS_COLUMNS}
        self.metrics: dict[str, Any] = {}
        self.force_units = normalisation.energy_scale / normalisation.force_scale
        distances = torch.tensor(normalisation.min_pair_distance, dtype=torch.float32)
        self.min_distance = (config.min_distance_scale * distances).to(device)

    def models(self) -> dict[str, nn.Module]:
        return {'generator': self.generator, 'generator_ema': self.generator_ema, 'critic': self.critic,
                'physics': self.physics}

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
            draw[half:2 * half] = draw[:half]
        return data.select(pool[draw], self.device)

    def fake(self, real: TrainingSet) -> tuple[CrystalBatch, torch.Tensor]:
        """Generated structures with the compositions and atom counts of ``real``, and the noise (B, noise_dim)."""
        z = self.generator.sample_noise(len(real), self.rng).to(self.device)
        cell, frac = self.generator(z, real.condition, real.batch.num_atoms)
        return CrystalBatch(cell, frac, real.batch.species, real.batch.mask), z

    def critic_step(self, data: TrainingSet, pool: torch.Tensor) -> dict[str, torch.Tensor]:
        real = self.sample(data, pool)
        with torch.no_grad(), self.autocast():
            fake, _ = self.fake(real)
        fake = CrystalBatch(fake.cell.float(), fake.frac.float(), fake.species, fake.mask)
        mix = torch.rand(len(real), 1, 1, generator=self.rng).to(self.device)
        cell = (mix * real.batch.cell + (1 - mix) * fake.cell).requires_grad_(True)
        frac = (mix * real.batch.frac + (1 - mix) * fake.frac).requires_grad_(True)
        with self.autocast():
            score_real = self.critic(real.features, real.batch.mask, real.condition)
            score_fake = self.critic(self.featurizer(*_fields(fake))[0], fake.mask, real.condition)
            features, _ = self.featurizer(cell, frac, fake.species, fake.mask)
            score_mix = self.critic(features, fake.mask, real.condition)
        grad_cell, grad_frac = torch.autograd.grad(score_mix.float().sum(), (cell, frac), create_graph=True)
        norm = torch.sqrt(grad_cell.square().sum(dim=(1, 2)) + grad_frac.square().sum(dim=(1, 2)) + 1e-12)
        penalty = (norm - 1.0).square().mean()
        distance = score_real.float().mean() - score_fake.float().mean()
        drift = score_real.float().square().mean()
        loss = -distance + self.config.gradient_penalty_weight * penalty + self.config.drift_weight * drift
        self._update('critic', loss)
        return {'critic_loss': loss, 'gradient_penalty': penalty, 'wasserstein_distance': distance}

    def physics_loss(self, real: TrainingSet, create_graph: bool = True) -> torch.Tensor:
        """Mean squared error of normalised energies plus ``head_force_weight`` x that of normalised forces."""
        batch = CrystalBatch(real.batch.cell, real.batch.frac.detach().requires_grad_(True), real.batch.species,
                             real.batch.mask)
        with self.autocast():
            features, _ = self.featurizer(*_fields(batch))
            energy, forces = energy_and_forces(self.physics, features, batch, create_graph=create_graph)
        loss = (energy.float() - real.energy).square().mean()
        if real.has_forces.any() and self.config.head_force_weight > 0:
            atoms = (real.batch.mask & real.has_forces[:, None]).float()
            error = ((self.force_units * forces.float() - real.forces).square().sum(dim=-1) * atoms).sum()
            error = error / (3 * atoms.sum())
            loss = loss + self.config.head_force_weight * error
        return loss

    def physics_step(self, data: TrainingSet, pool: torch.Tensor) -> torch.Tensor:
        loss = self.physics_loss(self.sample(data, pool))
        self._update('physics', loss)
        return loss

    def generator_step(self, data: TrainingSet, pool: torch.Tensor, physics_on: bool) -> dict[str, torch.Tensor]:
        config = self.config
        paired = config.diversity_weight > 0 and config.batch_size >= 2
        real = self.sample(data, pool, paired)
        num_atoms = real.batch.num_atoms
        with frozen(self.critic, self.physics), self.autocast():
            fake, z = self.fake(real)
            features, pairs = self.featurizer(*_fields(fake))
            adversarial = -self.critic(features, fake.mask, real.condition).float().mean()
            repulsion = repulsion_penalty(pairs, fake.species, self.min_distance, num_atoms)
            volume = volume_penalty(fake.cell, num_atoms, self.normalisation.volume_log_mean,
                                    self.normalisation.volume_log_std)
            loss = adversarial + config.repulsion_weight * repulsion + config.volume_weight * volume
            diversity = torch.zeros((), device=self.device)
            if paired:
                diversity = diversity_penalty(features.float(), fake.mask, z, config.batch_size // 2)
                loss = loss + config.diversity_weight * diversity
            energy = force = torch.zeros((), device=self.device)
            if physics_on:
                energy, forces = energy_and_forces(self.physics, features, fake, create_graph=True)
                energy = energy.float().mean()
                force = ((self.force_units * forces.float()).square().sum(dim=-1) * fake.mask).sum() / fake.mask.sum()
                loss = loss + config.energy_weight * energy + config.force_weight * force
        self._update('generator', loss)
        self.update_ema()
        return {'generator_loss': loss, 'generated_energy': energy, 'generated_force': force,
                'repulsion': repulsion, 'volume_penalty': volume, 'diversity': diversity}

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimiser = self.optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self.config.ema_decay
        for average, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(current, 1.0 - decay)

    def train_step(self, data: TrainingSet, pool: torch.Tensor, energy_pool: torch.Tensor) -> None:
        """One generator update after ``critic_steps`` critic updates and one physics-head update."""
        started = time.perf_counter()
        losses: dict[str, torch.Tensor] = {}
        for _ in range(self.config.critic_steps):
            losses.update(self.critic_step(data, pool))
        has_energies = len(energy_pool) > 0
        losses['physics_loss'] = self.physics_step(data, energy_pool) if has_energies else torch.tensor(math.nan)
        physics_on = has_energies and self.step >= self.config.physics_warmup_steps
        losses.update(self.generator_step(data, pool, physics_on))
        self.step += 1
        if self.step % self.config.log_every == 0 or self.step == self.config.steps:
            self.history['step'].append(self.step)
            for name, value in losses.items():
                self.history[name].append(float(value.detach()))
            self.history['seconds_per_step'].append(time.perf_counter() - started)

    def state(self) -> dict[str, Any]:
        """A checkpoint: plain dict of tensors and Python primitives (loads with ``weights_only=True``)."""
        numpy_state = np.random.get_state()
        python_state = random.getstate()
        return {
            'format': FORMAT,
            'format_version': FORMAT_VERSION,
            'step': self.step,
            'config': self.config.to_dict(),
            'elements': list(self.normalisation.elements),
            'normalisation': self.normalisation.to_dict(),
            'models': {name: module.state_dict() for name, module in self.models().items()},
            'optimisers': {name: optimiser.state_dict() for name, optimiser in self.optimisers.items()},
            'rng': {
                'trainer': self.rng.get_state(),
                'torch': torch.get_rng_state(),
                'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                'numpy': {'key': torch.from_numpy(numpy_state[1].astype(np.int64)), 'pos': int(numpy_state[2]),
                          'has_gauss': int(numpy_state[3]), 'cached_gaussian': float(numpy_state[4])},
                'python': {'version': python_state[0], 'state': list(python_state[1]), 'gauss': python_state[2]},
            },
            'history': {name: list(values) for name, values in self.history.items()},
            'metrics': dict(self.metrics),
            'architecture': self.architecture(),
        }

    def architecture(self) -> dict[str, Any]:
        """Human-readable description of the networks for the model node's attributes."""
        counts = {name: sum(p.numel() for p in module.parameters()) for name, module in self.models().items()}
        return {
            'representation': f'lower-triangular lattice + fractional coordinates, {self.config.n_max} masked slots',
            'features': f'{self.featurizer.num_features} per atom: {self.config.num_rbf} Gaussian RBFs per species '
                        f'pair, cosine cutoff {self.config.cutoff} A',
            'generator': 'residual MLP with LayerNorm (z, composition, atom count) -> lattice; per-slot noise and '
                         'random start positions, masked self-attention across slots -> coordinates',
            'critic': 'DeepSets residual MLP with LayerNorm on invariant features, conditional, WGAN-GP',
            'physics_head': 'sum of atomic energies from invariant features; forces by autograd',
            'parameters': counts,
            **self.config.architecture(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: GanConfig, device: torch.device) -> Trainer:
        """Rebuild a trainer from a checkpoint; ``config`` may change the schedule but not the architecture."""
        saved = GanConfig.from_dict(state['config'])
        changed = [name for name in ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(config, name)]
        if changed:
            raise ValueError(f'config changes the architecture of the checkpoint: {", ".join(changed)}')
        trainer = cls(config, Normalisation.from_dict(state['normalisation']), device)
        for name, module in trainer.models().items():
            module.load_state_dict(state['models'][name])
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
        numpy_state = rng['numpy']
        np.random.set_state(('MT19937', numpy_state['key'].numpy().astype(np.uint32), numpy_state['pos'],
                             numpy_state['has_gauss'], numpy_state['cached_gaussian']))
        python_state = rng['python']
        random.setstate((python_state['version'], tuple(python_state['state']), python_state['gauss']))
        return trainer

    @torch.no_grad()
    def features_of(self, data: TrainingSet) -> torch.Tensor:
        """Invariant features (S, n_max, F) of every training structure, on the CPU."""
        chunks = []
        for start in range(0, len(data), 256):
            batch = data.select(torch.arange(start, min(start + 256, len(data))), self.device).batch
            chunks.append(self.featurizer(*_fields(batch))[0].cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def generated_validity(self, data: TrainingSet, pool: torch.Tensor, samples: int = 256) -> float:
        """Fraction of EMA-generated structures (training compositions) whose shortest distance is >= 0.5 Å."""
        local = torch.Generator().manual_seed(self.config.seed + 1)
        index = pool[torch.randint(len(pool), (samples,), generator=local)]
        real = data.select(index, self.device)
        z = self.generator_ema.sample_noise(samples, local).to(self.device)
        cell, frac = self.generator_ema(z, real.condition, real.batch.num_atoms)
        pairs = self.featurizer(cell.float(), frac.float(), real.batch.species, real.batch.mask)[1]
        shortest = torch.full((samples,), math.inf, device=self.device).scatter_reduce(
            0, pairs.batch, pairs.distance, reduce='amin')
        return float((shortest >= 0.5).float().mean())

    def physics_errors(self, data: TrainingSet, index: torch.Tensor) -> dict[str, float | None]:
        """Mean absolute errors of the physics head on rows ``index``: energy (eV/atom) and forces (eV/Å)."""
        if len(index) == 0:
            return {'energy_mae_ev_per_atom': None, 'force_mae_ev_per_angstrom': None}
        energy_error, force_error, force_count = 0.0, 0.0, 0.0
        for start in range(0, len(index), 256):
            real = data.select(index[start:start + 256], self.device)
            batch = CrystalBatch(real.batch.cell, real.batch.frac.requires_grad_(True), real.batch.species,
                                 real.batch.mask)
            features, _ = self.featurizer(*_fields(batch))
            energy, forces = energy_and_forces(self.physics, features, batch, create_graph=False)
            energy_error += float((energy.detach() - real.energy).abs().sum())
            atoms = (real.batch.mask & real.has_forces[:, None]).float()
            error = (self.force_units * forces - real.forces).abs().sum(dim=-1)
            force_error += float((error * atoms).sum())
            force_count += 3 * float(atoms.sum())
        return {
            'energy_mae_ev_per_atom': energy_error / len(index) * self.normalisation.energy_scale,
            'force_mae_ev_per_angstrom': force_error / force_count * self.normalisation.force_scale
            if force_count else None,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fields(batch: CrystalBatch) -> tuple[torch.Tensor, ...]:
    return batch.cell, batch.frac, batch.species, batch.mask


def split_indices(data: TrainingSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation row indices; a fixed seed keeps the split identical across resumes."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    num_validation = int(round(fraction * len(data)))
    if fraction > 0 and not 0 < num_validation < len(data):
        raise ValueError(f'validation_fraction={fraction} leaves no training or no validation structures '
                         f'out of {len(data)}')
    return order[num_validation:].sort().values, order[:num_validation].sort().values


def write_losses(path: Path, history: dict[str, list[float]]) -> None:
    with path.open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(LOSS_COLUMNS)
        writer.writerows(zip(*(history[name] for name in LOSS_COLUMNS)))


def usable_records(records: Sequence[StructureRecord], n_max: int) -> list[StructureRecord]:
    """Records that fit in ``n_max`` slots; ``ValueError`` when none do."""
    if not records:
        raise ValueError('the dataset is empty')
    usable = [record for record in records if 0 < record.num_atoms <= n_max]
    if not usable:
        raise ValueError(f'no structure of the dataset fits in n_max={n_max} atom slots')
    return usable


def train(records: Sequence[StructureRecord], config: GanConfig, output_dir: str | Path,
          resume: str | Path | None = None, max_wallclock_seconds: float | None = None,
          device: str | torch.device = 'auto', on_log: Callable[[Trainer], bool] | None = None) -> TrainResult:
    """Train (or continue training) a GAN on ``records`` and write ``model.pt``, ``losses.csv`` and ``metrics.json``.

    Structures with more than ``config.n_max`` atoms are skipped; ``losses.csv`` is rewritten at every logged step so
    that progress can be followed. When ``max_wallclock_seconds`` (counted from this call) would be exceeded before
    ``config.steps``, writes ``checkpoint.pt`` and returns ``completed=False``. ``on_log`` is called with the trainer
    at every logged step; when it returns true, training ends there (a pruned trial of a hyperparameter search).
    """
    started = time.monotonic()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    torch_device = resolve_device(device)
    usable = usable_records(records, config.n_max)
    if resume is not None:
        state = load_checkpoint(resume)
        trainer = Trainer.from_state(state, config, torch_device)
        for record in usable:
            species_indices(record.numbers, trainer.normalisation.elements)
    else:
        elements = element_vocabulary(usable)
        normalisation = fit_normalisation(usable, elements, config.min_distance, config.cutoff, config.max_images)
        trainer = Trainer(config, normalisation, torch_device)
    data = build_training_set(usable, trainer.normalisation.elements, config.n_max, trainer.normalisation)
    data.features = trainer.features_of(data)
    pool, validation = split_indices(data, config.validation_fraction, config.seed)
    energy_pool = pool[torch.isfinite(data.energy[pool])]
    step_seconds: list[float] = []
    while trainer.step < config.steps:
        if max_wallclock_seconds is not None and step_seconds:
            expected = 2.0 * max(step_seconds[-20:]) + 1.0
            if time.monotonic() - started + expected > max_wallclock_seconds:
                path = output / 'checkpoint.pt'
                save_checkpoint(path, trainer.state())
                write_losses(output / 'losses.csv', trainer.history)
                return TrainResult(completed=False, checkpoint_path=path)
        tick = time.perf_counter()
        trainer.train_step(data, pool, energy_pool)
        step_seconds.append(time.perf_counter() - tick)
        if trainer.history['step'] and trainer.history['step'][-1] == trainer.step:
            write_losses(output / 'losses.csv', trainer.history)
            if on_log is not None and on_log(trainer):
                break
    validation_energy = validation[torch.isfinite(data.energy[validation])]
    errors_on = 'validation' if len(validation_energy) else 'training'
    errors = trainer.physics_errors(data, validation_energy if len(validation_energy) else energy_pool)
    trainer.metrics = {
        'steps': trainer.step,
        'seconds_per_step': float(np.mean(step_seconds)) if step_seconds else None,
        'device': str(torch_device),
        'mixed_precision': trainer.amp,
        'num_structures': len(records),
        'num_used': len(usable),
        'num_skipped_too_large': len(records) - len(usable),
        'num_training': len(pool),
        'num_validation': len(validation),
        'physics_errors_on': errors_on,
        f'physics_{errors_on}_mae_ev_per_atom': errors['energy_mae_ev_per_atom'],
        f'physics_{errors_on}_force_mae_ev_per_angstrom': errors['force_mae_ev_per_angstrom'],
        'generated_validity_fraction': trainer.generated_validity(data, pool),
        'final_losses': {name: _finite_or_none(values[-1]) for name, values in trainer.history.items() if values},
    }
    path = output / 'model.pt'
    save_checkpoint(path, trainer.state())
    write_losses(output / 'losses.csv', trainer.history)
    (output / 'metrics.json').write_text(json.dumps(trainer.metrics, indent=2))
    return TrainResult(completed=True, checkpoint_path=path, metrics=trainer.metrics)
