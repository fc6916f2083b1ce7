"""The training loop: data preparation, periodic and wall-clock checkpoints, and the run's output files."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aiida_crystalgan.io import StructureRecord

from .checkpoint import load_checkpoint, save_checkpoint, write_text_atomically
from .config import GanConfig
from .data import TrainingSet, build_training_set, element_vocabulary, fit_normalisation, training_records
from .device import resolve_device
from .metrics import run_metrics
from .representation import species_indices
from .trainer import LOSS_COLUMNS, Trainer, TrainingDiverged

MODEL_FILE = 'model.pt'
CHECKPOINT_FILE = 'checkpoint.pt'
LOSSES_FILE = 'losses.csv'
METRICS_FILE = 'metrics.json'


@dataclass
class TrainResult:
    """Outcome of :func:`train`: ``completed`` is false when the wall-clock limit stopped it first."""

    completed: bool
    checkpoint_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


class CheckpointClock:
    """Says when the next periodic checkpoint is due: every ``steps`` steps or ``minutes`` minutes (0: never)."""

    def __init__(self, steps: int, minutes: float, step: int) -> None:
        self.steps = steps
        self.seconds = 60.0 * minutes
        self.reset(step)

    def reset(self, step: int) -> None:
        self.last_step = step
        self.last_time = time.monotonic()

    def due(self, step: int) -> bool:
        by_steps = self.steps > 0 and step - self.last_step >= self.steps
        by_time = self.seconds > 0 and time.monotonic() - self.last_time >= self.seconds
        return by_steps or by_time


@torch.no_grad()
def featurize(trainer: Trainer, data: TrainingSet) -> torch.Tensor:
    """Invariant features (S, n_max, F) of every training structure, on the CPU."""
    chunks = []
    for start in range(0, len(data), 256):
        batch = data.select(torch.arange(start, min(start + 256, len(data))), trainer.device).batch
        chunks.append(trainer.model.features(batch)[0].cpu())
    return torch.cat(chunks)


def split_indices(data: TrainingSet, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation row indices; a fixed seed keeps the split identical across resumes."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    num_validation = int(round(fraction * len(data)))
    if fraction > 0 and not 0 < num_validation < len(data):
        raise ValueError(
            f'validation_fraction={fraction} leaves no training or no validation structures out of {len(data)}'
        )
    return order[num_validation:].sort().values, order[:num_validation].sort().values


def write_losses(path: Path, history: dict[str, list[float]]) -> None:
    """The loss history as CSV (columns :data:`~.trainer.LOSS_COLUMNS`), replaced atomically."""
    text = io.StringIO(newline='')
    writer = csv.writer(text)
    writer.writerow(LOSS_COLUMNS)
    writer.writerows(zip(*(history[name] for name in LOSS_COLUMNS)))
    write_text_atomically(path, text.getvalue())


def usable_records(records: Sequence[StructureRecord], n_max: int) -> list[StructureRecord]:
    """Records that fit in ``n_max`` slots; ``ValueError`` when none do."""
    if not records:
        raise ValueError('the dataset is empty')
    usable = [record for record in records if 0 < record.num_atoms <= n_max]
    if not usable:
        raise ValueError(f'no structure of the dataset fits in n_max={n_max} atom slots')
    return usable


def start_trainer(
    usable: Sequence[StructureRecord], config: GanConfig, resume: str | Path | None, device: torch.device
) -> Trainer:
    """A trainer resumed from the checkpoint ``resume`` (whose vocabulary must cover ``usable``), or a fresh one."""
    if resume is None:
        elements = element_vocabulary(usable)
        normalisation = fit_normalisation(
            usable, elements, config.min_distance, config.cutoff, config.max_images, config.contact_quantile
        )
        return Trainer.from_config(config, normalisation, device)
    trainer = Trainer.from_state(load_checkpoint(resume), config, device)
    for record in usable:
        species_indices(record.numbers, trainer.normalisation.elements)
    return trainer


def train(
    records: Sequence[StructureRecord],
    config: GanConfig,
    output_dir: str | Path,
    resume: str | Path | None = None,
    max_wallclock_seconds: float | None = None,
    device: str | torch.device = 'auto',
    on_log: Callable[[Trainer], bool] | None = None,
) -> TrainResult:
    """Train (or continue training) a GAN on ``records`` and write ``model.pt``, ``losses.csv`` and ``metrics.json``.

    The critic's real samples (and the compositions the generator is trained on) are the records of role ``minimum``;
    the physics head learns from every record with an energy, minima included. Records that are neither are unused.
    Structures with more than ``config.n_max`` atoms are skipped; ``losses.csv`` is rewritten at every logged step so
    that progress can be followed. ``checkpoint.pt`` is rewritten at the intervals of ``config`` (see
    :class:`~.config.GanConfig`), so that a killed run resumes from it, and is removed once ``model.pt`` is written.
    When ``max_wallclock_seconds`` (counted from this call) would be exceeded before ``config.steps``, writes
    ``checkpoint.pt`` and returns ``completed=False``. Every file is replaced atomically.

    Raises :class:`~.data.NoMinimaError` (a ``ValueError``) when no usable record is a minimum, and
    :class:`~.trainer.TrainingDiverged` when a loss becomes NaN or infinite; the diverged weights are not
    saved, and the exception names the last good checkpoint. ``on_log`` is called with the trainer at every logged
    step; when it returns true, training ends there (a pruned trial of a hyperparameter search).
    """
    started = time.monotonic()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    torch_device = resolve_device(device)
    usable = training_records(usable_records(records, config.n_max))
    trainer = start_trainer(usable, config, resume, torch_device)
    data = build_training_set(usable, trainer.normalisation.elements, config.n_max, trainer.normalisation)
    data.features = featurize(trainer, data)
    training, validation = split_indices(data, config.validation_fraction, config.seed)
    pool = training[data.minimum[training]]
    if len(pool) == 0:
        raise ValueError(f'validation_fraction={config.validation_fraction} leaves no minimum for training')
    energy_pool = training[torch.isfinite(data.energy[training])]
    checkpoint_path = output / CHECKPOINT_FILE
    last_good = resume
    clock = CheckpointClock(config.checkpoint_every_steps, config.checkpoint_every_minutes, trainer.step)
    step_seconds: list[float] = []
    while trainer.step < config.steps:
        if max_wallclock_seconds is not None and step_seconds:
            expected = 2.0 * max(step_seconds[-20:]) + 1.0
            if time.monotonic() - started + expected > max_wallclock_seconds:
                save_checkpoint(checkpoint_path, trainer.state())
                write_losses(output / LOSSES_FILE, trainer.history)
                return TrainResult(completed=False, checkpoint_path=checkpoint_path)
        tick = time.perf_counter()
        try:
            trainer.train_step(data, pool, energy_pool)
        except TrainingDiverged as diverged:
            raise TrainingDiverged(diverged.step, diverged.losses, last_good) from None
        step_seconds.append(time.perf_counter() - tick)
        if trainer.history['step'] and trainer.history['step'][-1] == trainer.step:
            write_losses(output / LOSSES_FILE, trainer.history)
            if on_log is not None and on_log(trainer):
                break
        if trainer.step < config.steps and clock.due(trainer.step):
            save_checkpoint(checkpoint_path, trainer.state())
            last_good = checkpoint_path
            clock.reset(trainer.step)
    trainer.metrics = run_metrics(trainer, data, pool, energy_pool, validation, step_seconds, len(records))
    path = output / MODEL_FILE
    save_checkpoint(path, trainer.state())
    checkpoint_path.unlink(missing_ok=True)
    write_losses(output / LOSSES_FILE, trainer.history)
    write_text_atomically(output / METRICS_FILE, json.dumps(trainer.metrics, indent=2))
    return TrainResult(completed=True, checkpoint_path=path, metrics=trainer.metrics)
