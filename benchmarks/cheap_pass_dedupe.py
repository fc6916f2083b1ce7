"""How well the cheap pass's duplicate check predicts which candidates relax to the same structure.

Reads a finished ``leave_phases_out.py`` run with ``--cheap-pass`` from its cache (nothing is relaxed that the run did
not relax): per seed, method and held-out composition, the candidates that the cheap pass kept, their cheap-pass
structures and their full relaxations. Two kept candidates are *true duplicates* when their fully relaxed structures
match (``StructureMatcher`` defaults, as the uniqueness of ``compute_metrics``). For each ``--tolerance`` (ltol, stol,
angle of a ``StructureMatcher`` on the cheap-pass structures), the duplicate check is replayed on the kept candidates,
lowest energy first: how many full relaxations it would have saved, and how many distinct relaxed structures it would
have lost. Each ``--energy-window`` replays a check on the energies after the cheap pass instead (within one
composition: a candidate that close in energy per atom to a kept one is its duplicate), and each ``--longer-pass``
continues the short relaxation of the kept candidates by that many FIRE steps and checks at the default tolerances
(these relaxations are new, and cached). Only candidates that the run relaxed are replayed, so a looser check's
replacements are not measured. The report is named after the replayed one: ``cheap_pass_dedupe_validation.md`` for a
``--validation`` run (where funnel settings are chosen), ``cheap_pass_dedupe<rest>.md`` for a run with
``--report-name leave_phases_out<rest>``, else ``cheap_pass_dedupe.md``.

    python benchmarks/cheap_pass_dedupe.py --tolerance 0.2 0.3 5 --energy-window 0.005 -- <leave_phases_out arguments>
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
import numpy as np


def replay(
    cheap: list[tuple[float, Any]],
    relaxed: list,
    tolerances: Sequence[tuple[float, float, float]],
    energy_windows: Sequence[float],
    longer: dict[int, list] | None = None,
    symprecs: Sequence[float] = (),
) -> dict[str, Any]:
    """Distinct relaxed structures among the kept candidates, and what each check would keep of them.

    ``cheap``: (energy per atom, structure) after the short relaxation, lowest energy first. A tolerance check matches
    the cheap-pass structures; an energy window calls a candidate a duplicate of a kept one whose energy after the
    cheap pass is within that many eV/atom (all candidates of a row share one composition); ``longer`` maps a number
    of further FIRE steps to the structures after them, matched at the default tolerances; each of ``symprecs``
    symmetrises the cheap-pass structures at that tolerance (as the post-processing does; a failure keeps the structure)
    and matches them at the default tolerances.
    """
    from aiida_crystalgan.analysis.matching import duplicate_indices, make_matcher
    from aiida_crystalgan.analysis.postprocess import space_group, symmetrize

    def kinds(structures: list, matcher) -> list[int]:
        """Each structure's first earlier structure of its kind (itself when none)."""
        return [index if first is None else first for index, first in enumerate(duplicate_indices(structures, matcher))]

    def within_energy(window: float) -> list[int]:
        kept: list[int] = []
        for index, (energy, _) in enumerate(cheap):
            if all(abs(energy - cheap[k][0]) >= window for k in kept):
                kept.append(index)
        return kept

    def symmetric(structures: list) -> int:
        """How many have a space group above P1, as the campaign's evaluation finds it."""
        return sum(space_group(structure)[0] > 1 for structure in structures)

    def symmetrised(symprec: float) -> tuple[list, dict[str, int]]:
        """The cheap-pass structures symmetrised at ``symprec`` (one that spglib cannot symmetrise kept as it is), how
        many have a space group above P1 there and how many failed."""
        structures, counts = [], {'symmetric_after_cheap_pass': 0, 'failed': 0}
        for _, structure in cheap:
            try:
                result = symmetrize(structure, symprec)
            except ValueError:
                structures.append(structure)
                counts['failed'] += 1
            else:
                structures.append(result.structure)
                counts['symmetric_after_cheap_pass'] += result.number > 1
        return structures, counts

    symmetrisation = {symprec: symmetrised(symprec) for symprec in symprecs}

    truth = kinds(relaxed, make_matcher())
    checks = {
        f'{ltol:g}/{stol:g}/{angle:g}': sorted(set(kinds([s for _, s in cheap], make_matcher(ltol, stol, angle))))
        for ltol, stol, angle in tolerances
    }
    checks.update({f'dE<{window:g}': within_energy(window) for window in energy_windows})
    checks.update(
        {
            f'symprec {symprec:g}': sorted(set(kinds(structures, make_matcher())))
            for symprec, (structures, _) in symmetrisation.items()
        }
    )
    checks.update(
        {f'+{steps} steps': sorted(set(kinds(found, make_matcher()))) for steps, found in (longer or {}).items()}
    )
    out: dict[str, Any] = {
        'relaxed': len(relaxed),
        'distinct': len(set(truth)),
        'symmetric_after_cheap_pass': symmetric([structure for _, structure in cheap]),
        'symmetric_after_relaxation': symmetric(relaxed),
        'symmetrisation': {f'{symprec:g}': counts for symprec, (_, counts) in symmetrisation.items()},
        'checks': {},
    }
    for name, kept in checks.items():
        out['checks'][name] = {'kept': len(kept), 'distinct_kept': len({truth[index] for index in kept})}
    return out


def analyse_seed(seed: int, replayed: lpo.ReplayedRun, tolerances, energy_windows, longer_steps, symprecs) -> list:
    """One row per method and composition of ``seed``."""
    data, calculator, cache, sizes = replayed.data, replayed.calculator, replayed.cache, replayed.sizes
    model, _ = lpo.train_model(data['records'], sizes, seed, replayed.args.cache_dir)
    rows = []
    for arm in ('gan', 'random'):
        run = lpo.funnel(arm, model, data, sizes, seed)
        for formula, composition in run['compositions'].items():
            kept, _ = lpo.cheap_pass(list(composition['selection'].structures.values()), calculator, cache, sizes)
            pairs, longer, extra_steps = [], {steps: [] for steps in longer_steps}, dict.fromkeys(longer_steps, 0)
            for energy, structure in kept:
                result = labels.relax_cached(structure, calculator, cache, sizes.relax_fmax, sizes.relax_steps)
                if 'error' in result:
                    continue
                pairs.append(((energy, structure), labels.to_structure(result)))
                for steps in longer_steps:
                    further = labels.relax_cached(structure, calculator, cache, sizes.cheap_fmax, steps)
                    longer[steps].append(structure if 'error' in further else labels.to_structure(further))
                    extra_steps[steps] += further.get('steps', 0)
            row = replay([p[0] for p in pairs], [p[1] for p in pairs], tolerances, energy_windows, longer, symprecs)
            row['longer_pass_steps'] = {str(steps): count for steps, count in extra_steps.items()}
            rows.append({'seed': seed, 'arm': arm, 'formula': formula, **row})
            labels.log(f'seed {seed} {arm} {formula}: {json.dumps(row)}')
    return rows


def write_markdown(report: dict[str, Any], path: Path) -> None:
    rows = report['rows']
    longer = sorted({steps for row in rows for steps in row.get('longer_pass_steps', {})}, key=int)
    validation = report['sizes'].get('validation', ())
    split = f'validation split, {" ".join(validation)} held out' if validation else 'Nb-O'
    source = f'{report["source"]}.md'
    lines = [
        f'# Cheap-pass duplicate check replayed: other tolerances, energies, a longer pass (leave-phases-out, {split})',
        '',
        f'Produced by `{report["command"]}` on {report["date"]}, from the cache of the leave-phases-out run with the '
        f'same arguments (`{source}`); '
        + ('nothing new was relaxed.' if not longer else 'only the longer passes were relaxed anew.'),
        '',
        'Per seed, method and held-out composition: the candidates that the cheap pass kept (at most '
        f'{report["sizes"]["relaxations"]}, lowest energy after the short relaxation first, after the default check), '
        'their full relaxations, and how many of those are distinct (`StructureMatcher` defaults on the relaxed '
        'structures). Each tolerance (ltol/stol/angle) replays the check on the cheap-pass structures of these kept '
        'candidates; each energy window (dE < x eV/atom) replays a check that calls a candidate a duplicate of a kept '
        'one whose energy after the cheap pass is that close; "symprec x" symmetrises the cheap-pass structures at '
        'that spglib tolerance and checks at the default tolerances; "+N steps" continues the short relaxations by N '
        'FIRE steps and checks at the default tolerances: "kept" is how many full relaxations it would run, '
        '"distinct kept" how many distinct relaxed structures those would still reach. Sums over seeds and '
        'compositions.',
        '',
    ]
    names = list(rows[0]['checks'])
    header = '| method | relaxed | distinct | ' + ' | '.join(f'{name}: kept / distinct kept' for name in names) + ' |'
    lines += [header, '|---|---|---|' + '---|' * len(names)]
    for arm in ('gan', 'random'):
        mine = [row for row in rows if row['arm'] == arm]
        cells = [
            f'{sum(r["checks"][name]["kept"] for r in mine)} / {sum(r["checks"][name]["distinct_kept"] for r in mine)}'
            for name in names
        ]
        relaxed, distinct = sum(r['relaxed'] for r in mine), sum(r['distinct'] for r in mine)
        lines.append(f'| {arm} | {relaxed} | {distinct} | ' + ' | '.join(cells) + ' |')
    for steps in longer:
        spent = {arm: sum(r['longer_pass_steps'][steps] for r in rows if r['arm'] == arm) for arm in ('gan', 'random')}
        lines += [
            '',
            f'The longer pass of {steps} further steps took {spent["gan"]} FIRE steps for the GAN and '
            f'{spent["random"]} for random search, all compositions and seeds together.',
        ]
    lines += [
        '',
        'Symmetry of the same candidates (space group above P1 at `symprec` 0.1, as the evaluation finds it):',
        '',
        '| method | after the cheap pass | after the full relaxation |',
        '|---|---|---|',
    ]
    for arm in ('gan', 'random'):
        mine = [row for row in rows if row['arm'] == arm]
        relaxed = sum(r['relaxed'] for r in mine)
        lines.append(
            f'| {arm} | {sum(r["symmetric_after_cheap_pass"] for r in mine)} of {relaxed} | '
            f'{sum(r["symmetric_after_relaxation"] for r in mine)} of {relaxed} |'
        )
    symprecs = sorted({symprec for row in rows for symprec in row.get('symmetrisation', {})}, key=float)
    if symprecs:
        lines += [
            '',
            'The cheap-pass structures at the `--symprec` tolerances: how many have a space group above P1, and how '
            'many spglib could not symmetrise (matched unsymmetrised):',
            '',
            '| method | ' + ' | '.join(f'symprec {symprec}: above P1 / failed' for symprec in symprecs) + ' |',
            '|---|' + '---|' * len(symprecs),
        ]
        for arm in ('gan', 'random'):
            mine = [row for row in rows if row['arm'] == arm]
            cells = [
                f'{sum(r["symmetrisation"][p]["symmetric_after_cheap_pass"] for r in mine)} / '
                f'{sum(r["symmetrisation"][p]["failed"] for r in mine)}'
                for p in symprecs
            ]
            lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| seed | method | formula | relaxed | distinct | ' + ' | '.join(names) + ' |']
    lines.append('|---|---|---|---|---|' + '---|' * len(names))
    for row in rows:
        cells = [f'{row["checks"][n]["kept"]} / {row["checks"][n]["distinct_kept"]}' for n in names]
        lines.append(
            f'| {row["seed"]} | {row["arm"]} | {row["formula"]} | {row["relaxed"]} | {row["distinct"]} | '
            + ' | '.join(cells)
            + ' |'
        )
    if report.get('discussion'):
        lines += ['', report['discussion'].strip()]
    path.write_text('\n'.join(lines) + '\n')


def source_report(lpo_args: argparse.Namespace) -> str:
    """The leave-phases-out report (file name without suffix) of the run replayed: ``lpo.report_name``, except that
    the test split's run with the cheap pass was published as ``leave_phases_out_cheap_pass``."""
    name = lpo.report_name(lpo_args)
    return 'leave_phases_out_cheap_pass' if name == 'leave_phases_out' else name


def output_name(lpo_args: argparse.Namespace) -> str:
    """This report's file name without suffix: the replayed run's ``lpo.report_name`` with ``cheap_pass_dedupe`` for
    ``leave_phases_out``."""
    return lpo.report_name(lpo_args).replace('leave_phases_out', 'cheap_pass_dedupe', 1)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's arguments (before ``--``) and the leave-phases-out run's (after it)."""
    own, rest = lpo.split_replay_arguments(argv, 'cheap_pass_dedupe')
    parser = lpo.replay_parser(__doc__)
    parser.add_argument(
        '--tolerance',
        type=float,
        nargs=3,
        action='append',
        metavar=('LTOL', 'STOL', 'ANGLE'),
        help='StructureMatcher tolerances to replay (repeat; default: the defaults and the CDVAE ones)',
    )
    parser.add_argument(
        '--energy-window',
        type=float,
        action='append',
        default=[],
        metavar='EV_PER_ATOM',
        help='energy window of a duplicate check on the cheap-pass energies to replay (repeat)',
    )
    parser.add_argument(
        '--longer-pass',
        type=int,
        action='append',
        default=[],
        metavar='STEPS',
        help='further FIRE steps (cheap-pass fmax) from the cheap-pass structures, matched at the default tolerances '
        '(repeat; relaxes what the run did not)',
    )
    parser.add_argument(
        '--symprec',
        type=lpo.positive_number,
        action='append',
        default=[],
        metavar='ANGSTROM',
        help='symmetrise the cheap-pass structures at this spglib tolerance before the check at the default '
        'tolerances (repeat)',
    )
    return parser.parse_args(own), rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parse_args(argv)
    lpo_args = lpo.parse_args(rest)
    if not lpo_args.cheap_pass:
        raise SystemExit('the leave_phases_out.py arguments must include --cheap-pass')
    replayed = lpo.replayed_run(lpo_args, 'cheap_pass_dedupe')
    if replayed is None:
        return 1
    tolerances = [tuple(t) for t in args.tolerance or [(0.2, 0.3, 5.0), (0.3, 0.5, 10.0)]]
    rows = [
        row
        for seed in lpo_args.seeds
        for row in analyse_seed(seed, replayed, tolerances, args.energy_window, args.longer_pass, args.symprec)
    ]
    report = {
        'command': 'python benchmarks/cheap_pass_dedupe.py ' + lpo.public_command(argv),
        'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'sizes': lpo.asdict(replayed.sizes),
        'source': source_report(lpo_args),
        'rows': rows,
        'distinct_fraction': {
            arm: float(np.mean([r['distinct'] / r['relaxed'] for r in rows if r['arm'] == arm and r['relaxed']]))
            for arm in ('gan', 'random')
        },
    }
    lpo.save_report(report, args, output_name(lpo_args), write_markdown, lpo_args.quick)
    return 0


if __name__ == '__main__':
    sys.exit(main())
