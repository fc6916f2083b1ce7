"""Ablation of the physics head's guidance: the same GAN trained with and without energy/force guidance on Nb-O.

Data: the OQMD Nb-O CIFs of ``<data-dir>/nb-o_oqmd`` (entries above 25 Å^3/atom dropped), labelled with CHGNet (its
weights ship in the wheel; nothing is downloaded). The CHGNet-relaxed phases are the ``minimum`` records (the critic's
real data) and the hull; the OQMD geometries with their CHGNet energies and forces are ``labelled`` records for the
physics head. For each seed, two models are trained with identical settings except ``energy_weight`` and
``force_weight`` (the defaults of :class:`~aiida_crystalgan.gan.GanConfig`, or both 0). Their generated structures are
scored by CHGNet before relaxation (energy above the hull of the CHGNet-relaxed phases, largest force) and a subset is
relaxed with FIRE (fmax 0.05 eV/Å, cell relaxed) to count the steps needed.

CHGNet results of the OQMD phases are cached in ``--work-dir`` (the shared ``_oqmd_chgnet`` module's format), so
a rerun only retrains and rescores. Skips cleanly when the data folder is absent.

    python benchmarks/guidance_ablation.py --work-dir /tmp/guidance
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _oqmd_chgnet as labels
import numpy as np
from gan_vs_random import DEFAULT_DATA, generation_targets

REPO = Path(__file__).resolve().parents[1]
METHODS = {'guided': None, 'unguided': {'energy_weight': 0.0, 'force_weight': 0.0}}


def data_folder(args: argparse.Namespace, benchmark: str) -> Path | None:
    """The resolved ``--data-dir`` (None, with a message, when it has no ``nb-o_oqmd``); shrinks ``args`` for
    ``--quick`` and puts torch on one thread."""
    data_dir = args.data_dir.resolve()
    if not (data_dir / 'nb-o_oqmd' / 'entries.csv').is_file():
        print(f'{benchmark}: data folder {data_dir} (nb-o_oqmd) not found: benchmark skipped.')
        return None
    if args.quick:
        args.seeds, args.steps, args.samples, args.relaxations = args.seeds[:1], 20, 10, 1
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch

    torch.set_num_threads(1)
    return data_dir


@dataclasses.dataclass
class LabelledSystem:
    """The OQMD Nb-O entries labelled with CHGNet: training records, generation targets and the hull to score on."""

    records: list
    targets: list
    diagram: Any
    calculator: Any
    cache: labels.Cache

    @classmethod
    def prepare(cls, data_dir: Path, work: Path, reference_atoms: int, n_max: int) -> LabelledSystem:
        """Label (or read from ``work/cache``) the entries of ``data_dir/nb-o_oqmd`` and the elements."""
        from aiida_crystalgan.analysis.hull import build_phase_diagram

        cache = labels.Cache(work / 'cache')
        calculator = labels.chgnet()
        entries = labels.read_oqmd(data_dir / 'nb-o_oqmd')
        labels.log(f'{len(entries)} OQMD entries; labelling with CHGNet (work folder {work})')
        labels.label_oqmd(entries, calculator, cache, 0.05, 150, reference_atoms)
        elements = labels.elemental_references(calculator, cache, 0.05, 150)
        hull = [(entry['final_structure'], entry['energy']) for entry in entries]
        diagram = build_phase_diagram(hull + [(structure, energy) for structure, energy, _ in elements])
        records = labels.training_records(entries)
        targets = generation_targets(entries, n_max)
        labels.log(f'{len(records)} training records; targets {[t.key for t in targets]}')
        return cls(records, targets, diagram, calculator, cache)


def train_model(
    records: list, config_values: dict[str, Any], work: Path, resume: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Train one model (or continue ``resume``); return its checkpoint and the physics head's view of generated
    structures over this call's steps after the warm-up."""
    from aiida_crystalgan.gan import GanConfig, load_checkpoint, train

    config = GanConfig.from_dict(config_values)
    first_step = int(load_checkpoint(resume)['step']) if resume else 0
    tick = time.perf_counter()
    result = train(records, config, work, resume=resume, device='cpu')
    with (work / 'losses.csv').open() as handle:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    after_warmup = [row for row in rows if row['step'] > max(config.physics_warmup_steps, first_step)]
    curve = {
        'head_force_after_warmup': after_warmup[0]['generated_force'] if after_warmup else None,
        'head_force_end': rows[-1]['generated_force'],
        'head_energy_after_warmup': after_warmup[0]['generated_energy'] if after_warmup else None,
        'head_energy_end': rows[-1]['generated_energy'],
    }
    return result.checkpoint_path, {
        'seconds': time.perf_counter() - tick,
        'curve': curve,
        'physics_mae': result.metrics.get('physics_training_mae_ev_per_atom'),
        'validity': result.metrics.get('generated_validity_fraction'),
    }


def shortest_distance(structure) -> float:
    matrix = structure.distance_matrix
    return float(np.min(matrix[np.triu_indices(len(structure), 1)])) if len(structure) > 1 else math.inf


def score(
    checkpoint: Path,
    targets: list,
    count: int,
    seed: int,
    diagram,
    calculator,
    cache: labels.Cache,
    relaxations: int,
    relax_steps: int,
) -> dict[str, Any]:
    """CHGNet scores of ``count`` generated structures (round robin over ``targets``) and relaxations of a subset."""
    from aiida_crystalgan.analysis.hull import energy_above_hull
    from aiida_crystalgan.gan import CrystalGan, generate, load_checkpoint
    from aiida_crystalgan.gan.screening import predicted_energy_per_atom

    per_target = math.ceil(count / len(targets))
    requested = [{'composition': t.formula, 'formula_units': t.formula_units} for t in targets]
    records = generate(checkpoint, requested, num_per_target=per_target, seed=seed)
    order = [i * per_target + k for k in range(per_target) for i in range(len(targets))][:count]
    head_energies = predicted_energy_per_atom(CrystalGan.from_dict(load_checkpoint(checkpoint)), records)
    structures = [records[i].to_pymatgen() for i in order]
    rows = []
    for index, structure in zip(order, structures):
        row = {
            'formula': structure.composition.reduced_formula,
            'num_atoms': len(structure),
            'shortest_distance': shortest_distance(structure),
            'head_energy_per_atom': float(head_energies[index]),
        }
        try:
            result = labels.single_point(structure, calculator)
        except Exception as exception:  # noqa: BLE001 - one failed evaluation must not stop the benchmark
            row['error'] = f'{type(exception).__name__}: {exception}'
        else:
            row['energy_per_atom'] = result['energy'] / len(structure)
            row['e_above_hull'] = energy_above_hull(diagram, structure.composition, result['energy'])
            row['head_e_above_hull'] = energy_above_hull(
                diagram, structure.composition, row['head_energy_per_atom'] * len(structure)
            )
            row['max_force'] = result['max_force']
        rows.append(row)
    valid = [i for i, row in enumerate(rows) if row['shortest_distance'] >= 0.5 and 'error' not in row]
    relaxed = []
    for index in valid[:relaxations]:
        result = labels.relax_cached(structures[index], calculator, cache, 0.05, relax_steps)
        if 'error' in result:
            relaxed.append({'error': result['error']})
            continue
        final = labels.to_structure(result)
        relaxed.append(
            {
                'steps': result['steps'],
                'converged': result['converged'],
                'seconds': result['seconds'],
                'e_above_hull': energy_above_hull(diagram, final.composition, result['energy']),
            }
        )
    return {'rows': rows, 'relaxed': relaxed}


def summarise(scored: dict[str, Any]) -> dict[str, float | None]:
    """Per-run statistics of the generated structures (before relaxation) and of the relaxed subset."""
    rows = scored['rows']
    hull = np.array([row['e_above_hull'] for row in rows if 'e_above_hull' in row])
    force = np.array([row['max_force'] for row in rows if 'max_force' in row])
    relaxed = [row for row in scored['relaxed'] if 'steps' in row]
    head_errors = [row['head_energy_per_atom'] - row['energy_per_atom'] for row in rows if 'energy_per_atom' in row]

    def stat(values, function) -> float | None:
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(function(values)) if values else None

    return {
        'valid_fraction': float(np.mean([row['shortest_distance'] >= 0.5 for row in rows])),
        'e_hull_median': stat(hull, np.median),
        'e_hull_mean': stat(hull, np.mean),
        'e_hull_below_0.1_fraction': float(np.mean(hull < 0.1)) if len(hull) else None,
        'max_force_median': stat(force, np.median),
        'max_force_mean': stat(force, np.mean),
        'relax_steps_mean': stat([row['steps'] for row in relaxed], np.mean),
        'relax_converged_fraction': float(np.mean([row['converged'] for row in relaxed])) if relaxed else None,
        'relaxed_e_hull_mean': stat([row['e_above_hull'] for row in relaxed], np.mean),
        'num_relaxed': len(relaxed),
        'head_energy_mae': stat(np.abs(head_errors), np.mean),
        'head_energy_bias': stat(head_errors, np.mean),
        'head_e_hull_spearman': rank_correlation(
            [(row['formula'], row['head_e_above_hull'], row['e_above_hull']) for row in rows if 'e_above_hull' in row]
        ),
    }


def score_with(system: LabelledSystem, checkpoint: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """:func:`score` of ``checkpoint`` with the run's sizes (``args``) on ``system``, generation seed ``seed`` + 100."""
    return score(
        checkpoint,
        system.targets,
        args.samples,
        seed + 100,
        system.diagram,
        system.calculator,
        system.cache,
        args.relaxations,
        args.relax_steps,
    )


def run_report(
    script: str, argv: Sequence[str] | None, data_dir: Path, system: LabelledSystem, args: argparse.Namespace
) -> dict[str, Any]:
    """The fields that every ablation report has: the command (data folder as ``$DATA``), date, machine, sizes and
    training data."""
    import torch

    arguments = shlex.join(sys.argv[1:] if argv is None else list(argv)).replace(str(data_dir), '"$DATA"')
    return {
        'command': f'python benchmarks/{script} {arguments}',
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'machine': f'{platform.node() or "host"}: {os.cpu_count()} CPU cores, 1 torch thread, '
        f'torch {torch.__version__}',
        'seeds': args.seeds,
        'samples': args.samples,
        'relaxations': args.relaxations,
        'relax_steps': args.relax_steps,
        'targets': [target.key for target in system.targets],
        'num_records': len(system.records),
        'num_minima': sum(record.role == 'minimum' for record in system.records),
    }


def rank_correlation(rows: list[tuple[str, float, float]]) -> float | None:
    """Mean over formulas (those with at least 5 rows) of Spearman's rank correlation of ``(formula, x, y)`` rows'
    x and y: how well x orders structures of one composition as y does (None without such a formula)."""
    from scipy.stats import spearmanr

    by_formula: dict[str, list[tuple[float, float]]] = {}
    for formula, x, y in rows:
        by_formula.setdefault(formula, []).append((x, y))
    values = [spearmanr(*zip(*pairs)).statistic for pairs in by_formula.values() if len(pairs) >= 5]
    values = [float(value) for value in values if math.isfinite(value)]
    return float(np.mean(values)) if values else None


def fmt(values: list[float | None], digits: int = 3) -> str:
    """``mean ± std`` over seeds (sample standard deviation), ignoring missing values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 'n/a'
    spread = f' ± {np.std(finite, ddof=1):.{digits}f}' if len(finite) > 1 else ''
    return f'{np.mean(finite):.{digits}f}{spread}'


ROWS = (
    ('structures with all distances >= 0.5 Å', 'valid_fraction'),
    ('E above hull before relaxation, median (eV/atom)', 'e_hull_median'),
    ('E above hull before relaxation, mean (eV/atom)', 'e_hull_mean'),
    ('fraction within 0.1 eV/atom of the hull before relaxation', 'e_hull_below_0.1_fraction'),
    ('largest force before relaxation, median (eV/Å)', 'max_force_median'),
    ('largest force before relaxation, mean (eV/Å)', 'max_force_mean'),
    ('FIRE steps to fmax 0.05 eV/Å (relaxed subset)', 'relax_steps_mean'),
    ('relaxations converged', 'relax_converged_fraction'),
    ('E above hull after relaxation, mean (eV/atom)', 'relaxed_e_hull_mean'),
    ('head: energy error on the scored structures against CHGNet, mean absolute (eV/atom)', 'head_energy_mae'),
    ('head: energy error on the scored structures against CHGNet, mean signed (eV/atom)', 'head_energy_bias'),
    ('head: rank correlation with CHGNet of the energies of one composition (mean)', 'head_e_hull_spearman'),
    ('head: mean force of generated structures after warm-up (eV/Å)', 'head_force_after_warmup'),
    ('head: mean force of generated structures at the end (eV/Å)', 'head_force_end'),
    ('head: generated energy above the floor after warm-up (eV/atom)', 'head_energy_after_warmup'),
    ('head: generated energy above the floor at the end (eV/atom)', 'head_energy_end'),
    ('training seconds', 'seconds'),
)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    runs = report['runs']
    lines = [
        '# Guidance ablation: GAN with and without energy/force guidance (Nb-O, CHGNet)',
        '',
        f'Produced by `{report["command"]}` on {report["date"]} ({report["machine"]}). '
        f'Total wall time {report["total_seconds"] / 60:.1f} min.',
        '',
        f'Training data: {report["num_records"]} records ({report["num_minima"]} CHGNet-relaxed OQMD phases as '
        '`minimum`, the rest OQMD geometries with CHGNet single points as `labelled`); no MD frames. '
        f'Settings: {json.dumps(report["config"])}; guided = weights '
        f'(energy_weight={report["guided_weights"]["energy_weight"]}, '
        f'force_weight={report["guided_weights"]["force_weight"]}), unguided = both 0. '
        f'Seeds {report["seeds"]}; {report["samples"]} generated structures per method per seed over the targets '
        f'{report["targets"]}; {report["relaxations"]} valid structures per method per seed relaxed '
        f'(FIRE, fmax 0.05 eV/Å, at most {report["relax_steps"]} steps, cell relaxed). Hull: CHGNet-relaxed OQMD '
        'phases and elements (pymatgen PhaseDiagram).',
        '',
        'Values are the mean ± standard deviation over seeds of the per-run statistic.',
        '',
        *arm_table(ROWS, runs, list(METHODS), list(METHODS)),
    ]
    finish_markdown(lines, report, path)


def verdict(runs: list[dict[str, Any]]) -> str:
    """Plain statement of whether guidance lowered E_hull, forces and relaxation steps in every seed / on average."""
    sentences = []
    for label, key in (
        ('median energy above the hull', 'e_hull_median'),
        ('median largest force', 'max_force_median'),
        ('mean relaxation steps', 'relax_steps_mean'),
    ):
        pairs = [(run['guided']['summary'][key], run['unguided']['summary'][key]) for run in runs]
        pairs = [(g, u) for g, u in pairs if g is not None and u is not None]
        if not pairs:
            sentences.append(f'{label}: not measured.')
            continue
        lower = sum(g < u for g, u in pairs)
        change = np.mean([g for g, _ in pairs]) - np.mean([u for _, u in pairs])
        sentences.append(f'{label}: guided lower in {lower} of {len(pairs)} seeds (mean change {change:+.3f}).')
    return ' '.join(sentences)


def common_parser(description: str, steps: int, relaxations: int) -> argparse.ArgumentParser:
    """The arguments that the ablations on the OQMD Nb-O phases share: folders, seeds, sizes, a discussion, --quick."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--data-dir', type=Path, default=DEFAULT_DATA, help='folder holding nb-o_oqmd')
    parser.add_argument('--output-dir', type=Path, default=REPO / 'docs' / 'benchmarks')
    parser.add_argument('--work-dir', type=Path, default=None, help='cache of CHGNet results and the models')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--samples', type=int, default=100, help='generated structures scored per arm and seed')
    parser.add_argument('--relaxations', type=int, default=relaxations, help='relaxed structures per arm and seed')
    parser.add_argument('--relax-steps', type=int, default=300)
    parser.add_argument('--steps', type=int, default=steps, help='training steps (of the first round, if two)')
    parser.add_argument('--n-max', type=int, default=12)
    parser.add_argument('--reference-atoms', type=int, default=24, help='largest OQMD phase relaxed for the hull')
    parser.add_argument('--discussion', type=Path, default=None, help='hand-written discussion to append')
    parser.add_argument('--quick', action='store_true', help='smoke run: 1 seed, 20 steps, 10 samples, 1 relaxation')
    return parser


def arm_value(arm: dict[str, Any], key: str) -> float | None:
    """One arm's value of a table row: from its generated structures' summary, else from its training (or the
    physics head's curve over training)."""
    if key in arm['summary']:
        return arm['summary'][key]
    training = arm['training']
    return training[key] if key in training else training.get('curve', {}).get(key)


def arm_table(
    rows: Sequence[tuple[str, str]], runs: list[dict[str, Any]], arms: Sequence[str], headers: Sequence[str]
) -> list[str]:
    """A Markdown table: one line per ``(label, key)`` of ``rows``, one column per arm (``headers``), each cell the
    mean ± standard deviation over ``runs`` of :func:`arm_value`."""
    lines = ['| quantity | ' + ' | '.join(headers) + ' |', '|---|' + '---|' * len(arms)]
    for label, key in rows:
        cells = [fmt([arm_value(run[arm], key) for run in runs]) for arm in arms]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return lines


def add_merge_argument(parser: argparse.ArgumentParser) -> None:
    """``--merge JSON...``: for the ablations that run their seeds in separate processes."""
    parser.add_argument(
        '--merge',
        type=Path,
        nargs='+',
        default=None,
        metavar='JSON',
        help='only merge the reports of runs with different seeds into one report in --output-dir',
    )


def finish_markdown(lines: list[str], report: dict[str, Any], path: Path) -> None:
    """Write ``lines`` to ``path`` with the report's verdict and, if any, its hand-written discussion."""
    lines += ['', '## Verdict', '', report['verdict'], '']
    if report.get('discussion'):
        lines += [report['discussion'], '']
    path.write_text('\n'.join(lines))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common_parser(__doc__.split('\n\n')[0], steps=300, relaxations=5)
    parser.add_argument(
        '--guided-weights',
        type=float,
        nargs=2,
        default=None,
        metavar=('ENERGY', 'FORCE'),
        help='energy_weight and force_weight of the guided run (default: GanConfig)',
    )
    parser.add_argument('--batch-size', type=int, default=None, help='batch_size (default: GanConfig)')
    parser.add_argument('--warmup-steps', type=int, default=None, help='physics_warmup_steps (default: GanConfig)')
    parser.add_argument('--ramp-steps', type=int, default=None, help='physics_ramp_steps (default: GanConfig)')
    add_merge_argument(parser)
    return parser.parse_args(argv)


def merged_report(paths: Sequence[Path], command: str) -> dict[str, Any]:
    """One report from the JSON reports of runs with the same settings and different seeds (run in parallel on a
    busy machine): their runs and seeds, the longest wall time and every command, then ``command``."""
    reports = [json.loads(path.read_text()) for path in paths]
    return {
        **reports[0],
        'runs': [run for part in reports for run in part['runs']],
        'seeds': [seed for part in reports for seed in part['seeds']],
        'total_seconds': max(part['total_seconds'] for part in reports),
        'command': ' && '.join(part['command'] for part in reports) + f' && {command}',
    }


def merge(paths: Sequence[Path], output_dir: Path, command: str) -> int:
    """Write the merged report of ``paths`` (see :func:`merged_report`) to ``output_dir``."""
    report = merged_report(paths, command)
    report['verdict'] = verdict(report['runs'])
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / 'guidance_ablation.json').write_text(json.dumps(report, indent=1) + '\n')
    write_markdown(report, output_dir / 'guidance_ablation.md')
    print(report['verdict'])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge(
            args.merge,
            args.output_dir,
            'python benchmarks/guidance_ablation.py ' + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        )
    data_dir = data_folder(args, 'guidance_ablation')
    if data_dir is None:
        return 0
    warnings.filterwarnings('ignore')
    from aiida_crystalgan.gan import GanConfig

    started = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='guidance_ablation_'))
    system = LabelledSystem.prepare(data_dir, work, args.reference_atoms, args.n_max)

    base = {
        'n_max': args.n_max,
        'steps': args.steps,
        'log_every': 10,
        'checkpoint_every_steps': 0,
        'checkpoint_every_minutes': 0.0,
    }
    for name, value in (
        ('physics_warmup_steps', args.warmup_steps),
        ('physics_ramp_steps', args.ramp_steps),
        ('batch_size', args.batch_size),
    ):
        if value is not None:
            base[name] = value
    defaults = GanConfig()
    guided = {'energy_weight': defaults.energy_weight, 'force_weight': defaults.force_weight}
    if args.guided_weights:
        guided = dict(zip(('energy_weight', 'force_weight'), args.guided_weights))
    runs = []
    for seed in args.seeds:
        run: dict[str, Any] = {'seed': seed}
        for method, weights in {**METHODS, 'guided': guided}.items():
            values = {**base, 'seed': seed, **(weights or {})}
            folder = (
                work / f'{method}-{seed}'
                if method == 'unguided' or not args.guided_weights
                else work / f'guided-{args.guided_weights[0]:g}-{args.guided_weights[1]:g}-{seed}'
            )
            checkpoint, training = train_model(system.records, values, folder)
            labels.log(f'seed {seed} {method}: trained in {training["seconds"]:.0f} s, head curve {training["curve"]}')
            scored = score_with(system, checkpoint, args, seed)
            run[method] = {'training': training, 'summary': summarise(scored), 'scored': scored}
            labels.log(f'seed {seed} {method}: {json.dumps(run[method]["summary"])}')
        runs.append(run)

    report = {
        **run_report('guidance_ablation.py', argv, data_dir, system, args),
        'config': base,
        'guided_weights': guided,
        'runs': runs,
        'total_seconds': time.perf_counter() - started,
    }
    report['verdict'] = verdict(runs)
    if args.discussion:
        report['discussion'] = args.discussion.read_text()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / 'guidance_ablation.json').write_text(json.dumps(report, indent=1) + '\n')
    write_markdown(report, args.output_dir / 'guidance_ablation.md')
    labels.log(report['verdict'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
