"""Held-out evaluation of a training run: the objective of the hyperparameter search (no AiiDA import).

A run given held-out structures measures, at every logged step and at the end:

* ``energy_mae_ev_per_atom`` / ``force_mae_ev_per_angstrom``: the physics head's errors on held-out structures
  with energies (forces where present);
* ``generated_energy_gap_ev_per_atom``: for every held-out ``minimum``, ``samples_per_minimum`` structures are
  generated with its composition and atom count; the gap is the physics head's mean energy per atom of those
  samples minus its energy per atom of the held-out minimum (both from the same head, so its bias cancels), averaged
  over minima; close to or below zero when the generator reaches minima as low as the real ones;
* ``coverage_recall`` (final evaluation only: the CrystalNN fingerprint costs ~0.1 s per structure): CDVAE's COV-R
  of the generated samples against the held-out minima, with the project's fingerprints
  (:func:`aiida_crystalgan.analysis.metrics.coverage`).

``objective`` is their weighted sum, with the gap counted only above zero (lower is better; terms without data are
left out, which is the same for every trial of a search since the folds are fixed); the intermediate values written
during training leave out the coverage term. ``objectives`` splits it into a physics and a generative part, for
multi-objective searches.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aiida_crystalgan.io import MINIMUM, StructureRecord

from . import metrics
from .checkpoint import write_text_atomically
from .data import build_training_set, composition_counts, conditions, slot_species
from .generation import separate_atoms
from .representation import CrystalBatch, batch_to_records

if TYPE_CHECKING:
    from .config import GanConfig
    from .training import Trainer, TrainResult

#: Default weights of the terms of the objective; units make ``1`` a "noticeable" difference for each term.
DEFAULT_WEIGHTS = {
    'energy_mae_ev_per_atom': 10.0,
    'force_mae_ev_per_angstrom': 1.0,
    'generated_energy_gap_ev_per_atom': 1.0,
    'coverage_miss': 1.0,
}
PHYSICS_TERMS = ('energy_mae_ev_per_atom', 'force_mae_ev_per_angstrom')
GENERATIVE_TERMS = ('generated_energy_gap_ev_per_atom', 'coverage_miss')
CURVE_COLUMNS = (
    'step',
    'energy_mae_ev_per_atom',
    'force_mae_ev_per_angstrom',
    'generated_energy_gap_ev_per_atom',
    'objective',
)


@dataclass
class ValidationPlan:
    """What ``crystalgan-train --validation`` reads: which records to train on, which to hold out, how to score.

    ``pruning``: ``{'steps': [...], 'thresholds': [...], 'warmup_steps': n}``: training stops at a logged step
    ``s >= warmup_steps`` of ``steps`` whose intermediate objective is above the threshold of ``s``.
    """

    train: list[int]
    validation: list[int]
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    samples_per_minimum: int = 4
    coverage: bool = True
    seed: int = 0
    pruning: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], size: int) -> ValidationPlan:
        """Check indices against the dataset ``size`` and the weights against the known terms."""
        known = {'train', 'validation', 'weights', 'samples_per_minimum', 'coverage', 'seed', 'pruning'}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown validation key(s): {", ".join(unknown)}')
        plan = cls(**values)
        for name in ('train', 'validation'):
            indices = getattr(plan, name)
            if not indices or any(not isinstance(i, int) or not 0 <= i < size for i in indices):
                raise ValueError(f'validation `{name}` must be a non-empty list of indices below {size}')
        if set(plan.train) & set(plan.validation):
            raise ValueError('validation `train` and `validation` indices overlap')
        unknown = sorted(set(plan.weights) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f'unknown objective weight(s): {", ".join(unknown)}; valid: {", ".join(DEFAULT_WEIGHTS)}')
        plan.weights = {**DEFAULT_WEIGHTS, **plan.weights}
        return plan

    def threshold(self, step: int) -> float | None:
        """The pruning threshold at ``step``, ``None`` when this step is not checked."""
        if not self.pruning or step < self.pruning.get('warmup_steps', 0):
            return None
        thresholds = dict(zip(self.pruning['steps'], self.pruning['thresholds']))
        return thresholds.get(step)


def weighted_objective(
    values: Mapping[str, float | None], weights: Mapping[str, float], terms: Sequence[str] = tuple(DEFAULT_WEIGHTS)
) -> float | None:
    """Weighted sum of the known ``terms`` of ``values``; ``None`` when none is known.

    The energy gap counts only above zero: samples that the head puts below the held-out minima are not rewarded, so
    that a generator cannot gain by exploiting the head's errors.
    """
    known = [
        weights[name] * (max(values[name], 0.0) if name == 'generated_energy_gap_ev_per_atom' else values[name])
        for name in terms
        if values.get(name) is not None
    ]
    return float(sum(known)) if known else None


class HeldOutEvaluator:
    """Scores a live :class:`~aiida_crystalgan.gan.training.Trainer` on held-out records (see the module docstring).

    Records with elements the model was not trained on, or more atoms than ``n_max``, are left out and counted.
    """

    def __init__(self, records: Sequence[StructureRecord], plan: ValidationPlan, curve_path: Path | None = None):
        self.records = list(records)
        self.plan = plan
        self.curve_path = curve_path
        self.curve: dict[str, list[float | None]] = {name: [] for name in CURVE_COLUMNS}
        self.pruned_at: int | None = None

    def __call__(self, trainer: Trainer) -> bool:
        """Record the intermediate values of the current step; ``True`` when the run should be pruned."""
        values = self.evaluate(trainer, coverage=False)
        self.curve['step'].append(trainer.step)
        for name in CURVE_COLUMNS[1:]:
            self.curve[name].append(values.get(name))
        if self.curve_path is not None:
            with self.curve_path.open('w', newline='') as handle:
                writer = csv.writer(handle)
                writer.writerow(CURVE_COLUMNS)
                writer.writerows(zip(*(self.curve[name] for name in CURVE_COLUMNS)))
        threshold = self.plan.threshold(trainer.step)
        objective = values['objective']
        if threshold is not None and objective is not None and objective > threshold:
            self.pruned_at = trainer.step
            return True
        return False

    def evaluate(self, trainer: Trainer, coverage: bool) -> dict[str, Any]:
        """The held-out values and the weighted ``objective`` (and ``objectives``: physics, generative)."""
        elements = trainer.normalisation.elements
        records = [record for record in self.records if _fits(record, set(elements), trainer.config.n_max)]
        values: dict[str, Any] = {'num_held_out': len(self.records), 'num_evaluated': len(records)}
        labelled = [record for record in records if record.energy is not None]
        values.update(physics_errors(trainer, labelled))
        minima = [record for record in records if record.role == MINIMUM]
        values['num_minima'] = len(minima)
        values['generated_energy_gap_ev_per_atom'] = None
        values['coverage_recall'] = None
        values['coverage_miss'] = None
        if minima:
            generated, gap = generate_for_minima(trainer, minima, self.plan.samples_per_minimum, self.plan.seed)
            values['generated_energy_gap_ev_per_atom'] = gap
            if coverage and self.plan.coverage:
                values['coverage_recall'] = coverage_recall(generated, minima)
                values['coverage_miss'] = 1.0 - values['coverage_recall']
        weights = self.plan.weights
        values['objective'] = weighted_objective(values, weights)
        values['objectives'] = [
            weighted_objective(values, weights, PHYSICS_TERMS),
            weighted_objective(values, weights, GENERATIVE_TERMS),
        ]
        return values

    def summary(self, trainer: Trainer) -> dict[str, Any]:
        """Final values (with coverage), the intermediate curve and where the run was pruned, for ``metrics.json``."""
        return {
            **self.evaluate(trainer, coverage=True),
            'pruned': self.pruned_at is not None,
            'pruned_at_step': self.pruned_at,
            'curve': self.curve,
        }


def _fits(record: StructureRecord, elements: set[str], n_max: int) -> bool:
    from ase.data import chemical_symbols

    return 0 < record.num_atoms <= n_max and {chemical_symbols[z] for z in record.numbers} <= elements


def physics_errors(trainer: Trainer, records: Sequence[StructureRecord]) -> dict[str, float | None]:
    """The physics head's energy (eV/atom) and force (eV/Å) mean absolute errors on ``records``."""
    if not records:
        return {'energy_mae_ev_per_atom': None, 'force_mae_ev_per_angstrom': None}
    config = trainer.config
    data = build_training_set(records, trainer.normalisation.elements, config.n_max, trainer.normalisation)
    return metrics.physics_errors(trainer, data, torch.arange(len(data)))


def generate_for_minima(
    trainer: Trainer, minima: Sequence[StructureRecord], samples: int, seed: int
) -> tuple[list[StructureRecord], float]:
    """``samples`` EMA-generator structures per minimum (its composition and atom count) and the energy gap (eV/atom):
    mean over minima of the physics head's energy per atom of the samples minus that of the minimum."""
    config, normalisation, device = trainer.config, trainer.normalisation, trainer.device
    elements = normalisation.elements
    counts = torch.from_numpy(composition_counts(minima, elements))
    repeated = counts.repeat_interleave(samples, dim=0)
    species, mask = slot_species(repeated, config.n_max)
    species, mask = species.to(device), mask.to(device)
    latent = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = trainer.model.generator_ema.sample_noise(len(repeated), latent).to(device)
        cell, frac = trainer.model.generator_ema(z, conditions(repeated, config.n_max).to(device), mask.sum(dim=1))
        cell, frac = cell.float(), frac.float()
        frac = separate_atoms(cell, frac, species, mask, trainer.min_distance.to(cell.dtype))
    generated = CrystalBatch(cell, frac, species, mask)
    generated_energy = _head_energy_per_atom(trainer, generated, repeated.numpy())
    reference = build_training_set(minima, elements, config.n_max, normalisation).batch.to(device)
    minimum_energy = _head_energy_per_atom(trainer, reference, counts.numpy())
    gap = generated_energy.reshape(len(minima), samples).mean(axis=1) - minimum_energy
    records = batch_to_records(generated, elements, wrap=True, source='generated')
    return records, float(np.mean(gap))


def _head_energy_per_atom(trainer: Trainer, batch: CrystalBatch, counts: np.ndarray) -> np.ndarray:
    """The physics head's energy per atom (eV/atom) of ``batch`` with compositions ``counts`` (B, K)."""
    with torch.no_grad():
        features, _ = trainer.model.featurizer(batch.cell, batch.frac, batch.species, batch.mask)
        normalised = trainer.model.physics(features, batch.mask).double().cpu().numpy()
    return trainer.normalisation.energy_per_atom(normalised, counts)


def coverage_recall(generated: Sequence[StructureRecord], minima: Sequence[StructureRecord]) -> float:
    """CDVAE's COV-R of ``generated`` against the held-out ``minima`` with the project's fingerprints."""
    from aiida_crystalgan.analysis.metrics import coverage

    structures = [record.to_pymatgen() for record in generated]
    value = coverage(structures, [record.to_pymatgen() for record in minima])['cov_recall']
    return float(value) if value is not None and math.isfinite(value) else 0.0


def held_out_evaluator(
    records: Sequence[StructureRecord], plan_path: Path, curve_path: Path
) -> tuple[list[StructureRecord], HeldOutEvaluator]:
    """The training records and the evaluator of the held-out ones, from the plan file ``plan_path`` (JSON)."""
    try:
        values = json.loads(Path(plan_path).read_text())
    except json.JSONDecodeError as exception:
        raise ValueError(f'validation file `{plan_path}` is not valid JSON: {exception}') from exception
    if not isinstance(values, dict):
        raise ValueError('the validation file must hold a JSON object')
    plan = ValidationPlan.from_dict(values, len(records))
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    evaluator = HeldOutEvaluator([records[i] for i in plan.validation], plan, curve_path)
    return [records[i] for i in plan.train], evaluator


def write_validation_summary(
    evaluator: HeldOutEvaluator, result: TrainResult, config: GanConfig, output_dir: Path, device: str
) -> None:
    """Evaluate the final model on the held-out records and add it to ``metrics.json`` as ``validation``."""
    from .checkpoint import load_checkpoint
    from .training import Trainer, resolve_device

    trainer = Trainer.from_state(load_checkpoint(result.checkpoint_path), config, resolve_device(device))
    result.metrics['validation'] = evaluator.summary(trainer)
    write_text_atomically(Path(output_dir) / 'metrics.json', json.dumps(result.metrics, indent=2))
