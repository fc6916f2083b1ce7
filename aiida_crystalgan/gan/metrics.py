"""What a finished run reports in ``metrics.json``: physics-head errors, validity of generated structures, run facts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .data import TrainingSet
from .physics import energy_and_forces
from .representation import CrystalBatch
from .trainer import Trainer


@torch.no_grad()
def generated_validity(trainer: Trainer, data: TrainingSet, pool: torch.Tensor, samples: int = 256) -> float:
    """Fraction of EMA-generated structures (training compositions) whose shortest distance is >= 0.5 Å."""
    model, device = trainer.model, trainer.device
    local = torch.Generator().manual_seed(trainer.config.seed + 1)
    index = pool[torch.randint(len(pool), (samples,), generator=local)]
    real = data.select(index, device)
    z = model.generator_ema.sample_noise(samples, local).to(device)
    cell, frac = model.generator_ema(z, real.condition, real.batch.num_atoms)
    pairs = model.featurizer(cell.float(), frac.float(), real.batch.species, real.batch.mask)[1]
    shortest = torch.full((samples,), math.inf, device=device).scatter_reduce(
        0, pairs.batch, pairs.distance, reduce='amin'
    )
    return float((shortest >= 0.5).float().mean())


def physics_errors(trainer: Trainer, data: TrainingSet, index: torch.Tensor) -> dict[str, float | None]:
    """Mean absolute errors of the physics head on rows ``index``: energy (eV/atom) and forces (eV/Å)."""
    if len(index) == 0:
        return {'energy_mae_ev_per_atom': None, 'force_mae_ev_per_angstrom': None}
    model, normalisation = trainer.model, trainer.normalisation
    energy_error, force_error, force_count = 0.0, 0.0, 0.0
    for start in range(0, len(index), 256):
        real = data.select(index[start : start + 256], trainer.device)
        batch = CrystalBatch(real.batch.cell, real.batch.frac.requires_grad_(True), real.batch.species, real.batch.mask)
        features, _ = model.features(batch)
        energy, forces = energy_and_forces(model.physics, features, batch, create_graph=False)
        energy_error += float((energy.detach() - real.energy).abs().sum())
        atoms = (real.batch.mask & real.has_forces[:, None]).float()
        error = (trainer.force_units * forces - real.forces).abs().sum(dim=-1)
        force_error += float((error * atoms).sum())
        force_count += 3 * float(atoms.sum())
    return {
        'energy_mae_ev_per_atom': energy_error / len(index) * normalisation.energy_scale,
        'force_mae_ev_per_angstrom': force_error / force_count * normalisation.force_scale if force_count else None,
    }


def run_metrics(
    trainer: Trainer,
    data: TrainingSet,
    pool: torch.Tensor,
    energy_pool: torch.Tensor,
    validation: torch.Tensor,
    step_seconds: list[float],
    num_structures: int,
) -> dict[str, Any]:
    """The metrics of a finished run; physics-head errors on the validation structures with energies, when any,
    else on the training ones. ``pool`` (training minima), ``energy_pool`` (training structures with energies) and
    ``validation`` are row indices of ``data``.
    """
    validation_energy = validation[torch.isfinite(data.energy[validation])]
    errors_on = 'validation' if len(validation_energy) else 'training'
    errors = physics_errors(trainer, data, validation_energy if len(validation_energy) else energy_pool)
    return {
        'steps': trainer.step,
        'seconds_per_step': float(np.mean(step_seconds)) if step_seconds else None,
        'device': str(trainer.device),
        'mixed_precision': trainer.amp,
        'num_structures': num_structures,
        'num_used': len(data),
        'num_skipped': num_structures - len(data),
        'num_minima': int(data.minimum.sum()),
        'num_labelled': int(torch.isfinite(data.energy).sum()),
        'num_training_minima': len(pool),
        'num_training_labelled': len(energy_pool),
        'num_validation': len(validation),
        'physics_errors_on': errors_on,
        f'physics_{errors_on}_mae_ev_per_atom': errors['energy_mae_ev_per_atom'],
        f'physics_{errors_on}_force_mae_ev_per_angstrom': errors['force_mae_ev_per_angstrom'],
        'generated_validity_fraction': generated_validity(trainer, data, pool),
        'final_losses': {name: _finite_or_none(values[-1]) for name, values in trainer.history.items() if values},
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
