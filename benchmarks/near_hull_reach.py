"""How many distinct near-hull structures each arm of a leave-phases-out run reached, and both together.

Reads a finished ``leave_phases_out.py`` run from its cache (nothing is relaxed that the run did not relax): per seed
and method, the fully relaxed candidates within ``--window`` eV/atom of the scoring hull. Two of them are the same
structure when ``StructureMatcher`` (defaults, as the uniqueness of ``compute_metrics``) matches them. Per seed: the
distinct near-hull structures of each arm, those the arms share, and the union. The union bounds what removing the
GAN's repeats alone could give: had its near-hull relaxations reached every distinct one that either arm found, its
S.U.N. rate would be the union over its relaxations (cells may hold near-hull minima that neither arm found, so this
is a measured floor of what exists, not a ceiling). The report is named after the replayed one:
``near_hull_reach<rest>`` for a run with ``--report-name leave_phases_out<rest>``.

    python benchmarks/near_hull_reach.py -- <leave_phases_out arguments>
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _oqmd_chgnet as labels
import leave_phases_out as lpo

ARMS = ('gan', 'random')


def distinct(structures: Sequence, matcher) -> list:
    """The first of each group of matching structures (same reduced formula only), in order: the uniqueness of the
    metrics (``analysis.matching.duplicate_indices``)."""
    from aiida_crystalgan.analysis.matching import duplicate_indices

    return [structure for structure, of in zip(structures, duplicate_indices(structures, matcher)) if of is None]


def reach(near_hull: dict[str, list], matcher) -> dict[str, int]:
    """Near-hull relaxations and distinct structures per arm, the distinct ones the arms share, and the union."""
    per_arm = {arm: distinct(structures, matcher) for arm, structures in near_hull.items()}
    union = distinct([structure for arm in ARMS for structure in per_arm[arm]], matcher)
    counts = {f'{arm}_near_hull': len(near_hull[arm]) for arm in ARMS}
    counts.update({f'{arm}_distinct': len(per_arm[arm]) for arm in ARMS})
    counts['union'] = len(union)
    counts['shared'] = sum(len(per_arm[arm]) for arm in ARMS) - len(union)
    return counts


def analyse_seed(seed: int, run: lpo.ReplayedRun, window: float) -> dict:
    """The near-hull reach of ``seed``'s two arms and their relaxation counts."""
    from aiida_crystalgan.analysis.hull import energy_above_hull
    from aiida_crystalgan.analysis.matching import make_matcher

    sizes, cache = run.sizes, run.cache
    model, _ = lpo.train_model(run.data['records'], sizes, seed, run.args.cache_dir)
    near_hull: dict[str, list] = {}
    relaxations: dict[str, int] = {}
    for arm in ARMS:
        funnel = lpo.funnel(arm, model, run.data, sizes, seed)
        near_hull[arm], relaxations[arm] = [], 0
        for composition in funnel['compositions'].values():
            to_relax, _ = lpo.candidates_to_relax(composition['selection'], run.calculator, cache, sizes)
            for candidate in to_relax:
                relaxations[arm] += 1
                result = labels.relax_cached(candidate, run.calculator, cache, sizes.relax_fmax, sizes.relax_steps)
                if 'error' in result:
                    continue
                relaxed = labels.to_structure(result)
                if energy_above_hull(run.data['scoring_hull'], relaxed.composition, result['energy']) <= window:
                    near_hull[arm].append(relaxed)
    row = {'seed': seed, **{f'{arm}_relaxations': relaxations[arm] for arm in ARMS}, **reach(near_hull, make_matcher())}
    labels.log(f'seed {seed}: {json.dumps(row)}')
    return row


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The per-seed table and the rate that the union would give the GAN."""
    lines = [
        f'# Near-hull reach of the two arms ({report["source"]})',
        '',
        f'Produced by `{report["command"]}` on {report["date"]}, from the cache of the run of `{report["source"]}.md` '
        '(nothing relaxed anew). Near-hull: fully relaxed candidates within '
        f'{report["window"]} eV/atom of the scoring hull; distinct: `StructureMatcher` defaults (the uniqueness of the '
        'metrics), same reduced formula only.',
        '',
        '| seed | GAN near-hull | GAN distinct | random near-hull | random distinct | shared | union | '
        'union / GAN relaxations |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for row in report['rows']:
        lines.append(
            f'| {row["seed"]} | {row["gan_near_hull"]} | {row["gan_distinct"]} | {row["random_near_hull"]} | '
            f'{row["random_distinct"]} | {row["shared"]} | {row["union"]} | '
            f'{100 * row["union"] / row["gan_relaxations"]:.1f}% |'
        )
    lines += [
        '',
        "The last column is the GAN's S.U.N. rate per relaxation had its near-hull relaxations reached every distinct "
        'near-hull structure that either arm found, without repeats: a bound on what removing the repeats gives with '
        'the structures known, not on what the cells hold.',
    ]
    if report.get('discussion'):
        lines += ['', report['discussion'].rstrip()]
    path.write_text('\n'.join(lines) + '\n')


def output_name(lpo_args: argparse.Namespace) -> str:
    """This report's file name without suffix: the replayed run's with ``near_hull_reach`` for ``leave_phases_out``."""
    return lpo.report_name(lpo_args).replace('leave_phases_out', 'near_hull_reach', 1)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's arguments (before ``--``) and the leave-phases-out run's (after it)."""
    own, rest = lpo.split_replay_arguments(argv, 'near_hull_reach')
    parser = lpo.replay_parser(__doc__)
    parser.add_argument(
        '--window', type=lpo.positive_number, default=0.1, help='eV/atom above the hull (the S.U.N. window)'
    )
    return parser.parse_args(own), rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parse_args(argv)
    run = lpo.replayed_run(lpo.parse_args(rest), 'near_hull_reach')
    if run is None:
        return 1
    report = {
        'command': 'python benchmarks/near_hull_reach.py ' + lpo.public_command(argv),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'source': lpo.report_name(run.args),
        'window': args.window,
        'rows': [analyse_seed(seed, run, args.window) for seed in run.args.seeds],
    }
    lpo.save_report(report, args, output_name(run.args), write_markdown, run.args.quick)
    return 0


if __name__ == '__main__':
    sys.exit(main())
