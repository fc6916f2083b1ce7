"""Benchmark: the GAN against a random symmetric-structure baseline (PyXtal) on Nb-O, at equal relaxation budgets.

Data: the OQMD Nb-O CIFs of ``<data-dir>/nb-o_oqmd`` (entries above 25 Å^3/atom dropped), labelled with CHGNet by
the shared ``_oqmd_chgnet`` module (single point at the OQMD geometry and CHGNet-relaxed geometry), plus CHGNet MD
snapshots of a few of them at two temperatures. The GAN is trained on that set; both methods then generate the same
compositions and formula units, go through the same post-processing, the same number N of CHGNet relaxations and the
same metrics (:func:`aiida_crystalgan.analysis.metrics.compute_metrics`). The convex hull is built from the
CHGNet-relaxed OQMD structures plus CHGNet-relaxed elemental references (bcc Nb, an alpha-O2-type molecular crystal).

    python benchmarks/gan_vs_random.py [--data-dir DATA] [--output-dir docs/benchmarks] \
        [--relaxations 20] [--train-steps 600] [--seed 0] [--quick]

``--quick`` is a smoke run of a few minutes (tiny training, few samples, 2 relaxations per method) that writes
``gan_vs_random_quick.{json,md}``. Exits 0 with a message when the data folder is absent. Intermediate CHGNet results
are cached in ``--work-dir`` (a temporary folder unless given), so an interrupted run can be resumed.

On a GPU machine, ``--throughput-only CHECKPOINT`` measures only the generation rate (CPU and CUDA);
``--merge-throughput JSON [--discussion MARKDOWN]`` adds that result (and a hand-written discussion) to the report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _oqmd_chgnet import (
    MAX_VOLUME_PER_ATOM,
    Cache,
    chgnet,
    elemental_references,
    label_oqmd,
    log,
    read_oqmd,
    relax_cached,
    structure_fingerprint_key,
    to_atoms,
    to_structure,
    training_records,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / 'shared' / 'data'
MD_ENTRIES = (2921, 10057, 31135, 3586)  # NbO Pm-3m, rutile NbO2, R-Nb2O5, B-Nb2O5
TARGETS_IN_ISSUE = {
    'structural_validity': 0.99,
    'compositional_validity': 0.95,
    'uniqueness': 0.90,
    'novelty': 0.80,
    'sun_ratio_vs_random': 2.0,
    'generation_structures_per_second_cpu': 1000.0,
}


@dataclass
class Settings:
    """Sizes of one run (full or quick)."""

    train_steps: int
    train_seconds: float
    samples_per_target: int
    throughput_per_target: int
    relaxations: int
    relax_steps: int
    relax_fmax: float
    max_relax_atoms: int
    reference_relax_steps: int
    max_reference_atoms: int
    md_steps: int
    md_temperatures: tuple[float, ...]
    md_entries: tuple[int, ...]
    phonons: int
    seed: int


@dataclass
class Target:
    """A composition (reduced formula) and a number of formula units."""

    formula: str
    formula_units: int
    num_atoms: int
    references: list[int] = field(default_factory=list)  # indices of OQMD references with this formula and size

    @property
    def key(self) -> str:
        return f'{self.formula}x{self.formula_units}'


# ----------------------------------------------------------------------------------------------- data and labels


def md_snapshots(entries: list[dict[str, Any]], calculator, cache: Cache, settings: Settings) -> list:
    """CHGNet NVT MD frames (StructureRecords with energies, forces) of ``settings.md_entries`` at each temperature."""
    from aiida_crystalgan.io import StructureRecord
    from aiida_crystalgan.mlip.runner import run_md

    records = []
    for entry in entries:
        if entry['id'] not in settings.md_entries:
            continue
        start = entry['final_structure']
        for temperature in settings.md_temperatures:
            params = {
                'temperature': temperature,
                'timestep': 2.0,
                'steps': settings.md_steps,
                'sample_interval': max(1, settings.md_steps // 10),
                'seed': settings.seed,
                'thermostat': 'langevin',
            }

            def compute(s=start, p=params) -> dict[str, Any]:
                tick = time.perf_counter()
                frames = run_md(to_atoms(s), calculator, p)
                return {**{k: np.asarray(v).tolist() for k, v in frames.items()}, 'seconds': time.perf_counter() - tick}

            frames = cache.get(Cache.key('md', structure_fingerprint_key(start), params), compute)
            for index in range(len(frames['energies'])):
                records.append(
                    StructureRecord(
                        numbers=frames['numbers'],
                        positions=frames['positions'][index],
                        cell=frames['cells'][index],
                        energy=frames['energies'][index],
                        forces=frames['forces'][index],
                        source=f'chgnet-md:oqmd-{entry["id"]}:{temperature:g}K',
                        label=f'{entry["formula"]}-md',
                    )
                )
            log(
                f'  MD oqmd-{entry["id"]} {entry["formula"]} at {temperature:g} K: {len(frames["energies"])} frames '
                f'in {frames["seconds"]:.0f} s'
            )
    return records


def generation_targets(entries: list[dict[str, Any]], n_max: int, balanced_only: bool = True) -> list[Target]:
    """One target per (reduced formula, formula units) of the OQMD entries that fit in ``n_max`` atoms, only
    charge-balanced compositions unless ``balanced_only`` is false.
    """
    from aiida_crystalgan.analysis.validity import charge_balanced

    targets: dict[tuple[str, int], Target] = {}
    for index, entry in enumerate(entries):
        structure = entry['structure']
        if len(structure) > n_max or balanced_only and not charge_balanced(structure.composition):
            continue
        reduced, units = structure.composition.get_reduced_composition_and_factor()
        key = (reduced.reduced_formula, int(round(units)))
        if key not in targets:
            targets[key] = Target(key[0], key[1], len(structure))
        targets[key].references.append(index)
    return sorted(targets.values(), key=lambda t: (t.num_atoms, t.formula))


# ---------------------------------------------------------------------------------------------- the two methods


def train_gan(records: list, settings: Settings, work: Path, n_max: int) -> tuple[Path, dict[str, Any]]:
    """Train the GAN; return the checkpoint and training statistics."""
    from aiida_crystalgan.gan import GanConfig, train

    config = GanConfig(n_max=n_max, steps=settings.train_steps, seed=settings.seed, log_every=10)
    start = time.perf_counter()
    result = train(records, config, work / 'gan', max_wallclock_seconds=settings.train_seconds, device='cpu')
    seconds = time.perf_counter() - start
    from aiida_crystalgan.gan import load_checkpoint

    state = load_checkpoint(result.checkpoint_path)
    history = state['history']
    steps = int(state['step'])
    per_step = result.metrics.get('seconds_per_step') if result.completed else None
    if per_step is None and history.get('seconds_per_step'):
        per_step = float(np.mean(history['seconds_per_step']))
    stats = {
        'config': config.to_dict(),
        'completed': result.completed,
        'steps_done': steps,
        'wall_seconds': seconds,
        'seconds_per_step': per_step,
        'seconds_per_step_including_setup': seconds / max(steps, 1),
        'metrics': {k: v for k, v in result.metrics.items() if k != 'final_losses'},
        'final_losses': result.metrics.get('final_losses'),
    }
    return result.checkpoint_path, stats


def gan_samples(checkpoint: Path, targets: list[Target], count: int, seed: int) -> dict[str, list]:
    """``count`` generated structures (pymatgen) per target."""
    from aiida_crystalgan.gan import generate

    requested = [{'composition': t.formula, 'formula_units': t.formula_units} for t in targets]
    records = generate(checkpoint, requested, count, seed=seed, device='cpu')
    samples: dict[str, list] = {}
    for index, target in enumerate(targets):
        samples[target.key] = [record.to_pymatgen() for record in records[index * count : (index + 1) * count]]
    return samples


def gan_throughput(checkpoint: Path, targets: list[Target], per_target: int, seed: int, device: str) -> dict[str, Any]:
    """Structures per second of :func:`generate` (checkpoint load and decoding to records included), two runs."""
    import torch

    from aiida_crystalgan.gan import generate

    requested = [{'composition': t.formula, 'formula_units': t.formula_units} for t in targets]
    runs = []
    for repeat in range(2):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        records = generate(checkpoint, requested, per_target, seed=seed + repeat, device=device)
        if device == 'cuda':
            torch.cuda.synchronize()
        runs.append(len(records) / (time.perf_counter() - start))
    result = {
        'device': device,
        'structures': len(records),
        'structures_per_second_runs': runs,
        'structures_per_second': max(runs),
        'torch_threads': torch.get_num_threads(),
    }
    if device == 'cuda':
        result['device_name'] = torch.cuda.get_device_name()
    return result


def random_samples(targets: list[Target], count: int, seed: int) -> tuple[dict[str, list], dict[str, Any]]:
    """``count`` PyXtal random symmetric crystals per target, with their generation rate."""
    from aiida_crystalgan.analysis.baseline import random_crystals

    samples: dict[str, list] = {}
    failures = {}
    start = time.perf_counter()
    total = 0
    for index, target in enumerate(targets):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                crystals = random_crystals(
                    target.formula, count, formula_units=(target.formula_units,), seed=seed + index
                )
        except (ValueError, RuntimeError) as exception:
            failures[target.key] = str(exception)
            crystals = []
        samples[target.key] = [crystal.structure for crystal in crystals]
        total += len(crystals)
    seconds = time.perf_counter() - start
    return samples, {
        'structures': total,
        'seconds': seconds,
        'structures_per_second': total / seconds,
        'failures': failures,
    }


# ------------------------------------------------------------------------------------------------------ metrics


def phonon_min_frequency(structure, calculator, max_supercell_atoms: int = 120) -> float | None:
    """Lowest phonon frequency (THz, imaginary negative) by the product's phonon check with CHGNet forces: the
    ``crystalgan.phonons`` defaults (0.01 Å displacements, residual forces subtracted, Γ-centred 8x8x8 mesh) in a
    supercell at least 7 Å wide; ``None`` when that supercell has more than ``max_supercell_atoms`` atoms.
    """
    from aiida_crystalgan.analysis.phonons import phonon_check

    check = phonon_check(
        to_atoms(structure), calculator, supercell_min_length=7.0, max_supercell_atoms=max_supercell_atoms
    )
    return None if check is None else check.min_frequency


def sample_metrics(samples: dict[str, list], targets: list[Target], training: list, references: list) -> dict:
    """Metrics of the raw generated set (before post-processing and relaxation) plus CSP match rate / RMSE."""
    from aiida_crystalgan.analysis.metrics import compute_metrics, match_rate_and_rmse

    structures = [s for target in targets for s in samples.get(target.key, [])]
    metrics = compute_metrics(structures, training=training, references=references)
    predictions, paired = [], []
    for target in targets:
        for reference in target.references:
            predictions.append(samples.get(target.key, []))
            paired.append(references[reference])
    csp = match_rate_and_rmse(predictions, paired)
    metrics.update({f'csp_{key}': value for key, value in csp.items()})
    return metrics


def select_for_relaxation(kept: list, kept_targets: list[str], count: int, max_atoms: int, seed: int) -> list[int]:
    """Indices of ``count`` kept candidates (at most ``max_atoms`` atoms), round robin over targets in random order."""
    rng = np.random.default_rng(seed)
    by_target: dict[str, list[int]] = defaultdict(list)
    for index, (structure, key) in enumerate(zip(kept, kept_targets)):
        if len(structure) <= max_atoms:
            by_target[key].append(index)
    queues = {key: list(rng.permutation(indices)) for key, indices in sorted(by_target.items())}
    order = list(queues)
    rng.shuffle(order)
    chosen: list[int] = []
    while len(chosen) < count and any(queues.values()):
        for key in order:
            if queues[key] and len(chosen) < count:
                chosen.append(int(queues[key].pop(0)))
    return chosen


def evaluate_method(
    name: str,
    samples: dict[str, list],
    targets: list[Target],
    training: list,
    references: list,
    diagram,
    calculator,
    cache: Cache,
    settings: Settings,
) -> dict[str, Any]:
    """Raw-sample metrics, post-processing, N relaxations, hull distances, relaxed metrics and phonons of a method."""
    from aiida_crystalgan.analysis.hull import energy_above_hull
    from aiida_crystalgan.analysis.metrics import compute_metrics
    from aiida_crystalgan.analysis.postprocess import postprocess

    out: dict[str, Any] = {}
    tick = time.perf_counter()
    out['raw'] = sample_metrics(samples, targets, training, references)
    out['raw_metrics_seconds'] = time.perf_counter() - tick
    log(f'{name}: raw metrics {json.dumps(out["raw"])}')

    tick = time.perf_counter()
    structures, keys = [], []
    for target in targets:
        structures.extend(samples.get(target.key, []))
        keys.extend([target.key] * len(samples.get(target.key, [])))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        processed = postprocess(structures, training=training)
    out['postprocess'] = {
        'counts': processed.counts,
        'seconds': time.perf_counter() - tick,
        'kept_fraction': len(processed.structures) / max(len(structures), 1),
    }
    log(f'{name}: post-processing {processed.counts}')

    kept_keys = [keys[index] for index in processed.kept_indices]
    chosen = select_for_relaxation(
        processed.structures, kept_keys, settings.relaxations, settings.max_relax_atoms, settings.seed
    )
    relaxed, e_hull, rows = [], [], []
    for number, index in enumerate(chosen):
        candidate = processed.structures[index]
        result = relax_cached(candidate, calculator, cache, settings.relax_fmax, settings.relax_steps)
        row = {
            'target': kept_keys[index],
            'formula': candidate.composition.reduced_formula,
            'num_atoms': len(candidate),
            'seconds': result.get('seconds'),
        }
        if 'error' in result:
            row['error'] = result['error']
            relaxed.append(candidate)
            e_hull.append(None)
        else:
            structure = to_structure(result)
            distance = energy_above_hull(diagram, structure.composition, float(result['energy']))
            relaxed.append(structure)
            e_hull.append(distance)
            row.update(
                energy_per_atom=result['energy'] / len(structure),
                e_above_hull=distance,
                converged=result['converged'],
                steps=result['steps'],
                max_force=result['max_force'],
            )
        rows.append(row)
        log(
            f'{name}: relaxation {number + 1}/{len(chosen)} {row["formula"]} ({row["num_atoms"]} atoms) '
            f'E_hull={row.get("e_above_hull")} steps={row.get("steps")} {row["seconds"]:.0f} s'
        )
    out['relaxations'] = rows
    out['n_relaxed'] = len(chosen)
    out['n_relaxation_pool'] = sum(len(s) <= settings.max_relax_atoms for s in processed.structures)

    frequencies: list[float | None] = [None] * len(relaxed)
    phonon_seconds = 0.0
    if settings.phonons and relaxed:
        order = sorted(
            (i for i in range(len(relaxed)) if e_hull[i] is not None and rows[i].get('converged')),
            key=lambda i: e_hull[i],
        )
        for index in order[: settings.phonons]:
            tick = time.perf_counter()
            key = Cache.key('phonon_check', structure_fingerprint_key(relaxed[index]))
            value = cache.get(key, lambda s=relaxed[index]: {'min': phonon_min_frequency(s, calculator)})
            frequencies[index] = value['min']
            rows[index]['min_phonon_frequency_thz'] = value['min']
            phonon_seconds += time.perf_counter() - tick
            log(f'{name}: phonons of {rows[index]["formula"]}: min frequency {value["min"]} THz')
    out['phonon_seconds'] = phonon_seconds
    metrics = compute_metrics(
        relaxed,
        training=training,
        energies_above_hull=e_hull,
        min_phonon_frequencies=frequencies if settings.phonons else None,
    )
    converged = [row.get('converged', False) for row in rows]
    metrics['relaxations_converged'] = sum(converged)
    seconds = [row['seconds'] for row in rows if row.get('seconds') is not None]
    metrics['mean_relaxation_seconds'] = float(np.mean(seconds)) if seconds else None
    finite = [e for e in e_hull if e is not None]
    metrics['min_energy_above_hull'] = min(finite) if finite else None
    out['relaxed'] = metrics
    log(f'{name}: relaxed metrics {json.dumps(metrics)}')
    return out


# ------------------------------------------------------------------------------------------------------- report


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return 'n/a'
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f'{value:.{digits}f}' if abs(value) < 1e4 else f'{value:.3g}'
    return str(value)


def pct(value: float | None) -> str:
    return 'n/a' if value is None else f'{100 * value:.1f}%'


def sun_per_budget(report: dict[str, Any], method: dict[str, Any]) -> float | None:
    """S.U.N. structures over the relaxation budget N (a method with fewer distinct candidates than N relaxes fewer,
    and ``compute_metrics``' ``sun_rate`` then divides by the number it relaxed)."""
    n_sun = method['relaxed'].get('n_sun')
    return None if n_sun is None else n_sun / report['settings']['relaxations']


def assess(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: measured value, target, met or missed and by how much."""
    gan, rnd = report['gan'], report['random']
    rows = []
    for name in ('structural_validity', 'compositional_validity', 'uniqueness', 'novelty'):
        value, target = gan['raw'].get(name), TARGETS_IN_ISSUE[name]
        rows.append(
            {
                'target': name,
                'required': f'>= {pct(target)}',
                'measured': pct(value),
                'met': value is not None and value >= target,
                'gap': None if value is None else f'{100 * (value - target):+.1f} points',
            }
        )
    sun_gan, sun_rnd = sun_per_budget(report, gan), sun_per_budget(report, rnd)
    ratio = None if not sun_gan or not sun_rnd else sun_gan / sun_rnd
    if sun_gan is not None and sun_rnd == 0:
        met = sun_gan > 0
        measured = f'GAN {pct(sun_gan)} vs random 0.0% (ratio undefined)'
    else:
        met = ratio is not None and ratio >= 2.0
        measured = f'GAN {pct(sun_gan)} vs random {pct(sun_rnd)} (ratio {fmt(ratio, 2)})'
    rows.append(
        {
            'target': 'S.U.N. per relaxation budget N >= 2x random',
            'required': '>= 2.0x',
            'measured': measured,
            'met': met,
            'gap': None if ratio is None else f'{ratio / 2.0:.2f}x of target',
        }
    )
    rate = report['throughput']['gan_cpu']['structures_per_second']
    rows.append(
        {
            'target': 'generation throughput, 2 CPU cores',
            'required': '>= 1000 structures/s',
            'measured': f'{rate:.0f} structures/s',
            'met': rate >= 1000.0,
            'gap': f'{rate / 1000.0:.1f}x of target',
        }
    )
    return rows


METRIC_ROWS = (
    ('raw', 'n_structures', 'generated structures (metric sample)', fmt),
    ('raw', 'structural_validity', 'structural validity', pct),
    ('raw', 'compositional_validity', 'compositional validity (charge balance)', pct),
    ('raw', 'validity', 'both valid', pct),
    ('raw', 'uniqueness', 'uniqueness (among valid)', pct),
    ('raw', 'novelty', 'novelty vs training set (among unique)', pct),
    ('raw', 'csp_match_rate', 'match rate vs OQMD references (CDVAE tolerances)', pct),
    ('raw', 'csp_rmse', 'RMSE of matches (normalised)', fmt),
    ('raw', 'cov_recall', 'COV-R', pct),
    ('raw', 'cov_precision', 'COV-P', pct),
    ('postprocess', 'kept_fraction', 'kept by post-processing', pct),
    ('', 'n_relaxation_pool', 'post-processed candidates eligible for relaxation', fmt),
    ('', 'n_relaxed', 'relaxations performed (budget N each)', fmt),
    ('relaxed', 'relaxations_converged', 'relaxations converged (fmax)', fmt),
    ('relaxed', 'mean_relaxation_seconds', 'mean seconds per relaxation', fmt),
    ('relaxed', 'mean_energy_above_hull', 'mean E above hull after relaxation (eV/atom)', fmt),
    ('relaxed', 'median_energy_above_hull', 'median E above hull (eV/atom)', fmt),
    ('relaxed', 'min_energy_above_hull', 'lowest E above hull (eV/atom)', fmt),
    ('relaxed', 'stable_rate', 'stable (<= 0.1 eV/atom) among relaxed', pct),
    ('relaxed', 'uniqueness', 'uniqueness after relaxation', pct),
    ('relaxed', 'novelty', 'novelty after relaxation', pct),
    ('relaxed', 'n_sun', 'S.U.N. structures', fmt),
    ('relaxed', 'sun_rate', 'S.U.N. rate (per relaxation performed)', pct),
    ('', 'sun_per_budget', 'S.U.N. per relaxation budget N', pct),
    ('relaxed', 'n_phonons', 'phonon checks (lowest-E converged relaxations)', fmt),
    ('relaxed', 'phonon_stable_rate', 'no imaginary mode below -0.1 THz (among checked)', pct),
)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The human-readable report."""
    gan, rnd = report['gan'], report['random']
    for method in (gan, rnd):
        method['sun_per_budget'] = sun_per_budget(report, method)
    lines = [
        '# GAN vs random structure search (PyXtal) on Nb-O' + (' (quick smoke run)' if report['quick'] else ''),
        '',
        f'Produced by `{report["command"]}` on {report["date"]} on {report["machine"]}. '
        f'Total wall time {report["timings"]["total_seconds"] / 60:.1f} min.',
        '',
        '## Setup',
        '',
        f'- Data: {report["dataset"]["oqmd_entries"]} OQMD Nb-O entries (volume <= {MAX_VOLUME_PER_ATOM} Å^3/atom), '
        f'labelled with CHGNet 0.3.0 (single point at the OQMD geometry + relaxed geometry, fmax '
        f'{report["settings"]["relax_fmax"]} eV/Å), plus {report["dataset"]["md_frames"]} CHGNet NVT MD frames '
        f'(Langevin, 2 fs, {report["settings"]["md_steps"]} steps) of OQMD entries {report["settings"]["md_entries"]} '
        f'at {report["settings"]["md_temperatures"]} K: {report["dataset"]["training_records"]} training structures '
        f'({report["dataset"]["training_used"]} with <= n_max atoms used).',
        f'- Hull: CHGNet energies of the relaxed OQMD structures (single point for cells above '
        f'{report["settings"]["max_reference_atoms"]} atoms) + CHGNet-relaxed bcc Nb and an alpha-O2-type molecular '
        f'crystal (positions only). On-hull phases: {", ".join(report["hull"]["stable_phases"])}.',
        f'- Targets (composition x formula units): {", ".join(report["targets"])}; '
        f'{report["settings"]["samples_per_target"]} samples per target and method for the sample metrics.',
        f'- GAN: `GanConfig` {json.dumps(report["gan_training"]["config"])}; trained on the CPU '
        f'({report["gan_training"]["steps_done"]} steps, completed={report["gan_training"]["completed"]}).',
        '- Random baseline: `random_crystals` (PyXtal, space groups 2-230 compatible with the target, volume factor '
        '1.1) for the same targets and counts.',
        '- Both: the same `postprocess` (wrap, merge < 0.7 Å, symmetrise at 0.1 Å, validity, charge balance, drop '
        'training matches and duplicates), then the same number N of CHGNet relaxations (FIRE + Frechet cell filter, '
        f'fmax {report["settings"]["relax_fmax"]} eV/Å, at most {report["settings"]["relax_steps"]} steps) of kept '
        f'candidates with <= {report["settings"]["max_relax_atoms"]} atoms, picked round robin over targets with '
        f'seed {report["settings"]["seed"]}.',
        f'- Seeds: training {report["settings"]["seed"]}, generation {report["seeds"]["generation"]}, PyXtal '
        f'{report["seeds"]["random"]} + target index, selection {report["settings"]["seed"]}.',
        '',
        '## Metrics',
        '',
        'Sample metrics are on the raw generated structures (before post-processing and relaxation); '
        '"after relaxation" metrics are on the relaxed candidates. S.U.N. = stable (<= 0.1 eV/atom above the hull), '
        'unique and novel; its rate is given per relaxation performed and per relaxation budget N.',
        '',
        '| metric | GAN | random (PyXtal) |',
        '|---|---|---|',
    ]
    for section, key, label, formatter in METRIC_ROWS:
        values = [(method[section] if section else method).get(key) for method in (gan, rnd)]
        lines.append(f'| {label} | {formatter(values[0])} | {formatter(values[1])} |')
    throughput = report['throughput']
    cuda = throughput.get('gan_cuda')
    cuda_text = (
        'n/a (no GPU here)'
        if cuda is None
        else f'{cuda["structures_per_second"]:.0f} ({cuda.get("device_name", "cuda")}'
        f'{", separate machine" if "measured_on" in cuda else ""})'
    )
    lines += [
        f'| generation throughput, CPU (structures/s, before relaxation) | '
        f'{throughput["gan_cpu"]["structures_per_second"]:.0f} | {throughput["random"]["structures_per_second"]:.1f} |',
        f'| generation throughput, CUDA (structures/s) | {cuda_text} | n/a |',
        f'| training time per step (s) | {fmt(report["gan_training"]["seconds_per_step"])} | n/a |',
        '',
        f'Training: {fmt(report["gan_training"]["wall_seconds"], 0)} s wall for {report["gan_training"]["steps_done"]} '
        f'steps ({fmt(report["gan_training"]["seconds_per_step_including_setup"])} s/step including feature '
        f'precomputation); GAN training metrics: {json.dumps(report["gan_training"]["metrics"])}.',
        '',
        '## Targets of the issue',
        '',
        '| target | required | measured (GAN) | met | gap |',
        '|---|---|---|---|---|',
    ]
    for row in report['assessment']:
        lines.append(
            f'| {row["target"]} | {row["required"]} | {row["measured"]} | {"met" if row["met"] else "missed"} '
            f'| {row["gap"] or "n/a"} |'
        )
    lines += ['', '## Timings (s)', '', '| stage | seconds |', '|---|---|']
    for stage, seconds in report['timings'].items():
        lines.append(f'| {stage} | {seconds:.0f} |')
    lines += ['', '## Post-processing outcomes', '', '| outcome | GAN | random |', '|---|---|---|']
    for outcome in gan['postprocess']['counts']:
        counts = gan['postprocess']['counts'][outcome], rnd['postprocess']['counts'][outcome]
        lines.append(f'| {outcome} | {counts[0]} | {counts[1]} |')
    lines += [
        '',
        '## Relaxed candidates',
        '',
        '| method | target | atoms | E above hull (eV/atom) | steps | converged | min phonon (THz) |',
        '|---|---|---|---|---|---|---|',
    ]
    for name, method in (('GAN', gan), ('random', rnd)):
        for row in method['relaxations']:
            lines.append(
                f'| {name} | {row["target"]} | {row["num_atoms"]} | {fmt(row.get("e_above_hull"))} | '
                f'{fmt(row.get("steps"))} | {fmt(row.get("converged"))} | '
                f'{fmt(row.get("min_phonon_frequency_thz"))} |'
            )
    lines.append('')
    if report.get('discussion'):
        lines += [report['discussion'].strip(), '']
    path.write_text('\n'.join(lines))


# --------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA, help='the shared data folder')
    parser.add_argument('--output-dir', type=Path, default=REPO / 'docs' / 'benchmarks')
    parser.add_argument('--work-dir', type=Path, default=None, help='cache of CHGNet results and the GAN model')
    parser.add_argument('--relaxations', type=int, default=None, help='N relaxations per method (default 20)')
    parser.add_argument('--train-steps', type=int, default=None, help='GAN training steps (default 600)')
    parser.add_argument('--train-seconds', type=float, default=None, help='wall-clock cap of training')
    parser.add_argument('--samples', type=int, default=None, help='samples per target for the sample metrics')
    parser.add_argument('--phonons', type=int, default=None, help='phonon checks per method (lowest E_hull first)')
    parser.add_argument(
        '--all-compositions',
        action='store_true',
        help='also generate compositions that cannot be charge balanced (NbO3, Nb3O, ...)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true', help='smoke run of a few minutes')
    parser.add_argument(
        '--throughput-only',
        type=Path,
        default=None,
        metavar='CHECKPOINT',
        help='only measure generation throughput of this checkpoint on CPU and CUDA (no data needed); '
        'writes gan_vs_random_throughput.json to --output-dir',
    )
    parser.add_argument(
        '--targets',
        default=None,
        help='with --throughput-only: comma-separated targets such as NbO2x2 (default: those of the '
        'report in --output-dir)',
    )
    parser.add_argument(
        '--merge-throughput',
        type=Path,
        default=None,
        metavar='JSON',
        help='add the CUDA numbers of a --throughput-only result to the report in --output-dir',
    )
    parser.add_argument(
        '--discussion',
        type=Path,
        default=None,
        metavar='MARKDOWN',
        help='with --merge-throughput: hand-written discussion to store in the report and append',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch / OpenMP threads (1: on busy shared cores 2 threads made CHGNet ~25x slower)',
    )
    return parser.parse_args(argv)


def make_settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    settings = Settings(
        train_steps=20 if quick else 600,
        train_seconds=60 if quick else 420,
        samples_per_target=6 if quick else 32,
        throughput_per_target=200 if quick else 2000,
        relaxations=2 if quick else 20,
        relax_steps=60 if quick else 250,
        relax_fmax=0.05,
        max_relax_atoms=8 if quick else 12,
        reference_relax_steps=30 if quick else 150,
        max_reference_atoms=8 if quick else 24,
        md_steps=10 if quick else 100,
        md_temperatures=(600.0, 1200.0),
        md_entries=(2921,) if quick else MD_ENTRIES,
        phonons=1 if quick else 3,
        seed=args.seed,
    )
    for name, value in (
        ('relaxations', args.relaxations),
        ('train_steps', args.train_steps),
        ('train_seconds', args.train_seconds),
        ('samples_per_target', args.samples),
        ('phonons', args.phonons),
    ):
        if value is not None:
            setattr(settings, name, value)
    return settings


def throughput_only(args: argparse.Namespace) -> int:
    """Generation throughput of a trained checkpoint on the CPU and, when present, CUDA (for a GPU machine)."""
    import torch

    torch.set_num_threads(args.threads)
    keys = (
        args.targets.split(',')
        if args.targets
        else json.loads((args.output_dir / 'gan_vs_random.json').read_text())['targets']
    )
    targets = []
    for key in keys:
        formula, units = key.rsplit('x', 1)
        targets.append(Target(formula, int(units), 0))
    per_target = 20000
    result: dict[str, Any] = {
        'targets': keys,
        'per_target': per_target,
        'torch': torch.__version__,
        'cpu_count': os.cpu_count(),
        'date': datetime.datetime.now(datetime.UTC).isoformat(),
    }
    result['cpu'] = gan_throughput(args.throughput_only, targets, 2000, args.seed, 'cpu')
    if torch.cuda.is_available():
        result['cuda'] = gan_throughput(args.throughput_only, targets, per_target, args.seed, 'cuda')
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / 'gan_vs_random_throughput.json').write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))
    return 0


def merge_throughput(args: argparse.Namespace) -> int:
    """Add CUDA throughput measured on another machine to the report and rewrite its markdown."""
    path = args.output_dir / 'gan_vs_random.json'
    report = json.loads(path.read_text())
    measured = json.loads(args.merge_throughput.read_text())
    if 'cuda' not in measured:
        print(f'{args.merge_throughput} has no CUDA measurement')
        return 1
    report['assessment'] = assess(report)
    if args.discussion:
        report['discussion'] = args.discussion.read_text()
    report['throughput']['gan_cuda'] = {
        **measured['cuda'],
        'measured_on': 'separate GPU machine, '
        f'{measured["cpu_count"]} CPU cores, torch {measured["torch"]}, '
        f'{measured["date"]}',
        'host_cpu': measured['cpu'],
    }
    path.write_text(json.dumps(report, indent=2) + '\n')
    write_markdown(report, path.with_suffix('.md'))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.throughput_only:
        return throughput_only(args)
    if args.merge_throughput:
        return merge_throughput(args)
    data_dir = args.data_dir.resolve()
    if not (data_dir / 'nb-o_oqmd' / 'entries.csv').is_file():
        print(f'gan_vs_random: data folder {data_dir} (nb-o_oqmd) not found: benchmark skipped.')
        return 0
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore', category=UserWarning)
    from aiida_crystalgan.analysis.hull import build_phase_diagram

    settings = make_settings(args)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='gan_vs_random_'))
    cache = Cache(work / 'cache')
    timings: dict[str, float] = {}
    started = time.perf_counter()
    log(f'work folder {work}; settings {settings}')

    tick = time.perf_counter()
    calculator = chgnet()
    entries = read_oqmd(data_dir / 'nb-o_oqmd')
    log(f'{len(entries)} OQMD entries after the volume filter; labelling with CHGNet')
    label_oqmd(
        entries,
        calculator,
        cache,
        settings.relax_fmax,
        settings.reference_relax_steps,
        settings.max_reference_atoms,
    )
    elements = elemental_references(calculator, cache, settings.relax_fmax, settings.reference_relax_steps)
    timings['CHGNet labels and relaxations of OQMD + elements'] = time.perf_counter() - tick
    tick = time.perf_counter()
    snapshots = md_snapshots(entries, calculator, cache, settings)
    timings['CHGNet MD snapshots'] = time.perf_counter() - tick

    hull_entries = [(entry['final_structure'], entry['energy']) for entry in entries]
    hull_entries += [(structure, energy) for structure, energy, _ in elements]
    diagram = build_phase_diagram(hull_entries)
    stable_phases = sorted({entry.composition.reduced_formula for entry in diagram.stable_entries})

    n_max = 24
    records = training_records(entries) + snapshots
    training = [record.to_pymatgen() for record in records]
    references = [entry['structure'] for entry in entries]
    targets = generation_targets(entries, n_max, balanced_only=not args.all_compositions)
    log(f'{len(records)} training structures; targets {[t.key for t in targets]}')

    tick = time.perf_counter()
    checkpoint, training_stats = train_gan(records, settings, work, n_max)
    timings['GAN training'] = time.perf_counter() - tick
    log(f'GAN trained: {training_stats["steps_done"]} steps, {training_stats["seconds_per_step"]} s/step')

    tick = time.perf_counter()
    throughput: dict[str, Any] = {}
    for threads in sorted({1, 2}):
        torch.set_num_threads(threads)
        throughput[f'gan_cpu_{threads}_threads'] = gan_throughput(
            checkpoint, targets, settings.throughput_per_target, settings.seed + 100, 'cpu'
        )
    torch.set_num_threads(args.threads)
    throughput['gan_cpu'] = max(
        (throughput[f'gan_cpu_{n}_threads'] for n in (1, 2)), key=lambda run: run['structures_per_second']
    )
    if torch.cuda.is_available():
        throughput['gan_cuda'] = gan_throughput(
            checkpoint, targets, settings.throughput_per_target, settings.seed + 100, 'cuda'
        )
    timings['GAN throughput measurement'] = time.perf_counter() - tick
    log(f'GAN throughput {throughput}')
    gan = gan_samples(checkpoint, targets, settings.samples_per_target, settings.seed + 1)
    tick = time.perf_counter()
    random_set, throughput['random'] = random_samples(targets, settings.samples_per_target, settings.seed + 2)
    timings['PyXtal generation'] = time.perf_counter() - tick
    log(f'PyXtal: {throughput["random"]}')

    results = {}
    for name, samples in (('gan', gan), ('random', random_set)):
        tick = time.perf_counter()
        results[name] = evaluate_method(
            name, samples, targets, training, references, diagram, calculator, cache, settings
        )
        timings[f'{name}: metrics, post-processing, relaxations, phonons'] = time.perf_counter() - tick
    timings['total_seconds'] = time.perf_counter() - started

    command = 'python benchmarks/gan_vs_random.py' + (
        ' ' + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else ''
    )
    report = {
        'command': command,
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'machine': f'{platform.node() or "host"}: {os.cpu_count()} CPU cores shared with other jobs, '
        f'{args.threads} torch threads, Python {platform.python_version()}, torch {torch.__version__}',
        'quick': args.quick,
        'settings': {
            **settings.__dict__,
            'md_temperatures': list(settings.md_temperatures),
            'md_entries': list(settings.md_entries),
        },
        'seeds': {
            'training': settings.seed,
            'generation': settings.seed + 1,
            'random': settings.seed + 2,
            'throughput': settings.seed + 100,
            'selection': settings.seed,
        },
        'dataset': {
            'oqmd_entries': len(entries),
            'md_frames': len(snapshots),
            'training_records': len(records),
            'training_used': sum(r.num_atoms <= n_max for r in records),
        },
        'hull': {
            'stable_phases': stable_phases,
            'oqmd_energies_per_atom': {
                f'{e["id"]}:{e["formula"]}:{e["spacegroup"]}': e['energy'] / len(e['structure']) for e in entries
            },
            'elements_per_atom': {label: energy / len(s) for s, energy, label in elements},
        },
        'targets': [t.key for t in targets],
        'gan_training': training_stats,
        'throughput': throughput,
        'gan': results['gan'],
        'random': results['random'],
        'timings': timings,
    }
    report['assessment'] = assess(report)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = 'gan_vs_random_quick' if args.quick else 'gan_vs_random'
    (args.output_dir / f'{stem}.json').write_text(json.dumps(report, indent=2, default=float) + '\n')
    write_markdown(report, args.output_dir / f'{stem}.md')
    log(f'wrote {args.output_dir / stem}.json and .md in {timings["total_seconds"] / 60:.1f} min')
    return 0


if __name__ == '__main__':
    sys.exit(main())
