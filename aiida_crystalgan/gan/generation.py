"""Batched generation of candidate structures from a checkpoint's EMA generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.formula import Formula

from aiida_crystalgan.io import StructureRecord

from .checkpoint import load_checkpoint
from .data import conditions, slot_species
from .device import resolve_device
from .generator import Generator
from .model import CrystalGan
from .representation import CrystalBatch, batch_to_records


@dataclass
class Target:
    """A requested composition (e.g. ``'NbO2'``) and number of formula units; ``counts`` (K,) atoms per element."""

    composition: str
    formula_units: int
    counts: np.ndarray


def parse_targets(
    targets: Sequence[Mapping[str, Any] | tuple[str, int]], elements: Sequence[str], n_max: int
) -> list[Target]:
    """Validate requested targets against the model's vocabulary and slot count; ``ValueError`` on bad input."""
    if not targets:
        raise ValueError('no targets requested')
    parsed = []
    for target in targets:
        if isinstance(target, Mapping) and 'composition' in target:
            composition, units = target['composition'], target.get('formula_units', 1)
        elif isinstance(target, Sequence) and not isinstance(target, str) and len(target) == 2:
            composition, units = target
        else:
            raise ValueError(
                f'a target is {{composition, formula_units}} or (composition, formula_units), got {target!r}'
            )
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f'formula_units of `{composition}` must be a positive integer, got {units!r}')
        try:
            count = Formula(str(composition)).count()
        except ValueError as exception:
            raise ValueError(f'cannot parse composition `{composition}`: {exception}') from exception
        if not count or any(n <= 0 for n in count.values()):
            raise ValueError(f'composition `{composition}` has no atoms')
        unknown = sorted(set(count) - set(elements))
        if unknown:
            raise ValueError(
                f'element(s) {", ".join(unknown)} of `{composition}` not in the model vocabulary {", ".join(elements)}'
            )
        counts = np.array([count.get(element, 0) * units for element in elements], dtype=np.int64)
        if counts.sum() > n_max:
            raise ValueError(f'{composition} x {units} has {counts.sum()} atoms, more than n_max={n_max}')
        parsed.append(Target(str(composition), units, counts))
    return parsed


@torch.no_grad()
def separate_atoms(
    cell: torch.Tensor,
    frac: torch.Tensor,
    species: torch.Tensor,
    mask: torch.Tensor,
    threshold: torch.Tensor,
    iterations: int = 10,
) -> torch.Tensor:
    """Push apart atoms closer than ``threshold[s_i, s_j]`` (Å, (K, K)) by a few steps of a soft-sphere relaxation.

    ``cell`` (B, 3, 3) rows, ``frac`` (B, N, 3), ``species``/``mask`` (B, N) or (1, N) for a batch of one composition
    -> new ``frac``. Pairs use the minimum image of the fractional separation; each step moves both atoms of an
    overlapping pair half the overlap apart, until no pair overlaps (structures that are done drop out) or after
    ``iterations`` steps. Atoms already far enough apart do not move.
    """
    inverse = torch.linalg.inv(cell)
    occupied = mask[:, :, None] & mask[:, None, :] & ~torch.eye(frac.shape[1], dtype=torch.bool, device=frac.device)
    limit = torch.where(occupied, threshold[species[:, :, None], species[:, None, :]], 0.0).to(frac.dtype)
    shared = len(limit) == 1
    frac = frac.clone()
    active = torch.arange(len(frac), device=frac.device)
    for _ in range(iterations):
        current = frac[active]
        delta = current[:, None, :, :] - current[:, :, None, :]
        delta = delta - torch.round(delta)
        vectors = torch.einsum('bijk,bkl->bijl', delta, cell[active])
        distance = vectors.norm(dim=-1).clamp(min=1e-6)
        overlap = torch.relu((limit if shared else limit[active]) - distance)
        crowded = (overlap > 1e-3).flatten(1).any(dim=1)
        if not bool(crowded.any()):
            break
        move = -0.5 * ((overlap / distance)[..., None] * vectors).sum(dim=2)
        frac[active] = current + torch.einsum('bik,bkl->bil', move, inverse[active])
        active = active[crowded]
    return frac


def load_generator(state: dict[str, Any], device: torch.device) -> Generator:
    """The EMA generator of a checkpoint, in evaluation mode on ``device``."""
    return CrystalGan.from_dict(state).generator_ema.to(device).eval().requires_grad_(False)


def generate(
    checkpoint_path: str | Path,
    targets: Sequence[Mapping[str, Any] | tuple[str, int]],
    num_per_target: int,
    seed: int = 0,
    device: str | torch.device = 'auto',
    batch_size: int = 4096,
) -> list[StructureRecord]:
    """``num_per_target`` structures for each target, with exact compositions (label = composition, source =
    ``'generated'``), coordinates wrapped into [0, 1). Deterministic for a given ``seed`` and device.
    """
    if isinstance(num_per_target, bool) or not isinstance(num_per_target, int) or num_per_target <= 0:
        raise ValueError(f'num_per_target must be a positive integer, got {num_per_target!r}')
    torch_device = resolve_device(device)
    state = load_checkpoint(checkpoint_path)
    elements = list(state['elements'])
    n_max = int(state['config']['n_max'])
    parsed = parse_targets(targets, elements, n_max)
    generator = load_generator(state, torch_device)
    scale = float(state['config'].get('min_distance_scale', 0.85))
    threshold = scale * torch.tensor(state['normalisation']['min_pair_distance'], device=torch_device)
    latent = torch.Generator().manual_seed(seed)
    records: list[StructureRecord] = []
    for target in parsed:
        counts = torch.from_numpy(target.counts)[None]
        condition = conditions(counts, n_max).to(torch_device)
        species, mask = slot_species(counts, n_max)
        species, mask = species.to(torch_device), mask.to(torch_device)
        num_atoms = mask.sum(dim=1).to(torch_device)
        for start in range(0, num_per_target, batch_size):
            size = min(batch_size, num_per_target - start)
            z = generator.sample_noise(size, latent).to(torch_device)
            with torch.inference_mode():
                cell, frac = generator(z, condition.expand(size, -1), num_atoms.expand(size))
                count = int(num_atoms)
                frac[:, :count] = separate_atoms(
                    cell, frac[:, :count], species[:, :count], mask[:, :count], threshold.to(cell.dtype)
                )
            batch = CrystalBatch(cell, frac, species.expand(size, -1), mask.expand(size, -1))
            records.extend(batch_to_records(batch, elements, wrap=True, label=target.composition, source='generated'))
    return records


def random_records(
    targets: Sequence[Mapping[str, Any] | tuple[str, int]],
    elements: Sequence[str],
    n_max: int,
    num_per_target: int,
    seed: int = 0,
) -> list[StructureRecord]:
    """The random-search control: ``num_per_target`` PyXtal crystals per target (same composition and formula units),
    labelled like :func:`generate`'s (label = composition, source = ``'random'``).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_crystalgan.analysis.baseline import random_crystals

    records: list[StructureRecord] = []
    for offset, target in enumerate(parse_targets(targets, elements, n_max)):
        crystals = random_crystals(
            target.composition,
            num_per_target,
            formula_units=[target.formula_units],
            seed=seed + offset,
            space_groups=range(1, 231),
        )
        for crystal in crystals:
            records.append(
                StructureRecord.from_ase(
                    AseAtomsAdaptor.get_atoms(crystal.structure), label=target.composition, source='random'
                )
            )
    return records
