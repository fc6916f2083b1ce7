"""Relaxation steps as labelled data: does the physics head predict unseen Nb-O phases better with them?

A campaign adds ``trajectory_frames`` evenly spaced steps of every engine relaxation to its dataset as ``labelled``
records (the relax protocols' default: 5, the starting structure included), beside the relaxed ``minimum``. This
benchmark measures what those steps do to the physics head, the part of the model that guides the generator and ranks
the funnel's candidates, on phases that the model never saw.

Data: the leave-phases-out data (``leave_phases_out.prepare_data``: OQMD Nb-O entries relaxed with CHGNet by the MLIP
runner; every NbO2 and Nb2O5 entry held out). Per seed, two models with identical settings (the training protocol's
``GanConfig`` with ``--train-steps`` and ``--n-max``) are trained on:

* ``without``: the kept entries' relaxed structures (``minimum``) and their OQMD geometries with CHGNet single points
  (``labelled``): the leave-phases-out training set;
* ``with``: the same plus the steps that the MLIP runner keeps of each kept entry's relaxation with the protocol's
  ``trajectory_frames`` (step 0, the OQMD geometry, is not repeated).

Test set (never trained on): every held-out entry with at most ``n_max`` atoms, as its OQMD geometry, ``--test-frames``
steps of its CHGNet relaxation and its relaxed structure, with CHGNet energies and forces. Metrics: the physics head's
energy (eV/atom) and force (eV/Å) mean absolute errors; the energy error split into each composition's mean offset
(what shifts a composition against the others when the funnel ranks them together) and the error left within a
composition; and the Spearman rank correlation between predicted and CHGNet energy per atom within each composition,
over all test structures and over the relaxed phases only (the ordering by which the funnel ranks candidates). Every
CHGNet result and model is cached with leave_phases_out's (same ``--cache-dir``), so the ``without`` models of a
leave-phases-out run with the same settings are reused.

    python benchmarks/relaxation_steps_ablation.py --data-dir DATA/nb-o_oqmd [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _oqmd_chgnet as labels
import leave_phases_out as lpo
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ARMS = ('without', 'with')
METRICS = (
    ('energy_mae_ev_per_atom', 'energy MAE (eV/atom)', 'lower'),
    ('force_mae_ev_per_angstrom', 'force MAE (eV/Å)', 'lower'),
    ('offset_abs_mean', 'mean offset per composition, absolute (eV/atom)', 'lower'),
    ('energy_mae_without_offset', 'energy MAE within a composition, offset removed (eV/atom)', 'lower'),
    ('spearman_all', 'Spearman, predicted vs CHGNet energy, all test structures', 'higher'),
    ('spearman_relaxed', 'Spearman, predicted vs CHGNet energy, relaxed phases', 'higher'),
)


def relaxation_steps(entry: dict[str, Any], calculator, cache: labels.Cache, sizes: lpo.Sizes, frames: int) -> list:
    """``labelled`` records of the steps that the MLIP runner keeps of ``entry``'s relaxation (step 0 left out)."""
    from aiida_crystalgan.io import LABELLED, StructureRecord

    structure = entry['structure']
    params = (sizes.relax_fmax, sizes.reference_relax_steps, frames)
    result = cache.get(
        labels.Cache.key('relax_steps', labels.structure_fingerprint_key(structure), params),
        lambda: labels.relax(structure, calculator, *params[:2], trajectory_frames=frames),
    )
    if 'error' in result:
        return []
    trajectory = result['trajectory']
    return [
        StructureRecord(
            numbers=result['numbers'],
            positions=trajectory['positions'][index],
            cell=trajectory['cells'][index],
            energy=trajectory['energies'][index],
            forces=trajectory['forces'][index],
            source=f'oqmd-{entry["id"]}:step{trajectory["steps"][index]}',
            label=entry['formula'],
            role=LABELLED,
        )
        for index in range(len(trajectory['steps']))
        if trajectory['steps'][index] > 0
    ]


def test_records(held: list[dict[str, Any]], steps: dict[int, list], n_max: int) -> list:
    """Each held-out entry with at most ``n_max`` atoms: OQMD geometry, relaxation steps, relaxed structure."""
    fitting = [entry for entry in held if len(entry['structure']) <= n_max and entry['relaxed'] is not None]
    return [*labels.training_records(fitting), *(record for entry in fitting for record in steps[entry['id']])]


def spearman(predicted: np.ndarray, true: np.ndarray) -> float | None:
    """Spearman rank correlation, ``None`` with fewer than three values or no spread."""
    from scipy.stats import spearmanr

    if len(true) < 3 or np.ptp(true) == 0 or np.ptp(predicted) == 0:
        return None
    return float(spearmanr(predicted, true).statistic)


def score(model_path: Path, records: list) -> dict[str, Any]:
    """The physics head's errors and rank correlations on ``records`` (``minimum`` = relaxed phase)."""
    import torch

    from aiida_crystalgan.gan import GanConfig, load_checkpoint
    from aiida_crystalgan.gan.evaluation import physics_errors
    from aiida_crystalgan.gan.screening import predicted_energy_per_atom
    from aiida_crystalgan.gan.trainer import Trainer
    from aiida_crystalgan.io import MINIMUM

    state = load_checkpoint(model_path)
    trainer = Trainer.from_state(state, GanConfig.from_dict(state['config']), torch.device('cpu'))
    values: dict[str, Any] = dict(physics_errors(trainer, records))
    predicted = predicted_energy_per_atom(trainer.model, records)
    true = np.array([record.energy / record.num_atoms for record in records])
    relaxed = np.array([record.role == MINIMUM for record in records])
    for name, subset in (('spearman_all', np.ones(len(records), bool)), ('spearman_relaxed', relaxed)):
        per_formula = {}
        for formula in sorted({record.label for record in records}):
            rows = subset & np.array([record.label == formula for record in records])
            per_formula[formula] = spearman(predicted[rows], true[rows])
        known = [value for value in per_formula.values() if value is not None]
        values[name] = float(np.mean(known)) if known else None
        values[f'{name}_per_formula'] = per_formula
    error = predicted - true
    formulas = np.array([record.label for record in records])
    offsets = {formula: float(error[formulas == formula].mean()) for formula in sorted(set(formulas))}
    values['offset_per_formula'] = offsets
    values['offset_abs_mean'] = float(np.mean(np.abs(list(offsets.values()))))
    values['energy_mae_without_offset'] = float(
        np.mean(np.abs(error - np.array([offsets[formula] for formula in formulas])))
    )
    values['predicted_minus_chgnet_ev_per_atom'] = {
        record.source: float(p - t) for record, p, t, r in zip(records, predicted, true, relaxed) if r
    }
    return values


def summary_rows(runs: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(quantity, without, with, seeds in which ``with`` is better) per metric."""
    rows = []
    for key, name, better in METRICS:
        pairs = [(run['without'][key], run['with'][key]) for run in runs]
        known = [(a, b) for a, b in pairs if a is not None and b is not None]
        wins = sum((b < a) if better == 'lower' else (b > a) for a, b in known)
        rows.append(
            (
                name,
                lpo.mean_std([a for a, _ in pairs]),
                lpo.mean_std([b for _, b in pairs]),
                f'{wins} of {len(known)} ({better} is better)',
            )
        )
    return rows


def write_markdown(report: dict[str, Any], path: Path) -> None:
    data, runs = report['data'], report['runs']
    lines = [
        '# Relaxation steps as labelled data: the physics head on held-out Nb-O phases (CHGNet)',
        '',
        f'Produced by `{report["command"]}` on {report["date"]} ({report["machine"]}); wall time '
        f'{report["total_seconds"] / 60:.1f} min, `$OQMD_NB_O` being the folder of the OQMD Nb-O entries. Models and '
        "CHGNet results are cached with the leave-phases-out benchmark's.",
        '',
        '## What was run',
        '',
        f'- Training (both arms): {data["kept"]} kept OQMD entries (every NbO2 and Nb2O5 entry held out), relaxed with '
        f'CHGNet (fmax {report["sizes"]["relax_fmax"]} eV/Å, at most {report["sizes"]["reference_relax_steps"]} FIRE '
        f'steps): {data["records_without"]} records without steps (relaxed = `minimum`, OQMD geometry = `labelled`); '
        f'{data["records_with"]} with the relaxation steps that the MLIP runner keeps at `trajectory_frames` = '
        f'{report["train_frames"]} ({data["records_with"] - data["records_without"]} steps, step 0 not repeated).',
        f"- Model: the `{report['sizes']['protocol']}` training protocol's `GanConfig` with steps = "
        f"{report['sizes']['train_steps']}, n_max = {report['sizes']['n_max']}, seed = the run's seed; identical for "
        'both arms except the records.',
        f'- Test set (never trained on): {data["test_entries"]} held-out entries with at most n_max atoms '
        f'({", ".join(data["test_ids"])}), each as its OQMD geometry, at most {report["test_frames"]} steps of its '
        f'CHGNet relaxation and its relaxed structure: {data["test_records"]} structures with CHGNet energies and '
        'forces.',
        "- Metrics: the physics head's mean absolute errors of energy per atom and forces; the energy error split "
        "into each composition's mean offset (absolute, averaged over NbO2 and Nb2O5: what shifts one composition "
        'against another when the funnel ranks them together) and the error left within a composition; Spearman rank '
        'correlation of predicted and CHGNet energy per atom within each composition (mean over NbO2 and Nb2O5), over '
        'all test structures and over the relaxed phases only (the order in which the funnel ranks candidates).',
        '',
        '## Results',
        '',
        f'{len(runs)} seed(s) ({", ".join(str(run["seed"]) for run in runs)}); mean ± standard deviation over seeds.',
        '',
        '| quantity | without steps | with steps | with steps better in |',
        '|---|---|---|---|',
        *(f'| {name} | {a} | {b} | {wins} |' for name, a, b, wins in summary_rows(runs)),
        '',
        '## Per seed',
        '',
        '| seed | arm | records | energy MAE (eV/atom) | force MAE (eV/Å) | Spearman, all (per composition) '
        '| Spearman, relaxed (per composition) | training s |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for run in runs:
        for arm in ARMS:
            values = run[arm]

            def pair(name: str, values: dict[str, Any] = values) -> str:
                per_formula = values[f'{name}_per_formula'].items()
                return ', '.join(f'{f} {"n/a" if v is None else f"{v:.2f}"}' for f, v in per_formula)

            lines.append(
                f'| {run["seed"]} | {arm} | {values["records"]} | {values["energy_mae_ev_per_atom"]:.4f} | '
                f'{values["force_mae_ev_per_angstrom"]:.3f} | {values["spearman_all"]:.3f} ({pair("spearman_all")}) | '
                f'{lpo.mean_std([values["spearman_relaxed"]])} ({pair("spearman_relaxed")}) | '
                f'{values["training_seconds"]:.0f} |'
            )
    if report.get('discussion'):
        lines += ['', '## Discussion', '', report['discussion'].strip()]
    path.write_text('\n'.join(lines) + '\n')


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', type=Path, required=True, help='folder of the OQMD Nb-O entries')
    parser.add_argument('--output-dir', type=Path, default=REPO / 'docs' / 'benchmarks')
    parser.add_argument('--cache-dir', type=Path, default=lpo.DEFAULT_CACHE, help="leave_phases_out's cache")
    parser.add_argument('--protocol', default='balanced', help='protocol of training and relaxation')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--train-steps', type=int, default=None, help='GAN training steps (protocol default)')
    parser.add_argument('--n-max', type=int, default=None, help='GAN n_max (protocol default)')
    parser.add_argument('--train-frames', type=int, default=None, help='steps kept per relaxation (protocol default)')
    parser.add_argument('--test-frames', type=int, default=20, help='steps of a held-out relaxation in the test set')
    parser.add_argument('--discussion', type=Path, default=None, help='hand-written discussion to append')
    parser.add_argument('--quick', action='store_true', help='smoke run: 1 seed, 10 training steps')
    return parser.parse_args(argv)


def make_sizes(args: argparse.Namespace) -> lpo.Sizes:
    """leave_phases_out's sizes that define the data and the models (the rest is unused here)."""
    from aiida_crystalgan.workflows.stability import StabilityWorkChain
    from aiida_crystalgan.workflows.training import TrainingWorkChain

    relax = StabilityWorkChain.get_protocol_inputs(args.protocol)['relax']
    config = TrainingWorkChain.get_protocol_inputs(args.protocol)['config']
    return lpo.Sizes(
        targets=(),
        candidates=0,
        random_candidates=0,
        relaxations=0,
        recovery_at=(),
        train_steps=10 if args.quick else args.train_steps or config['steps'],
        train_seconds=None,
        n_max=args.n_max or config['n_max'],
        relax_fmax=relax['fmax'],
        relax_steps=0,
        reference_relax_steps=relax['max_steps'],
        protocol=args.protocol,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = lpo.data_folder(args.data_dir, 'relaxation_steps_ablation')
    if folder is None:
        return 1
    import torch

    from aiida_crystalgan.calculations.mlip import MlipCalculation

    started = time.perf_counter()
    sizes = make_sizes(args)
    seeds = args.seeds[:1] if args.quick else args.seeds
    train_frames = args.train_frames or MlipCalculation.get_protocol_values('relax')['parameters']['trajectory_frames']
    cache = labels.Cache(args.cache_dir / 'chgnet')
    calculator = labels.chgnet()
    data = lpo.prepare_data(folder, calculator, cache, sizes)
    held = [entry for entry in data['entries'] if lpo.held_out(entry)]
    labels.log(f'relaxation steps of {len(data["kept"])} kept and {len(held)} held-out entries (cached)')
    train_steps = [r for e in data['kept'] for r in relaxation_steps(e, calculator, cache, sizes, train_frames)]
    held_steps = {e['id']: relaxation_steps(e, calculator, cache, sizes, args.test_frames) for e in held}
    tests = test_records(held, held_steps, sizes.n_max)
    records = {'without': data['records'], 'with': [*data['records'], *train_steps]}
    runs = []
    for seed in seeds:
        run: dict[str, Any] = {'seed': seed}
        for arm in ARMS:
            model, stats = lpo.train_model(records[arm], sizes, seed, args.cache_dir)
            run[arm] = {
                **score(model, tests),
                'records': len(records[arm]),
                'model': stats['model'],
                'training_seconds': stats['seconds'],
            }
            labels.log(
                f'seed {seed} {arm}: energy MAE {run[arm]["energy_mae_ev_per_atom"]:.4f} eV/atom, force MAE '
                f'{run[arm]["force_mae_ev_per_angstrom"]:.3f} eV/Å, Spearman {run[arm]["spearman_all"]}'
            )
        runs.append(run)
    test_entries = sorted({record.source.split(':')[0] for record in tests})
    report = {
        'command': 'python benchmarks/relaxation_steps_ablation.py '
        + lpo.public_command(sys.argv[1:] if argv is None else list(argv)),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'machine': f'{platform.node() or "host"}: {os.cpu_count()} CPU cores shared with other jobs, 1 torch thread, '
        f'torch {torch.__version__}',
        'quick': args.quick,
        'sizes': {key: value for key, value in vars(sizes).items() if key in ('train_steps', 'n_max', 'protocol')}
        | {'relax_fmax': sizes.relax_fmax, 'reference_relax_steps': sizes.reference_relax_steps},
        'train_frames': train_frames,
        'test_frames': args.test_frames,
        'data': {
            'kept': len(data['kept']),
            'records_without': len(records['without']),
            'records_with': len(records['with']),
            'test_entries': len(test_entries),
            'test_ids': [
                f'{e["id"]} {e["formula"]} {e["spacegroup"]}' for e in held if f'oqmd-{e["id"]}' in test_entries
            ],
            'test_records': len(tests),
        },
        'runs': runs,
        'total_seconds': time.perf_counter() - started,
    }
    lpo.save_report(report, args, 'relaxation_steps_ablation', write_markdown, args.quick)
    for name, without, with_steps, wins in summary_rows(runs):
        labels.log(f'{name}: without {without}, with {with_steps}; with steps better in {wins}')
    return 0 if all(math.isfinite(run['with']['energy_mae_ev_per_atom']) for run in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
