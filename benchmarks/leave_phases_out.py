"""Benchmark: leave the known NbO2 and Nb2O5 phases out and let the campaign's stages find them again.

Data: OQMD Nb-O entries (CC BY 4.0; ``--data-dir`` is the folder with ``entries.csv`` and ``cif/``), entries above
25 Å^3/atom dropped, every one relaxed with CHGNet by the product's MLIP runner (shared ``_oqmd_chgnet`` module).
Every NbO2 and Nb2O5 entry is held out: it is neither training data nor a reference phase of the funnel's hull.
Per seed, the script runs the code of the campaign's stages through the Python API, not as AiiDA processes:

1. train the GAN (``aiida_crystalgan.gan.train``, the training protocol's ``GanConfig``) on the kept entries: the
   CHGNet-relaxed structure of each is a ``minimum``, its OQMD geometry with CHGNet energy and forces (the first
   frame of its relaxation) ``labelled``;
2. generate candidates for the held-out compositions (GAN arm: ``gan.generate``; random arm: the PyXtal control
   ``gan.generation.random_records``) and screen both arms with the trained model (``gan.screening.screen``);
3. rank the survivors by predicted energy above the hull of the kept references and post-process them best first
   (``analysis.screening.select_ranked``, as ``workflows.generation.select_candidates`` does), per composition;
4. relax the first ``--relaxations`` selected candidates of each composition with CHGNet (FIRE, cell relaxed).

Scoring uses the hull of every OQMD entry and the elements, all relaxed with CHGNet: energy above the hull, S.U.N.
(``analysis.metrics.compute_metrics``, novelty against the training set), rediscovery of the held-out phases
(``StructureMatcher`` match and |ΔE| <= 0.01 eV/atom of the relaxed phase, as ``evaluate_candidates``) and
recovery@N (the phase is rediscovered by one of the first N selected candidates of its composition). For an N of
``--recovery-at`` above ``--relaxations``, a recovery walk relaxes the composition's next selected candidates in order
until the phase is rediscovered (or N are selected): exact, and only as costly as the rank of the first find; those
relaxations count in no other metric.

    python benchmarks/leave_phases_out.py --data-dir DATA/nb-o_oqmd [--seeds 0 1 2] [--relaxations 1000] ...

With ``--validation Nb2O3 --targets Nb2O3x2`` it is a validation run: Nb2O3 is held out as well and is the only
composition generated, so that settings of the funnel (``--funnel``) and of the GAN (``--gan``) are chosen there,
never on NbO2 and Nb2O5 (the test split).

The defaults are the issue's sizes (the ``balanced`` protocols, 1000 relaxations per composition, method and seed:
days on two CPU cores); ``--quick`` is a smoke run of a few minutes. Every CHGNet result, trained model and finished
seed is cached under ``--cache-dir`` (git-ignored), so an interrupted run resumes and seeds run in separate processes
are merged by a last call with all of them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _oqmd_chgnet as labels
import numpy as np
from pymatgen.core import Composition

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(__file__).resolve().parent / '.cache' / 'leave_phases_out'
HELD_OUT_FORMULAS = ('NbO2', 'Nb2O5')
#: The known experimental phases among the held-out entries (OQMD entry id: name).
NAMED_PHASES = {
    10057: 'rutile NbO2 (P4_2/mnm)',
    43810: 'low-T NbO2 (I4_1/a)',
    3586: 'B-Nb2O5 (C2/c)',
    31135: 'R-Nb2O5 (C2/m)',
}
RUTILE, NB2O5_PHASES = 10057, (3586, 31135)
#: How the targets table writes a target's ``met``.
VERDICTS = {True: 'met', False: '**missed**', None: 'not attempted'}
#: Held-out compositions and formula units that contain the four named phases (6, 24, 7 and 14 atoms).
DEFAULT_TARGETS = ('NbO2x2', 'NbO2x8', 'Nb2O5x1', 'Nb2O5x2')
TARGETS_IN_ISSUE = {'sun_ratio_vs_random': 3.0, 'gan_within_0.1': 0.40, 'relaxations_per_method': 100, 'seeds': 3}


@dataclass(frozen=True)
class Sizes:
    """Everything that defines one seed's run (its cache key)."""

    targets: tuple[str, ...]
    candidates: int
    random_candidates: int
    relaxations: int
    recovery_at: tuple[int, ...]
    train_steps: int
    train_seconds: float | None
    n_max: int
    relax_fmax: float
    relax_steps: int
    reference_relax_steps: int
    protocol: str
    cheap_pass: int = 0
    cheap_fmax: float = 0.0
    cheap_steps: int = 0
    validation: tuple[str, ...] = ()
    funnel: tuple[tuple[str, float], ...] = ()  # ``section.field`` overrides of the generation protocol's funnel
    gan: tuple[tuple[str, float], ...] = ()  # overrides of the training protocol's ``GanConfig``


# ------------------------------------------------------------------------------------------------- the data


def held_out(entry: dict[str, Any], validation: Sequence[str] = ()) -> bool:
    """Whether ``entry`` is left out of the training data and the funnel's hull: NbO2 and Nb2O5 (the test split)
    always, the ``validation`` compositions in a validation run."""
    return entry['formula'] in (*HELD_OUT_FORMULAS, *validation)


def prepare_data(folder: Path, calculator, cache: labels.Cache, sizes: Sizes) -> dict[str, Any]:
    """CHGNet-relaxed OQMD entries and elements, the training records of the kept ones, the scoring hull (all of
    them) and the campaign's hull (held-out entries removed)."""
    from aiida_crystalgan.analysis.hull import build_phase_diagram, named_entry

    entries = labels.read_oqmd(folder)
    labels.log(f'{len(entries)} OQMD entries after the volume filter; relaxing them with CHGNet (cached)')
    labels.label_oqmd(entries, calculator, cache, sizes.relax_fmax, sizes.reference_relax_steps, None)
    elements = labels.elemental_references(calculator, cache, sizes.relax_fmax, sizes.reference_relax_steps)
    element_entries = [named_entry(label, structure, energy) for structure, energy, label in elements]
    oqmd_entries = {
        e['id']: named_entry(f'{e["id"]} {e["formula"]} {e["spacegroup"]}', e['final_structure'], e['energy'])
        for e in entries
    }
    missing = sorted(set(sizes.validation) - {entry['formula'] for entry in entries})
    if missing:
        raise SystemExit(f'--validation: no OQMD entry of {", ".join(missing)} in {folder}')
    kept = [entry for entry in entries if not held_out(entry, sizes.validation)]
    records = labels.training_records(kept)
    return {
        'entries': entries,
        'kept': kept,
        'elements': elements,
        'scoring_hull': build_phase_diagram([*oqmd_entries.values(), *element_entries]),
        'campaign_hull': build_phase_diagram([*(oqmd_entries[e['id']] for e in kept), *element_entries]),
        'records': records,
        'training_structures': [record.to_pymatgen() for record in records],  # novelty and in-training checks
    }


def attempted(entry: dict[str, Any], targets: Sequence[str]) -> bool:
    """Whether a target cell can hold the relaxed phase of ``entry``: same composition, and its number of atoms a
    multiple of the phase's primitive cell."""
    primitive = len(entry['final_structure'].get_primitive_structure())
    for key in targets:
        target = parse_target(key)
        atoms = target['formula_units'] * int(sum(Composition(target['composition']).values()))
        if Composition(target['composition']).reduced_formula == entry['formula'] and atoms % primitive == 0:
            return True
    return False


def parse_target(key: str) -> dict[str, Any]:
    formula, units = key.rsplit('x', 1)
    return {'composition': formula, 'formula_units': int(units)}


# ------------------------------------------------------------------------------------------------- one seed


def model_config(sizes: Sizes, seed: int):
    """The ``GanConfig`` of ``seed``: the training protocol's, with the run's steps and n_max."""
    from aiida_crystalgan.gan import GanConfig
    from aiida_crystalgan.workflows.training import TrainingWorkChain

    values = {
        **TrainingWorkChain.get_protocol_inputs(sizes.protocol)['config'],
        **dict(sizes.gan),
        'steps': sizes.train_steps,
        'n_max': sizes.n_max,
        'seed': seed,
    }
    return GanConfig.from_dict(values)


def train_model(records: list, sizes: Sizes, seed: int, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Train (or load, or resume) the GAN of ``seed`` with the training protocol's config."""
    from aiida_crystalgan.gan import train
    from aiida_crystalgan.gan.training import CHECKPOINT_FILE, MODEL_FILE

    config = model_config(sizes, seed)
    sources = sorted(record.source for record in records)
    folder = cache_dir / 'models' / labels.Cache.key(config.to_dict(), sources, sizes.train_seconds)
    stats: dict[str, Any] = {'config': config.to_dict(), 'model': folder.name}
    if (folder / MODEL_FILE).is_file() and (folder / 'benchmark.json').is_file():
        stats.update(json.loads((folder / 'benchmark.json').read_text()))
        return folder / MODEL_FILE, stats
    resume = folder / CHECKPOINT_FILE if (folder / CHECKPOINT_FILE).is_file() else None
    tick = time.perf_counter()
    result = train(records, config, folder, resume=resume, max_wallclock_seconds=sizes.train_seconds, device='cpu')
    if not result.completed:  # the wall-clock cap: use the checkpoint as it is
        import shutil

        shutil.copyfile(result.checkpoint_path, folder / MODEL_FILE)
    summary = {
        'completed': result.completed,
        'seconds': time.perf_counter() - tick,
        'metrics': {k: v for k, v in result.metrics.items() if k != 'final_losses'},
    }
    (folder / 'benchmark.json').write_text(json.dumps(summary, default=float))
    stats.update(summary)
    return folder / MODEL_FILE, stats


def sections(funnel: Sequence[tuple[str, float]], section: str) -> dict[str, float]:
    """The ``--funnel`` overrides of one section of the generation protocol (``screening``, ``postprocess`` or
    ``cheap_pass``), by field."""
    return {key.partition('.')[2]: value for key, value in funnel if key.partition('.')[0] == section}


def funnel(arm: str, model_path: Path, data: dict[str, Any], sizes: Sizes, seed: int) -> dict[str, Any]:
    """Generate and screen one arm's candidates; per composition, the screening order and the selected candidates."""
    from aiida_crystalgan.analysis.postprocess import PostprocessOptions
    from aiida_crystalgan.analysis.screening import predicted_energy_above_hull, select_ranked
    from aiida_crystalgan.analysis.validity import ValidityCriteria
    from aiida_crystalgan.gan import CrystalGan, generate, load_checkpoint
    from aiida_crystalgan.gan.generation import random_records
    from aiida_crystalgan.gan.screening import ScreeningCriteria, screen
    from aiida_crystalgan.workflows.generation import EXAMINED_PER_SELECTED, GenerationWorkChain

    protocol = GenerationWorkChain.get_protocol_inputs(sizes.protocol)
    targets = [parse_target(key) for key in sizes.targets]
    state = load_checkpoint(model_path)
    tick = time.perf_counter()
    if arm == 'gan':
        records = generate(model_path, targets, sizes.candidates, seed=seed + 1, device='cpu')
    else:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            records = random_records(
                targets, list(state['elements']), int(state['config']['n_max']), sizes.random_candidates, seed + 2
            )
    generation_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    criteria = ScreeningCriteria.from_dict({**protocol['screening'], **sections(sizes.funnel, 'screening')})
    screening = screen(CrystalGan.from_dict(state), records, criteria)
    screening_seconds = time.perf_counter() - tick

    ranked = screening.ranked
    formulas = [Composition(records[i].label).reduced_formula for i in ranked]
    e_hull = predicted_energy_above_hull(data['campaign_hull'], formulas, screening.predicted_energy_per_atom[ranked])
    options = {**protocol['postprocess'], **sections(sizes.funnel, 'postprocess')}
    options = PostprocessOptions(validity=ValidityCriteria(**options.pop('validity', {})), **options)
    compositions: dict[str, Any] = {}
    tick = time.perf_counter()
    for formula in sorted(set(formulas)):
        order = sorted(
            (position for position, f in enumerate(formulas) if f == formula),
            key=lambda position: (e_hull[position], ranked[position]),
        )
        indices = [ranked[position] for position in order]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            selection = select_ranked(
                lambda index: records[index].to_pymatgen(),
                indices,
                sizes.cheap_pass or sizes.relaxations,
                training=data['training_structures'],
                options=options,
                max_examined=EXAMINED_PER_SELECTED * (sizes.cheap_pass or sizes.relaxations),
            )
        compositions[formula] = {
            'screened_order': indices,
            'predicted_e_above_hull': [float(e_hull[position]) for position in order],
            'selection': selection,
        }
    return {
        'records': records,
        'postprocess_options': options,
        'screening_counts': screening.counts,
        'compositions': compositions,
        'seconds': {
            'generation': generation_seconds,
            'screening': screening_seconds,
            'selection': time.perf_counter() - tick,
        },
    }


def first_unrelaxed_matches(records: list, order: list[int], phases: dict[int, Any], limit: int) -> dict[int, int]:
    """Position (1-based) of the first of the first ``limit`` screened candidates whose unrelaxed structure matches
    each phase (``StructureMatcher`` with the CDVAE tolerances); a proxy for recovery before any relaxation."""
    from aiida_crystalgan.analysis.matching import BENCHMARK_TOLERANCES, make_matcher

    matcher = make_matcher(**BENCHMARK_TOLERANCES)
    found: dict[int, int] = {}
    for position, index in enumerate(order[:limit], start=1):
        if len(found) == len(phases):
            break
        structure = records[index].to_pymatgen()
        for phase_id, phase in phases.items():
            if phase_id not in found and matcher.fit(structure, phase):
                found[phase_id] = position
    return found


def cheap_pass(
    candidates: list, calculator, cache: labels.Cache, sizes: Sizes
) -> tuple[list[tuple[float, Any]], dict[str, Any]]:
    """The campaign's cheap pass on one composition's selected candidates: a short relaxation of each, then, lowest
    energy first, the ``sizes.relaxations`` that it did not bring to the same structure as a lower one (the rule of
    ``workflows.generation.rank_cheap_pass``, ``analysis.matching.first_distinct``; within one composition, energy
    per atom orders as E above the hull). Returns the cheap-pass structures to relax in full, each with its energy per
    atom after the pass, and the pass's counts; a failed short relaxation is left out.
    """
    from aiida_crystalgan.analysis.matching import first_distinct

    passed, steps, seconds = [], 0, 0.0
    for candidate in candidates:
        result = labels.relax_cached(candidate, calculator, cache, sizes.cheap_fmax, sizes.cheap_steps)
        seconds += result['seconds']
        if 'error' not in result:
            steps += result['steps']
            passed.append((result['energy'] / len(candidate), len(passed), labels.to_structure(result)))
    passed.sort(key=lambda item: item[:2])
    kept, duplicates = first_distinct([structure for _, _, structure in passed], sizes.relaxations)
    counts = {
        'short_relaxations': len(candidates),
        'failed': len(candidates) - len(passed),
        'duplicates_skipped': len(duplicates),
        'steps': steps,
        'seconds': seconds,
    }
    return [(passed[index][0], passed[index][2]) for index in kept], counts


def rediscovered_phases(relaxed, energy: float, phases: dict[int, Any], matcher) -> list[int]:
    """The held-out ``phases`` (id: entry) that a relaxed candidate rediscovers: ``StructureMatcher`` match and
    |ΔE| <= ``REDISCOVERY_TOLERANCE`` per atom of the relaxed phase."""
    from aiida_crystalgan.workflows.generation import REDISCOVERY_TOLERANCE

    per_atom = energy / len(relaxed)
    return [
        phase
        for phase, entry in phases.items()
        if abs(per_atom - entry['energy'] / len(entry['final_structure'])) <= REDISCOVERY_TOLERANCE
        and matcher.fit(relaxed, entry['final_structure'])
    ]


def recovery_walk(
    arm: str,
    run: dict[str, Any],
    formula: str,
    phases: dict[int, Any],
    found: dict[int, int],
    training: list,
    calculator,
    cache: labels.Cache,
    sizes: Sizes,
) -> dict[str, Any]:
    """Recovery@N beyond the ``--relaxations`` of the metrics: walk on down the composition's ranked list (the
    funnel's greedy post-processing, :func:`postprocess_in_order`) and relax each selected candidate until every phase
    is rediscovered, or N = ``max(recovery_at)`` are selected, or ``EXAMINED_PER_SELECTED`` x N examined.

    The first selected candidates are those the metrics relaxed (the selection is greedy: a prefix does not depend on
    the count), so they are not relaxed again and their ``found`` ranks are kept. Returns the first rank and examined
    position of each phase found, the walk's extra relaxations and how far it went; recovery@N follows exactly (see
    :func:`walk_recovery`).
    """
    from aiida_crystalgan.analysis.matching import make_matcher
    from aiida_crystalgan.analysis.screening import postprocess_in_order
    from aiida_crystalgan.workflows.generation import EXAMINED_PER_SELECTED

    composition, records = run['compositions'][formula], run['records']
    already = len(composition['selection'].structures)
    limit = max(sizes.recovery_at)
    matcher = make_matcher()
    first = {phase: {'rank': rank, 'examined': None} for phase, rank in found.items()}
    rows, rank, examined = [], 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        walk = postprocess_in_order(
            lambda index: records[index].to_pymatgen(),
            composition['screened_order'],
            training,
            run['postprocess_options'],
        )
        for examined, (_, candidate) in enumerate(walk, start=1):
            if candidate is not None:
                rank += 1
                if rank > already:
                    result = labels.relax_cached(candidate, calculator, cache, sizes.relax_fmax, sizes.relax_steps)
                    row = {'rank': rank, 'examined': examined, 'seconds': result['seconds']}
                    if 'error' in result:
                        row['error'] = result['error']
                    else:
                        relaxed = labels.to_structure(result)
                        rediscovered = rediscovered_phases(relaxed, result['energy'], phases, matcher)
                        row.update(steps=result['steps'], rediscovered=rediscovered)
                        for phase in rediscovered:
                            first.setdefault(phase, {'rank': rank, 'examined': examined})
                    rows.append(row)
                    labels.log(
                        f'{arm} {formula} recovery walk #{rank} (examined {examined}): {row.get("steps")} steps, '
                        f'{row["seconds"]:.0f} s, rediscovered {row.get("rediscovered")}'
                    )
            if len(first) == len(phases) or rank >= limit or examined >= EXAMINED_PER_SELECTED * limit:
                break
    return {
        'first': {str(phase): found_at for phase, found_at in first.items()},
        'selected': rank,
        'examined': examined,
        'relaxations': rows,
    }


def walk_recovery(walk: dict[str, Any], phase: int, n: int, examined_per_selected: int) -> bool:
    """Recovery@N of ``phase`` from a :func:`recovery_walk` that went to N selected or ``examined_per_selected`` x N
    examined (or found every phase): rediscovered at rank <= N by a candidate within the first
    ``examined_per_selected`` x N examined, which the funnel of size N would select. A phase found among the relaxed
    candidates of the metrics is within their bound, hence within this one."""
    found = walk['first'].get(str(phase))
    if found is None:
        return False
    return found['rank'] <= n and (found['examined'] is None or found['examined'] <= examined_per_selected * n)


def candidates_to_relax(selection, calculator, cache: labels.Cache, sizes: Sizes) -> tuple[list, dict[str, Any] | None]:
    """The structures that get a full relaxation, in order: the selected candidates, or with ``--cheap-pass`` those
    that the cheap pass kept (from their cheap-pass structures), with the cheap pass's counts (None without it)."""
    selected = list(selection.structures.values())
    if not sizes.cheap_pass:
        return selected, None
    kept, counts = cheap_pass(selected, calculator, cache, sizes)
    return [structure for _, structure in kept], counts


def relax_and_score(
    arm: str, run: dict[str, Any], data: dict[str, Any], calculator, cache: labels.Cache, sizes: Sizes
) -> dict[str, Any]:
    """Relax every selected candidate, score it on the full hull and look for the held-out phases among them."""
    from aiida_crystalgan.analysis.hull import energy_above_hull
    from aiida_crystalgan.analysis.matching import make_matcher
    from aiida_crystalgan.analysis.metrics import compute_metrics
    from aiida_crystalgan.workflows.generation import EXAMINED_PER_SELECTED

    matcher = make_matcher()
    held = {e['id']: e for e in data['entries'] if held_out(e)}
    named = {phase: held[phase] for phase in NAMED_PHASES if phase in held and attempted(held[phase], sizes.targets)}
    rows, structures, e_hull = [], [], []
    out: dict[str, Any] = {'compositions': {}, 'cheap_pass': {}}
    for formula, composition in run['compositions'].items():
        selection = composition['selection']
        phases = {p: e for p, e in named.items() if e['formula'] == formula}
        first: dict[int, int] = {}
        to_relax, cheap_counts = candidates_to_relax(selection, calculator, cache, sizes)
        if cheap_counts is not None:
            out['cheap_pass'][formula] = cheap_counts
        for rank, candidate in enumerate(to_relax, start=1):
            result = labels.relax_cached(candidate, calculator, cache, sizes.relax_fmax, sizes.relax_steps)
            row = {'formula': formula, 'rank': rank, 'num_atoms': len(candidate), 'seconds': result['seconds']}
            if 'error' in result:
                row['error'] = result['error']
                structures.append(candidate)
                e_hull.append(None)
            else:
                relaxed = labels.to_structure(result)
                per_atom = result['energy'] / len(relaxed)
                distance = energy_above_hull(data['scoring_hull'], relaxed.composition, result['energy'])
                rediscovered = rediscovered_phases(relaxed, result['energy'], phases, matcher)
                for phase in rediscovered:
                    first.setdefault(phase, rank)
                row.update(
                    energy_per_atom=per_atom,
                    e_above_hull=distance,
                    steps=result['steps'],
                    converged=result['converged'],
                    rediscovered=rediscovered,
                )
                structures.append(relaxed)
                e_hull.append(distance)
            rows.append(row)
            labels.log(
                f'{arm} {formula} #{rank}: {len(candidate)} atoms, E_hull {row.get("e_above_hull")}, '
                f'{row.get("steps")} steps, {row["seconds"]:.0f} s, rediscovered {row.get("rediscovered")}'
            )
        relaxed_count = len(to_relax)
        exhausted = relaxed_count < sizes.relaxations  # the funnel selected fewer: every selected one was relaxed
        walk = None
        beyond = max(sizes.recovery_at) > relaxed_count and len(first) < len(phases)  # a phase still to find
        if beyond and not sizes.cheap_pass and not exhausted:
            walk = recovery_walk(
                arm, run, formula, phases, first, data['training_structures'], calculator, cache, sizes
            )
        recovery: dict[str, dict[str, bool | None]] = {}
        for phase in phases:
            recovery[str(phase)] = {}
            for n in sizes.recovery_at:
                if walk and n > relaxed_count:
                    found = walk_recovery(walk, phase, n, EXAMINED_PER_SELECTED)
                elif phase in first and first[phase] <= n:
                    found = True
                else:  # not found among the relaxed: unknown beyond them, unless all selected ones were relaxed
                    found = False if relaxed_count >= n or exhausted else None
                recovery[str(phase)][str(n)] = found
        proxy = first_unrelaxed_matches(
            run['records'],
            composition['screened_order'],
            {p: e['final_structure'] for p, e in phases.items()},
            max(sizes.recovery_at),
        )
        out['compositions'][formula] = {
            'screened': len(composition['screened_order']),
            'selection_counts': selection.counts,
            'relaxed': relaxed_count,
            'first_rediscovery_rank': {str(p): first.get(p) for p in phases},
            'recovery_at': recovery,
            'first_unrelaxed_match_position': {str(p): proxy.get(p) for p in phases},
            **({'recovery_walk': walk} if walk else {}),
        }
    metrics = compute_metrics(structures, training=data['training_structures'], energies_above_hull=e_hull)
    n = len(rows)
    metrics['within_0.1_of_relaxed'] = metrics['n_stable'] / n if n else None
    cheap_steps = sum(counts['steps'] for counts in out['cheap_pass'].values())
    out.update(
        relaxations=rows,
        n_relaxed=n,
        n_short_relaxations=sum(counts['short_relaxations'] for counts in out['cheap_pass'].values()),
        engine_steps=cheap_steps + sum(row.get('steps') or 0 for row in rows),
        metrics=metrics,
        rediscovered=sorted({phase for row in rows for phase in row.get('rediscovered', [])}),
    )
    return out


def run_seed(
    seed: int, data: dict[str, Any], calculator, cache: labels.Cache, sizes: Sizes, cache_dir: Path, command: str
) -> dict[str, Any]:
    """Train, run both arms through the funnel and relax their selections; the result is cached per seed."""

    def compute() -> dict[str, Any]:
        model, training = train_model(data['records'], sizes, seed, cache_dir)
        labels.log(f'seed {seed}: model {model} ({training.get("seconds", 0):.0f} s of training)')
        result: dict[str, Any] = {'seed': seed, 'command': command, 'training': training}
        for arm in ('gan', 'random'):
            run = funnel(arm, model, data, sizes, seed)
            labels.log(
                f'seed {seed} {arm}: screening {run["screening_counts"]}; selected '
                f'{ {f: len(c["selection"].structures) for f, c in run["compositions"].items()} }'
            )
            tick = time.perf_counter()
            scored = relax_and_score(arm, run, data, calculator, cache, sizes)
            result[arm] = {
                **scored,
                'screening_counts': run['screening_counts'],
                'seconds': {**run['seconds'], 'relaxations': time.perf_counter() - tick},
            }
            labels.log(f'seed {seed} {arm}: {json.dumps(scored["metrics"])}; rediscovered {scored["rediscovered"]}')
        return result

    # the key holds the model's config, so that a changed default of GanConfig is not answered from an older run
    fields = {name: value for name, value in asdict(sizes).items() if name not in ('funnel', 'gan') or value}
    key = labels.Cache.key('leave_phases_out_seed', seed, fields, model_config(sizes, seed).to_dict())
    return cache.get(key, compute)


# ------------------------------------------------------------------------------------------------- report


def mean_std(values: Sequence[float | None], percent: bool = False, digits: int = 3) -> str:
    """``mean ± std`` (sample standard deviation over seeds), ``n/a`` without values."""
    finite = [100 * v if percent else v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 'n/a'
    digits = 1 if percent else digits
    spread = f' ± {np.std(finite, ddof=1):.{digits}f}' if len(finite) > 1 else ''
    return f'{np.mean(finite):.{digits}f}{spread}{"%" if percent else ""}'


def recovery_text(runs: list[dict[str, Any]], arm: str, phase: int, n: int) -> str:
    """Seeds in which ``phase`` was among the first ``n`` selected candidates, e.g. ``2/2``; ``n/m`` when unmeasured."""
    values = []
    for run in runs:
        for composition in run[arm]['compositions'].values():
            if str(phase) in composition['recovery_at']:
                values.append(composition['recovery_at'][str(phase)][str(n)])
    if not values or any(v is None for v in values):
        return f'not measured (< {n} relaxed)'
    return f'{sum(values)}/{len(values)}'


def targeted(runs: list[dict[str, Any]], phase: int) -> bool:
    """Whether a target cell of the runs can hold the held-out ``phase`` (its recovery was looked for)."""
    return any(str(phase) in c['recovery_at'] for run in runs for c in run['gan']['compositions'].values())


def assess(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: what was required, what was measured, met (True), missed (False) or not attempted
    (None)."""
    runs = report['runs']
    rows = []
    for label, phases in (
        ('rutile NbO2 recovered in every seed', (RUTILE,)),
        ('a Nb2O5 polymorph (B or R) recovered in every seed', NB2O5_PHASES),
    ):
        hits = [any(p in run['gan']['rediscovered'] for p in phases) for run in runs]
        if any(targeted(runs, phase) for phase in phases):
            measured, met = f'{sum(hits)} of {len(hits)} seeds', all(hits) and bool(hits)
        else:
            measured, met = 'no target cell holds it', None
        rows.append({'target': f'GAN: {label}', 'required': 'every seed', 'measured': measured, 'met': met})
    gan = [run['gan']['metrics'].get('sun_rate') or 0.0 for run in runs]
    rnd = [run['random']['metrics'].get('sun_rate') or 0.0 for run in runs]
    gan_mean, rnd_mean = float(np.mean(gan)), float(np.mean(rnd))
    if rnd_mean > 0:
        ratio = gan_mean / rnd_mean
        measured, met = f'{ratio:.2f}x (GAN {100 * gan_mean:.1f}%, random {100 * rnd_mean:.1f}%)', ratio >= 3.0
    else:
        bound = 1 / sum(run['random']['n_relaxed'] for run in runs)
        measured = (
            f'random found none (GAN {100 * gan_mean:.1f}%, random 0 of '
            f'{sum(run["random"]["n_relaxed"] for run in runs)}: its rate is below ~{100 * bound:.1f}%, the ratio '
            'is unbounded)'
        )
        met = gan_mean > 0
    rows.append({'target': 'S.U.N. rate >= 3x random', 'required': '>= 3.0x', 'measured': measured, 'met': met})
    within = [run['gan']['metrics']['within_0.1_of_relaxed'] or 0.0 for run in runs]
    rows.append(
        {
            'target': "GAN's relaxed candidates within 0.1 eV/atom of the hull",
            'required': '>= 40%',
            'measured': mean_std(within, percent=True),
            'met': float(np.mean(within)) >= TARGETS_IN_ISSUE['gan_within_0.1'],
        }
    )
    per_method = min(sum(run[arm]['n_relaxed'] for run in runs) for arm in ('gan', 'random'))
    rows.append(
        {
            'target': 'size: >= 100 relaxations per method, >= 3 seeds',
            'required': '>= 100, >= 3',
            'measured': f'{per_method} per method, {len(runs)} seeds',
            'met': per_method >= TARGETS_IN_ISSUE['relaxations_per_method'] and len(runs) >= TARGETS_IN_ISSUE['seeds'],
        }
    )
    return rows


def cost_estimate(report: dict[str, Any]) -> dict[str, Any]:
    """Measured cost of the candidate relaxations and the issue's full size extrapolated from it.

    The full size is 3 seeds x 2 methods x 1000 relaxations per held-out composition (so that recovery@1000 is
    measured after relaxation), each cell of a composition's default targets equally likely; a relaxation costs the
    measured seconds per FIRE step and atom times its atoms times the measured mean steps (low estimate) or the
    stability protocol's step cap (high estimate).
    """
    rows = [row for run in report['runs'] for arm in ('gan', 'random') for row in run[arm]['relaxations']]
    timed = [row for row in rows if row.get('steps')]
    if not timed:
        return {}
    per_step_atom = float(np.mean([row['seconds'] / (row['steps'] * row['num_atoms']) for row in timed]))
    mean_steps = float(np.mean([row['steps'] for row in timed]))
    atoms: dict[str, list[int]] = {}
    for key in DEFAULT_TARGETS:
        target = parse_target(key)
        atoms.setdefault(target['composition'], []).append(
            target['formula_units'] * int(sum(Composition(target['composition']).values()))
        )
    atom_relaxations = sum(1000 * float(np.mean(values)) for values in atoms.values()) * 3 * 2
    return {
        'relaxations': len(rows),
        'mean_seconds_per_relaxation': float(np.mean([row['seconds'] for row in rows])),
        'seconds_per_step_and_atom': per_step_atom,
        'mean_steps': mean_steps,
        'full_size_relaxations': 3 * 2 * 1000 * len(atoms),
        'full_size_hours_low': atom_relaxations * per_step_atom * mean_steps / 3600,
        'full_size_hours_high': atom_relaxations * per_step_atom * DEFAULT_RELAX_STEPS / 3600,
    }


def engine_steps(method: dict[str, Any]) -> int:
    """FIRE steps of one method's short and full relaxations (reports before the cheap pass count only the full)."""
    return method.get('engine_steps', sum(row.get('steps') or 0 for row in method['relaxations']))


def funnel_text(sizes: dict[str, Any]) -> str:
    """How the selected candidates were relaxed: with or without the cheap pass."""
    full = f'CHGNet (fmax {sizes["relax_fmax"]} eV/Å, at most {sizes["relax_steps"]} FIRE steps, cell relaxed)'
    if not sizes.get('cheap_pass'):
        return f'{sizes["relaxations"]} are selected; every selected candidate is relaxed with {full}.'
    return (
        f'{sizes["cheap_pass"]} are selected; cheap pass of the generation protocol on each (a short relaxation: fmax '
        f'{sizes["cheap_fmax"]} eV/Å, at most {sizes["cheap_steps"]} FIRE steps, cell relaxed); lowest energy first, '
        'a candidate that the cheap pass brought to the same structure as a lower one is skipped '
        f'(`StructureMatcher` defaults) until {sizes["relaxations"]} are kept, and each kept one is relaxed from '
        f'its cheap-pass structure with {full}. "Relaxations" below are these full ones.'
    )


def overrides_lines(sizes: dict[str, Any]) -> list[str]:
    """The ``--funnel`` and ``--gan`` overrides as lines of the setup (none without any)."""
    lines = []
    for key, source in (
        ('funnel', 'the generation protocol (both arms)'),
        ('gan', "the training protocol's GanConfig"),
    ):
        if changed := sizes.get(key):
            settings = ', '.join(f'`{name}` = {value:g}' for name, value in changed)
            lines.append(f'- Changed from {source} for this run: {settings}.')
    return lines


def walk_relaxations(method: dict[str, Any]) -> int:
    """Relaxations of one method's recovery walks (beyond those of the metrics), all compositions."""
    return sum(len(c.get('recovery_walk', {}).get('relaxations', [])) for c in method['compositions'].values())


def walk_ranks(composition: dict[str, Any]) -> list[str]:
    """``name #rank (recovery walk)`` of each phase that a composition's recovery walk rediscovered."""
    first = composition.get('recovery_walk', {}).get('first', {})
    return [
        f'{NAMED_PHASES[int(phase)].split(" (")[0]} #{found["rank"]} (recovery walk)'
        for phase, found in first.items()
        if found['examined'] is not None
    ]


def converged_fraction(method: dict[str, Any]) -> float | None:
    rows = method['relaxations']
    return float(np.mean([bool(row.get('converged')) for row in rows])) if rows else None


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The human-readable report: setup, per-method table (mean ± std over seeds), per seed, targets, cost."""
    runs, sizes = report['runs'], report['sizes']
    entries = report['data']
    validation = sizes.get('validation', [])
    named = {} if validation else NAMED_PHASES  # a validation run generates none of the test split's phases
    *others, last = [*HELD_OUT_FORMULAS, *validation]
    held_text = f'{", ".join(others)} and {last}'
    title = (
        f'# Leave-phases-out, validation split: {" and ".join(validation)} held out as well and generated'
        if validation
        else '# Leave-phases-out: rediscovering NbO2 and Nb2O5'
    )
    lines = [
        title
        + ' (Nb-O, CHGNet'
        + (', with the cheap pass)' if sizes.get('cheap_pass') else ')')
        + (' (quick smoke run)' if report['quick'] else ''),
        '',
        f'Produced by `{report["command"]}` on {report["date"]} ({report["machine"]}). '
        f'Wall time of this call {report["total_seconds"] / 60:.1f} min; a seed that an earlier call computed comes '
        'from the cache. Each seed was computed by:',
        '',
    ]
    for run in runs:
        lines.append(f'- seed {run["seed"]}: `{run.get("command", report["command"])}`')
    lines += [
        '',
        'where `$OQMD_NB_O` is the folder of the OQMD Nb-O entries (`entries.csv` and `cif/`).',
        '',
        '## What was run',
        '',
        f'- Data: {entries["oqmd_entries"]} OQMD Nb-O entries (CC BY 4.0; volume <= {labels.MAX_VOLUME_PER_ATOM} '
        f'Å^3/atom), each relaxed with CHGNet by the MLIP runner (FIRE + Frechet cell filter, fmax '
        f'{sizes["relax_fmax"]} eV/Å, at most {sizes["reference_relax_steps"]} steps), plus CHGNet-relaxed bcc Nb and '
        f'an alpha-O2-type molecular crystal. **Held out**: all {entries["held_out"]} '
        f'{held_text} entries ({", ".join(entries["held_out_ids"])}), from the '
        'training data and from the references of the funnel.'
        + (
            f' A validation run: the candidates are of {", ".join(validation)} only; NbO2 and Nb2O5 (the test split) '
            "are not generated, and the issue's targets are not judged here."
            if validation
            else ''
        ),
        f'- Training data: {entries["training_records"]} records of the {entries["kept"]} kept entries (relaxed '
        'structure = `minimum`, OQMD geometry with CHGNet energy and forces = `labelled`, i.e. the first frame of the '
        f'relaxation trajectory); compositions {", ".join(entries["training_formulas"])}. No MD frames.',
        f"- GAN: the `{sizes['protocol']}` training protocol's `GanConfig` with steps={sizes['train_steps']}, "
        f"n_max={sizes['n_max']}, seed = the run's seed; trained on the CPU with one thread.",
        f'- Candidates per seed: {sizes["candidates"]} (GAN, `gan.generate`) and {sizes["random_candidates"]} '
        "(random arm: PyXtal through `gan.generation.random_records`, the campaign's random control) per target "
        f'{", ".join(sizes["targets"])}; both arms screened by the trained model (`gan.screening.screen`, the '
        f"`{sizes['protocol']}` generation protocol's criteria).",
        '- Funnel: per composition, the survivors ranked by predicted energy above the hull of the kept references and '
        'post-processed best first by `analysis.screening.select_ranked` (protocol post-processing, drop matches of '
        f'training structures and duplicates, at most 4x examined per selected) until {funnel_text(sizes)}',
        *overrides_lines(sizes),
        '- Scoring hull: every OQMD entry (held-out ones included) and the elements, relaxed as above. On the hull: '
        f'{", ".join(report["hull_phases"])}.',
        '- Metrics: fraction of relaxations within 0.1 eV/atom of the scoring hull (failed relaxations count as not '
        'within); S.U.N. rate = stable, unique and novel (against the training set) over relaxations '
        '(`compute_metrics`); a held-out phase is rediscovered by a relaxed candidate that matches its relaxed '
        'structure (`StructureMatcher` defaults of the product) within 0.01 eV/atom; recovery@N: rediscovered by '
        'one of the first N selected candidates of its composition.',
        '',
        '### How this differs from a campaign',
        '',
        'The stages run as Python calls of the same functions, not as AiiDA processes. No MD sampling, quench or '
        'phonon checks: the training set is the kept OQMD phases only. The funnel selects the same number per '
        "composition (the campaign's compositions take turns until M are selected)"
        + (
            ' and ranks the cheap pass per composition (the campaign ranks all compositions together), so both arms '
            'get exactly the same number of short and full relaxations per composition.'
            if sizes.get('cheap_pass')
            else ' and skips the cheap pass: every selected candidate is fully relaxed, so both arms get exactly the '
            'same number of relaxations per composition.'
        )
        + ' No phonon check of the candidates (S.U.N. uses the energy above the hull only).',
        '',
        '## Results per method',
        '',
        f'{len(runs)} seed(s) ({", ".join(str(run["seed"]) for run in runs)}); mean ± standard deviation over seeds. '
        'Both methods had the same number of relaxations per composition.',
        '',
        '| quantity | GAN | random (PyXtal) |',
        '|---|---|---|',
    ]

    def both(get, percent: bool = False, digits: int = 3) -> str:
        return ' | '.join(mean_std([get(run[arm]) for run in runs], percent, digits) for arm in ('gan', 'random'))

    walked = any(walk_relaxations(run[arm]) for run in runs for arm in ('gan', 'random'))
    lines += [
        f'| relaxations per seed | {both(lambda m: m["n_relaxed"], digits=0)} |',
        *(
            [
                '| recovery walk: further relaxations per seed (not in the rows below) | '
                f'{both(walk_relaxations, digits=0)} |'
            ]
            if walked
            else []
        ),
        f'| cheap-pass short relaxations per seed | {both(lambda m: m.get("n_short_relaxations", 0), digits=0)} |',
        f'| FIRE steps per seed (cheap pass and full relaxations) | {both(engine_steps, digits=0)} |',
        f'| within 0.1 eV/atom of the hull | {both(lambda m: m["metrics"]["within_0.1_of_relaxed"], True)} |',
        f'| S.U.N. rate (per relaxation) | {both(lambda m: m["metrics"].get("sun_rate"), True)} |',
        f'| S.U.N. structures per seed | {both(lambda m: m["metrics"].get("n_sun"), digits=1)} |',
        f'| median E above hull (eV/atom) | {both(lambda m: m["metrics"].get("median_energy_above_hull"))} |',
        f'| uniqueness after relaxation | {both(lambda m: m["metrics"].get("uniqueness"), True)} |',
        f'| novelty after relaxation | {both(lambda m: m["metrics"].get("novelty"), True)} |',
        f'| relaxations converged | {both(converged_fraction, True)} |',
    ]
    for phase, name in named.items():
        cells = []
        for arm in ('gan', 'random'):
            hits = sum(phase in run[arm]['rediscovered'] for run in runs)
            cells.append(
                f'{hits}/{len(runs)} seeds' if targeted(runs, phase) else 'not attempted (its cell is not a target)'
            )
        lines.append(f'| {name} recovered | {cells[0]} | {cells[1]} |')
    for n in sizes['recovery_at']:
        for phase, name in named.items():
            if not any(str(phase) in c['recovery_at'] for run in runs for c in run['gan']['compositions'].values()):
                continue
            lines.append(
                f'| recovery@{n}: {name} | {recovery_text(runs, "gan", phase, n)} | '
                f'{recovery_text(runs, "random", phase, n)} |'
            )
    for n in sizes['recovery_at']:
        for phase, name in named.items():
            cells = []
            for arm in ('gan', 'random'):
                positions = [
                    c['first_unrelaxed_match_position'].get(str(phase))
                    for run in runs
                    for c in run[arm]['compositions'].values()
                    if str(phase) in c['first_unrelaxed_match_position']
                ]
                if not positions:
                    break
                screened = [
                    c['screened']
                    for run in runs
                    for c in run[arm]['compositions'].values()
                    if str(phase) in c['first_unrelaxed_match_position']
                ]
                hits = sum(p is not None and p <= n for p in positions)
                short = '' if min(screened) >= n else f' (only {min(screened)} screened)'
                cells.append(f'{hits}/{len(positions)}{short}')
            if len(cells) == 2:
                lines.append(f'| proxy, unrelaxed match among first {n} screened: {name} | {cells[0]} | {cells[1]} |')
    if named:
        lines += [
            '',
            'Recovery@N counts seeds in which the phase was rediscovered (after relaxation) by one of the first N '
            'selected candidates of its composition; "not measured" where fewer than N were relaxed.'
            + (
                f' For N above the {sizes["relaxations"]} relaxations of the metrics, a recovery walk went on down the '
                "composition's ranked list (the same greedy post-processing, whose first selections do not depend on "
                'how many are taken) and relaxed the next selected candidates in order until the phase was '
                'rediscovered or N were selected (or 4N examined): that measures recovery@N exactly, at the cost of '
                'the relaxations up to the first rediscovery only. Its relaxations count in no other row.'
                if walked
                else ''
            )
            + ' The proxy rows '
            "are not the issue's metric: they ask whether an *unrelaxed* candidate among the first N that passed the "
            'fast filters already matches the phase (CDVAE tolerances ltol 0.3, stol 0.5, angle 10°), which costs no '
            'relaxation.',
            '',
        ]
    if report['assessment']:
        lines += ['## Targets of the issue', '', '| target | required | measured | met |', '|---|---|---|---|']
    for row in report['assessment']:
        lines.append(f'| {row["target"]} | {row["required"]} | {row["measured"]} | {VERDICTS[row["met"]]} |')
    lines += [
        '',
        '## Per seed',
        '',
        '| seed | method | relaxations | within 0.1 eV/atom | S.U.N. | rediscovered (rank among selected) | '
        'training s |',
        '|---|---|---|---|---|---|---|',
    ]
    for run in runs:
        for arm in ('gan', 'random'):
            method = run[arm]
            ranks = [
                f'{NAMED_PHASES[int(p)].split(" (")[0]} #{rank}'
                for c in method['compositions'].values()
                for p, rank in c['first_rediscovery_rank'].items()
                if rank is not None
            ] + [text for c in method['compositions'].values() for text in walk_ranks(c)]
            lines.append(
                f'| {run["seed"]} | {arm} | {method["n_relaxed"]} | '
                f'{mean_std([method["metrics"]["within_0.1_of_relaxed"]], True)} | '
                f'{method["metrics"].get("n_sun")} ({mean_std([method["metrics"].get("sun_rate")], True)}) | '
                f'{", ".join(ranks) or "none"} | {run["training"].get("seconds", 0):.0f} |'
            )
    lines += [
        '',
        '## Funnel counts (per seed and method)',
        '',
        '| seed | method | screening | selection per composition |',
        '|---|---|---|---|',
    ]
    for run in runs:
        for arm in ('gan', 'random'):
            selection = {f: c['selection_counts'] for f, c in run[arm]['compositions'].items()}
            lines.append(
                f'| {run["seed"]} | {arm} | {json.dumps(run[arm]["screening_counts"])} | {json.dumps(selection)} |'
            )
    cost = report['cost']
    if cost:
        lines += [
            '',
            '## Cost',
            '',
            f'{cost["relaxations"]} candidate relaxations took {cost["mean_seconds_per_relaxation"]:.1f} s on average '
            f'({cost["mean_steps"]:.0f} FIRE steps, {1000 * cost["seconds_per_step_and_atom"]:.1f} ms per step and '
            "atom; one thread on two cores shared with other jobs). The issue's full size, 3 seeds x 2 methods x 1000 "
            f'relaxations per held-out composition ({cost["full_size_relaxations"]} relaxations of the cells of '
            f'{", ".join(DEFAULT_TARGETS)}), would take about {fmt_hours(cost["full_size_hours_low"])} at the '
            f"measured mean steps and up to {fmt_hours(cost['full_size_hours_high'])} at the stability protocol's "
            f"{DEFAULT_RELAX_STEPS}-step cap, on one such core, plus the training of 3 models at the protocol's "
            'steps.'
            + (
                f' The recovery walks measured recovery@{max(sizes["recovery_at"])} with '
                f'{sum(walk_relaxations(run[arm]) for run in runs for arm in ("gan", "random"))} further relaxations '
                'in all: they stop at the first rediscovery.'
                if walked
                else ''
            ),
            '',
        ]
    if report.get('discussion'):
        lines += [report['discussion'].strip(), '']
    path.write_text('\n'.join(lines))


def fmt_hours(hours: float | None) -> str:
    if hours is None:
        return 'n/a'
    return f'{hours:.0f} h ({hours / 24:.1f} days)'


# ------------------------------------------------------------------------------------------------- main

DEFAULT_RELAX_STEPS = 500  # the stability protocol's `balanced` max_steps; checked against the YAML in `make_sizes`


def file_stem(name: str) -> str:
    """A report name: a plain file name, so that the report lands in ``--output-dir`` and nowhere else."""
    if not name or name in ('.', '..') or Path(name).name != name or '\\' in name:
        raise argparse.ArgumentTypeError(f'{name!r} is not a plain file name (no folders, no path separators)')
    return name


#: The numbers of the generation protocol's ``screening`` and ``postprocess`` sections and of its cheap pass's engine
#: parameters that ``--funnel`` may set.
FUNNEL_NUMBERS = (
    *(f'screening.{name}' for name in ('duplicate_tolerance', 'min_distance')),
    *(
        f'postprocess.{name}'
        for name in ('symprec', 'angle_tolerance', 'merge_distance', 'ltol', 'stol', 'match_angle_tol')
    ),
    'cheap_pass.fmax',
    'cheap_pass.max_steps',
)


def counting_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f'{text!r}: must be at least {minimum}')
        return number

    return parse


positive_int, non_negative_int = counting_number(1), counting_number(0)


def positive_number(text: str) -> float:
    """A positive number (an argparse type)."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f'{text!r}: must be positive')
    return number


#: ``GanConfig`` fields that other options set, so that ``--gan`` may not.
GAN_FIELDS_SET_ELSEWHERE = ('steps', 'n_max', 'seed')


def gan_override(text: str) -> tuple[str, float]:
    """``FIELD=VALUE`` of ``--gan``: a number for a ``GanConfig`` field (checked by ``GanConfig`` in ``make_sizes``)."""
    name, _, value = text.partition('=')
    if name in GAN_FIELDS_SET_ELSEWHERE:
        raise argparse.ArgumentTypeError(f'{name!r} is set by --train-steps, --n-max or --seeds, not --gan')
    try:
        number = int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r}: give FIELD=NUMBER') from None
    return name, number


def funnel_override(text: str) -> tuple[str, float]:
    """``SECTION.FIELD=VALUE`` of ``--funnel``: one of ``FUNNEL_NUMBERS`` and a positive number (an integer for
    ``cheap_pass.max_steps``)."""
    name, _, value = text.partition('=')
    if name not in FUNNEL_NUMBERS:
        raise argparse.ArgumentTypeError(f'{name!r} is not one of {", ".join(FUNNEL_NUMBERS)}')
    if name == 'cheap_pass.max_steps':
        return name, positive_int(value)
    return name, positive_number(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--data-dir', type=Path, required=True, help='folder of the OQMD Nb-O entries (entries.csv and cif/)'
    )
    parser.add_argument('--output-dir', type=Path, default=REPO / 'docs' / 'benchmarks')
    parser.add_argument('--cache-dir', type=Path, default=DEFAULT_CACHE, help='CHGNet results, models, seed results')
    parser.add_argument('--protocol', default='balanced', help='protocol of training, generation and stability')
    parser.add_argument('--seeds', type=non_negative_int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--targets', nargs='+', default=list(DEFAULT_TARGETS), help='held-out composition x units')
    parser.add_argument(
        '--candidates', type=positive_int, default=None, help='GAN candidates per target (protocol default)'
    )
    parser.add_argument(
        '--random-candidates', type=positive_int, default=None, help='random candidates per target (same)'
    )
    parser.add_argument(
        '--relaxations', type=positive_int, default=1000, help='relaxations per composition, method and seed'
    )
    parser.add_argument(
        '--cheap-pass',
        type=non_negative_int,
        default=0,
        metavar='M',
        help="candidates per composition, method and seed that get the generation protocol's cheap pass (a short "
        'relaxation), of which the --relaxations lowest distinct ones are relaxed in full (default 0: no cheap pass, '
        'the selected candidates are relaxed in full)',
    )
    parser.add_argument(
        '--validation',
        nargs='+',
        default=[],
        metavar='FORMULA',
        help='a validation run: hold these compositions out as well (e.g. Nb2O3) and generate for them only (--targets '
        'of these compositions), to choose settings such as the cheap pass without looking at NbO2 and Nb2O5',
    )
    parser.add_argument(
        '--recovery-at',
        type=positive_int,
        nargs='+',
        default=[100, 1000],
        metavar='N',
        help='recovery@N to measure; an N above --relaxations is measured by a recovery walk down the ranked list '
        '(without --cheap-pass)',
    )
    parser.add_argument('--train-steps', type=positive_int, default=None, help='GAN training steps (protocol default)')
    parser.add_argument('--train-seconds', type=positive_number, default=None, help='wall-clock cap of each training')
    parser.add_argument('--n-max', type=positive_int, default=None, help='GAN n_max (protocol default)')
    parser.add_argument(
        '--relax-steps', type=positive_int, default=None, help='FIRE steps of a candidate (protocol default)'
    )
    parser.add_argument(
        '--reference-relax-steps', type=positive_int, default=None, help='FIRE steps of a reference phase'
    )
    parser.add_argument('--discussion', type=Path, default=None, help='hand-written discussion to append')
    parser.add_argument(
        '--report-name',
        type=file_stem,
        default=None,
        help='file name (no suffix) of the report, for a variant run beside the standard ones (default '
        'leave_phases_out, or leave_phases_out_validation with --validation)',
    )
    overrides = (
        (
            '--funnel',
            funnel_override,
            'SECTION.FIELD=VALUE',
            "override a number of the generation protocol's funnel for both arms, e.g. "
            'screening.duplicate_tolerance=0.05 or postprocess.symprec=0.3 (to try a setting on the validation split); '
            f'fields: {", ".join(FUNNEL_NUMBERS)}',
        ),
        (
            '--gan',
            gan_override,
            'FIELD=NUMBER',
            "override a number of the training protocol's GanConfig, e.g. angular_order=2 (to try a setting of the "
            'generator or critic on the validation split)',
        ),
    )
    for flag, parse, metavar, text in overrides:
        parser.add_argument(flag, nargs='+', action='extend', type=parse, default=[], metavar=metavar, help=text)
    parser.add_argument('--quick', action='store_true', help='smoke run: tiny sizes, 1 seed')
    return parser.parse_args(argv)


def report_name(args: argparse.Namespace) -> str:
    """The report's file name without suffix: ``--report-name``, else by the kind of run."""
    if args.report_name:
        return args.report_name
    return 'leave_phases_out_validation' if args.validation else 'leave_phases_out'


def make_sizes(args: argparse.Namespace) -> Sizes:
    """The run's sizes: the protocols' values unless given (``--quick``: a smoke run)."""
    from aiida_crystalgan.workflows.generation import GenerationWorkChain
    from aiida_crystalgan.workflows.stability import StabilityWorkChain
    from aiida_crystalgan.workflows.training import TrainingWorkChain

    relax = StabilityWorkChain.get_protocol_inputs(args.protocol)['relax']
    if args.protocol == 'balanced' and relax['max_steps'] != DEFAULT_RELAX_STEPS:
        raise SystemExit(f'the stability protocol now has max_steps {relax["max_steps"]}: update DEFAULT_RELAX_STEPS')
    config = TrainingWorkChain.get_protocol_inputs(args.protocol)['config']
    generation = GenerationWorkChain.get_protocol_inputs(args.protocol)
    candidates = args.candidates or generation['num_per_target']
    funnel_overrides = funnel_settings(args.funnel)
    cheap_overrides = sections(funnel_overrides, 'cheap_pass')
    if cheap_overrides and not args.cheap_pass:
        raise SystemExit('--funnel cheap_pass.* needs --cheap-pass: without it no candidate gets the cheap pass')
    cheap = {**generation['cheap_pass']['parameters'], **cheap_overrides}
    if args.cheap_pass and args.cheap_pass < args.relaxations:
        raise SystemExit(f'--cheap-pass ({args.cheap_pass}) must be at least --relaxations ({args.relaxations})')
    validation = validation_split(args.validation, args.targets)
    if args.quick:
        args.seeds = args.seeds[:1]
    return Sizes(
        targets=tuple(args.targets),
        candidates=20 if args.quick else candidates,
        random_candidates=10 if args.quick else args.random_candidates or candidates,
        relaxations=1 if args.quick else args.relaxations,
        recovery_at=(1, 10) if args.quick else tuple(args.recovery_at),
        train_steps=10 if args.quick else args.train_steps or config['steps'],
        train_seconds=args.train_seconds,
        n_max=args.n_max or config['n_max'],
        relax_fmax=relax['fmax'],
        relax_steps=10 if args.quick else args.relax_steps or relax['max_steps'],
        reference_relax_steps=args.reference_relax_steps or relax['max_steps'],
        protocol=args.protocol,
        cheap_pass=(2 if args.quick else args.cheap_pass) if args.cheap_pass else 0,
        cheap_fmax=cheap['fmax'] if args.cheap_pass else 0.0,
        cheap_steps=cheap['max_steps'] if args.cheap_pass else 0,
        validation=validation,
        funnel=funnel_overrides,
        gan=gan_settings(args.gan),
    )


def sorted_settings(option: str, overrides: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """The overrides of ``option``, sorted; ``SystemExit`` when a field is given twice."""
    names = [name for name, _ in overrides]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SystemExit(f'{option}: {", ".join(repeated)} given more than once')
    return tuple(sorted(overrides))


def gan_settings(overrides: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """The ``--gan`` overrides, sorted; ``SystemExit`` when a field is given twice or ``GanConfig`` refuses one."""
    from aiida_crystalgan.gan import GanConfig

    settings = sorted_settings('--gan', overrides)
    try:
        GanConfig.from_dict(dict(settings))
    except ValueError as exception:
        raise SystemExit(f'--gan: {exception}') from exception
    return settings


def funnel_settings(overrides: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """The ``--funnel`` overrides, sorted; ``SystemExit`` when a field is given twice."""
    return sorted_settings('--funnel', overrides)


def validation_split(formulas: Sequence[str], targets: Sequence[str]) -> tuple[str, ...]:
    """The reduced ``--validation`` formulas; ``SystemExit`` when one is a test composition (NbO2, Nb2O5) or does not
    parse, or when a target is not of a validation composition (a validation run never generates for the test split).
    """
    try:
        validation = tuple(sorted({Composition(formula).reduced_formula for formula in formulas}))
        target_formulas = {Composition(parse_target(key)['composition']).reduced_formula for key in targets}
    except ValueError as exception:
        raise SystemExit(f'--validation / --targets: {exception}') from exception
    if set(validation) & set(HELD_OUT_FORMULAS):
        raise SystemExit(f'--validation: {", ".join(HELD_OUT_FORMULAS)} are the test split, not a validation one')
    if validation and not target_formulas <= set(validation):
        raise SystemExit(
            f'--validation {" ".join(validation)}: give --targets of these compositions only (got {" ".join(targets)})'
        )
    return validation


#: Options that say where a report goes or what text it gets, not how the run was made: left out of its command.
NOT_SETTINGS = ('--discussion', '--output-dir')


def public_command(argv: list[str]) -> str:
    """The shell-quoted arguments with the data folder written as ``$OQMD_NB_O`` (a report names the data, not a
    local path) and without ``NOT_SETTINGS`` (``--discussion``, ``--output-dir``)."""
    public = []
    for position, argument in enumerate(argv):
        previous = argv[position - 1] if position else ''
        if argument in NOT_SETTINGS or previous in NOT_SETTINGS or argument.partition('=')[0] in NOT_SETTINGS:
            continue
        if previous == '--data-dir':
            public.append('"$OQMD_NB_O"')
        elif argument.startswith('--data-dir='):
            public.append('--data-dir="$OQMD_NB_O"')
        else:
            public.append(shlex.quote(argument))
    return ' '.join(public)


def data_folder(data_dir: Path, benchmark: str) -> Path | None:
    """The OQMD Nb-O folder, with torch on one thread and warnings off; None (and a message) when it is absent."""
    folder = data_dir.resolve()
    if not (folder / 'entries.csv').is_file():
        print(f'{benchmark}: {folder} has no entries.csv (the OQMD Nb-O entries): nothing to do.')
        return None
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings('ignore')
    return folder


def split_replay_arguments(argv: list[str], script: str) -> tuple[list[str], list[str]]:
    """A replay script's own arguments (before ``--``) and those of the leave-phases-out run it replays (after);
    ``--help`` alone asks for the script's own help."""
    if '--' in argv:
        return argv[: argv.index('--')], argv[argv.index('--') + 1 :]
    if {'-h', '--help'} & set(argv):
        return argv, []
    raise SystemExit(f'{script}: give the leave_phases_out.py arguments after `--`')


def replay_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a replay script's own arguments (described by the first paragraph of ``doc``), with the report's
    ``--output-dir`` and ``--discussion`` (the names ``public_command`` leaves out)."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    parser.add_argument('--output-dir', type=Path, default=REPO / 'docs' / 'benchmarks')
    parser.add_argument('--discussion', type=Path, default=None, help='hand-written discussion to append')
    return parser


@dataclass
class ReplayedRun:
    """What a replay script needs of a finished run: its arguments, sizes, CHGNet cache and calculator, and data."""

    args: argparse.Namespace
    sizes: Sizes
    cache: labels.Cache
    calculator: Any
    data: dict[str, Any]


def replayed_run(args: argparse.Namespace, script: str) -> ReplayedRun | None:
    """The run of these leave-phases-out arguments, read back from its cache; None (and a message) without data."""
    folder = data_folder(args.data_dir, script)
    if folder is None:
        return None
    sizes = make_sizes(args)
    cache = labels.Cache(args.cache_dir / 'chgnet')
    calculator = labels.chgnet()
    return ReplayedRun(args, sizes, cache, calculator, prepare_data(folder, calculator, cache, sizes))


def save_report(
    report: dict[str, Any],
    args: argparse.Namespace,
    name: str,
    write: Callable[[dict[str, Any], Path], None],
    quick: bool,
) -> None:
    """Add the hand-written ``--discussion`` and write ``<name>.json`` and ``<name>.md`` (``<name>_quick`` when the
    run, or the run replayed, is a ``--quick`` smoke run) under ``--output-dir``."""
    if args.discussion:
        report['discussion'] = args.discussion.read_text()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = f'{name}_quick' if quick else name
    (args.output_dir / f'{stem}.json').write_text(json.dumps(report, indent=1, default=float) + '\n')
    write(report, args.output_dir / f'{stem}.md')


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = data_folder(args.data_dir, 'leave_phases_out')
    if folder is None:
        return 1
    import torch

    from aiida_crystalgan.analysis.hull import hull_phases

    started = time.perf_counter()
    sizes = make_sizes(args)
    cache = labels.Cache(args.cache_dir / 'chgnet')
    labels.log(f'cache {args.cache_dir}; sizes {sizes}')
    calculator = labels.chgnet()
    data = prepare_data(folder, calculator, cache, sizes)
    labels.log(f'{len(data["records"])} training records from {len(data["kept"])} kept entries')
    command = 'python benchmarks/leave_phases_out.py ' + public_command(sys.argv[1:] if argv is None else list(argv))
    runs = [run_seed(seed, data, calculator, cache, sizes, args.cache_dir, command) for seed in args.seeds]
    held = [e for e in data['entries'] if held_out(e, sizes.validation)]
    report = {
        'command': command,
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'machine': f'{platform.node() or "host"}: {os.cpu_count()} CPU cores shared with other jobs, 1 torch thread, '
        f'Python {platform.python_version()}, torch {torch.__version__}',
        'quick': args.quick,
        'sizes': asdict(sizes),
        'data': {
            'oqmd_entries': len(data['entries']),
            'held_out': len(held),
            'held_out_ids': [f'{e["id"]} {e["formula"]} {e["spacegroup"]}' for e in held],
            'kept': len(data['kept']),
            'training_records': len(data['records']),
            'training_formulas': sorted({e['formula'] for e in data['kept']}),
            'energies_per_atom': {
                f'{e["id"]} {e["formula"]} {e["spacegroup"]}': e['energy'] / len(e['final_structure'])
                for e in data['entries']
            },
        },
        'hull_phases': [phase['name'] for phase in hull_phases(data['scoring_hull'])],
        'runs': runs,
        'total_seconds': time.perf_counter() - started,
    }
    # the issue's targets are judged on the test split: a validation run only informs the choice of settings
    report['assessment'] = [] if sizes.validation else assess(report)
    report['cost'] = cost_estimate(report)
    save_report(report, args, report_name(args), write_markdown, args.quick)
    for row in report['assessment']:
        labels.log(f'{row["target"]}: {row["measured"]} ({VERDICTS[row["met"]].strip("*")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
