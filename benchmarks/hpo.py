"""Benchmark of the hyperparameter search: default configuration vs. the best of a TPE and of a random search.

Each arm is a ``crystalgan.hpo`` workchain on the same dataset, folds (grouped by source) and test split:

* ``default``: the base configuration alone, cross-validated (a one-point grid);
* ``tpe``: ``--trials`` trials of Optuna's TPE sampler;
* ``random``: ``--trials`` trials of random search.

It reports each arm's best cross-validated objective (mean ± spread over folds), its held-out test objective after
training on all folds, and trials per hour on this machine.

    python benchmarks/hpo.py --dataset DATASET.h5 [--trials 24] [--folds 3] [--steps 600] [--max-concurrent 1] \
        [--output docs/benchmarks/hpo.json]
    python benchmarks/hpo.py --synthetic --trials 2 --folds 2 --steps 6     # smoke size

``--dataset`` is a dataset file in the ``aiida_crystalgan.io`` format (``CrystalDatasetData.write_file`` of a
campaign's dataset); ``--synthetic`` builds a small Nb-O set (rattled NbO / NbO2 / Nb cells in groups of one source
each, with minima, labelled with a Lennard-Jones potential) for checking that the benchmark runs. Runs in a temporary
AiiDA profile (SQLite, no broker), with ``crystalgan-train`` on localhost, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _profile import temporary_profile

SEARCH_SPACE = {
    'generator_lr': {'low': 5.0e-5, 'high': 1.0e-3, 'log': True},
    'critic_lr': {'low': 5.0e-5, 'high': 1.0e-3, 'log': True},
    'physics_lr': {'low': 1.0e-4, 'high': 3.0e-3, 'log': True},
    'generator_depth': {'low': 1, 'high': 4},
    'critic_depth': {'low': 1, 'high': 4},
    'critic_width': {'choices': [16, 32, 64]},
    'num_rbf': {'choices': [8, 16]},
    'cutoff': {'low': 4.0, 'high': 6.0},
}


def synthetic_records(groups: int = 8, frames: int = 5, seed: int = 0) -> list:
    """``groups`` sources of ``frames`` rattled frames plus one unrattled minimum, NbO / Nb / rutile NbO2 in turn."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones
    from ase.spacegroup import crystal

    from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord

    rng = np.random.default_rng(seed)
    records = []
    for group in range(groups):
        for frame in range(frames + 1):
            kind = group % 3
            if kind == 0:
                atoms = bulk('NbO', 'rocksalt', a=4.3)
                atoms.set_chemical_symbols(['Nb', 'O'])
            elif kind == 1:
                atoms = bulk('Nb', 'bcc', a=3.3, cubic=True)
            else:
                atoms = crystal(
                    ['Nb', 'O'],
                    basis=[(0, 0, 0), (0.3, 0.3, 0)],
                    spacegroup=136,
                    cellpar=[4.85, 4.85, 3.03, 90, 90, 90],
                )
            atoms.set_cell(atoms.cell * (1 + 0.03 * rng.standard_normal()), scale_atoms=True)
            minimum = frame == frames
            if not minimum:
                atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
            atoms.calc = LennardJones(sigma=2.3, epsilon=0.1, rc=6.0)
            atoms.get_forces()
            records.append(
                StructureRecord.from_ase(
                    atoms, source=f'group{group}', label=f'group{group}-{frame}', role=MINIMUM if minimum else LABELLED
                )
            )
    return records


def train_code():
    from aiida import orm

    computer = orm.Computer(
        label='localhost',
        hostname='localhost',
        transport_type='core.local',
        scheduler_type='core.direct',
        workdir=tempfile.mkdtemp(prefix='hpo-bench-'),
    ).store()
    computer.set_minimum_job_poll_interval(0.5)
    computer.configure()
    executable = shutil.which('crystalgan-train', path=str(Path(sys.executable).parent))
    return orm.InstalledCode(
        label='crystalgan_train',
        computer=computer,
        filepath_executable=executable,
        default_calc_job_plugin='crystalgan.train',
    ).store()


def run_arm(name: str, code, dataset, args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    from aiida.engine import run_get_node

    from aiida_crystalgan.workflows.hpo import HyperparameterSearchWorkChain

    strategy, trials, space = {
        'default': ('grid', 1, {'seed': {'choices': [config.get('seed', 0)]}}),
        'tpe': ('tpe', args.trials, SEARCH_SPACE),
        'random': ('random', args.trials, SEARCH_SPACE),
    }[name]
    overrides = {
        'parameters': {
            'strategy': strategy,
            'num_trials': trials,
            'num_folds': args.folds,
            'max_concurrent': args.max_concurrent,
            'seed': args.seed,
            'startup_trials': max(2, trials // 3),
            'test_fraction': args.test_fraction,
            'pruning': {'enabled': name != 'default', 'min_trials': 3, 'warmup_steps': args.steps // 3},
        },
        'config': config,
        'search_space': space,
    }
    builder = HyperparameterSearchWorkChain.get_builder_from_protocol(
        code, dataset, protocol='balanced', overrides=overrides
    )
    started = time.perf_counter()
    results, node = run_get_node(builder)
    seconds = time.perf_counter() - started
    table = results['trials'].get_dict() if 'trials' in results else {'trials': [], 'best': None}
    final = results['final_metrics'].get_dict().get('validation', {}) if 'final_metrics' in results else {}
    summary = {
        'arm': name,
        'exit_status': node.exit_status,
        'trials': len(table['trials']),
        'states': {s: sum(t['state'] == s for t in table['trials']) for s in ('complete', 'pruned', 'failed')},
        'best': table['best'],
        'importances': table.get('importances', {}),
        'test_objective': final.get('objective'),
        'test': {
            k: final.get(k)
            for k in (
                'energy_mae_ev_per_atom',
                'force_mae_ev_per_angstrom',
                'generated_energy_gap_ev_per_atom',
                'coverage_recall',
            )
        },
        'wall_seconds': seconds,
        'search_seconds': sum(t['wall_seconds'] for t in table['trials']),
    }
    # one trial at a time: the trials' wall times add up to the search time (without the final model); else the
    # whole arm's time is the upper bound
    search = summary['search_seconds'] if args.max_concurrent == 1 else seconds
    summary['trials_per_hour'] = summary['trials'] / max(search, 1e-9) * 3600.0
    best = table['best']
    value = '-' if best is None else f'{best["value"]:.4g} ± {best["spread"]:.2g}'
    print(
        f'{name:8s} {summary["trials"]:3d} trials  best CV objective {value}  test {final.get("objective")}  '
        f'{summary["trials_per_hour"]:.1f} trials/h',
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--dataset', type=Path, help='dataset file (aiida_crystalgan.io format)')
    source.add_argument('--synthetic', action='store_true', help='a small Lennard-Jones Nb-O set (smoke runs)')
    parser.add_argument('--trials', type=int, default=24)
    parser.add_argument('--folds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=600, help='training steps per trial and fold')
    parser.add_argument('--max-concurrent', type=int, default=1)
    parser.add_argument('--test-fraction', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--arms', default='default,tpe,random')
    parser.add_argument('--config', type=Path, help='JSON of GanConfig fields of the base configuration')
    parser.add_argument('--output', type=Path, help='JSON report')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix='hpo-bench-') as tmpdir:
        temporary_profile(Path(tmpdir))
        from aiida_crystalgan.data.dataset import CrystalDatasetData
        from aiida_crystalgan.io import read_datafile

        records = synthetic_records() if args.synthetic else read_datafile(args.dataset)
        dataset = CrystalDatasetData(records).store()
        config = json.loads(args.config.read_text()) if args.config else {}
        config = {'n_max': 24, 'batch_size': 16, 'log_every': max(1, args.steps // 6), **config, 'steps': args.steps}
        code = train_code()
        started = time.perf_counter()
        arms = [run_arm(name, code, dataset, args, config) for name in args.arms.split(',')]
    report = {
        'dataset': 'synthetic Lennard-Jones Nb-O' if args.synthetic else str(args.dataset),
        'num_structures': len(records),
        'trials': args.trials,
        'folds': args.folds,
        'steps': args.steps,
        'max_concurrent': args.max_concurrent,
        'base_config': config,
        'arms': arms,
        'total_seconds': time.perf_counter() - started,
        'machine': {
            'cpus': os.cpu_count(),
            'load_average_1min': os.getloadavg()[0],
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'python': platform.python_version(),
        },
    }
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps({arm['arm']: arm['trials_per_hour'] for arm in arms}))


if __name__ == '__main__':
    main()
