"""Ablation of the contact wall: where the repulsion prior of training and the separation of generated atoms sit.

The wall of a species pair is ``min_distance_scale`` x a statistic of the minima's shortest contacts of that pair
(``contact_quantile``: 0 is the shortest contact of any minimum). Each arm trains the same GAN (the training
protocol's config, with the arm's overrides) on the OQMD Nb-O phases labelled with CHGNet, as in
``guidance_ablation.py``, and scores its generated structures the same way: energy above the hull of the
CHGNet-relaxed phases and largest force before relaxation, FIRE steps and energy above the hull after relaxing a
subset. The first arm is the reference of the verdict.

    python benchmarks/contact_wall_ablation.py --data-dir "$DATA" --work-dir /tmp/contact_wall
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from guidance_ablation import (
    ROWS,
    LabelledSystem,
    arm_table,
    common_parser,
    data_folder,
    finish_markdown,
    run_report,
    score_with,
    summarise,
    train_model,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARMS = {
    'shortest contact x 0.85': {'contact_quantile': 0.0, 'min_distance_scale': 0.85},
    'defaults': {},
}
#: Rows of the guidance ablation that describe generated structures (the head's curves are that benchmark's topic).
STRUCTURE_ROWS = tuple(row for row in ROWS if not row[1].startswith('head_'))


def parse_arm(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (name, config overrides)."""
    name, separator, values = text.partition('=')
    try:
        overrides = json.loads(values) if separator else None
    except json.JSONDecodeError as exception:
        raise argparse.ArgumentTypeError(f'arm `{text}`: {exception}') from exception
    if not name or not isinstance(overrides, dict):
        raise argparse.ArgumentTypeError(f'arm `{text}` is not NAME={{"config_key": value, ...}}')
    return name, overrides


def walls(checkpoint: Path) -> dict[str, float]:
    """The wall (Å) of each species pair of a trained model."""
    from aiida_crystalgan.gan import load_checkpoint

    state = load_checkpoint(checkpoint)
    elements, scale = state['elements'], state['config']['min_distance_scale']
    shortest = state['normalisation']['min_pair_distance']
    return {
        f'{first}-{second}': round(scale * shortest[i][j], 3)
        for i, first in enumerate(elements)
        for j, second in enumerate(elements)
        if j >= i
    }


def verdict(runs: list[dict[str, Any]], arms: Sequence[str]) -> str:
    """Per other arm: in how many seeds its median E_hull, median largest force and mean steps are below the first's."""
    reference, sentences = arms[0], []
    for arm in arms[1:]:
        parts = []
        for label, key in (
            ('median E above hull before relaxation', 'e_hull_median'),
            ('median largest force', 'max_force_median'),
            ('mean relaxation steps', 'relax_steps_mean'),
            ('mean E above hull after relaxation', 'relaxed_e_hull_mean'),
        ):
            pairs = [(run[arm]['summary'][key], run[reference]['summary'][key]) for run in runs]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            change = np.mean([a for a, _ in pairs]) - np.mean([b for _, b in pairs])
            parts.append(f'{label} lower in {sum(a < b for a, b in pairs)} of {len(pairs)} seeds ({change:+.3f})')
        sentences.append(f'`{arm}` against `{reference}`: ' + '; '.join(parts) + '.')
    return ' '.join(sentences)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    arms, runs = list(report['arms']), report['runs']
    lines = [
        '# Contact-wall ablation: where the repulsion prior and the separation of generated atoms sit (Nb-O, CHGNet)',
        '',
        f'Produced by `{report["command"]}` on {report["date"]} ({report["machine"]}). '
        f'Total wall time {report["total_seconds"] / 60:.1f} min.',
        '',
        f'Training data: {report["num_records"]} records ({report["num_minima"]} CHGNet-relaxed OQMD phases as '
        '`minimum`, the rest OQMD geometries with CHGNet single points as `labelled`); no MD frames. Config: the '
        f'`balanced` training protocol with {json.dumps(report["config"])}, and per arm:',
        '',
    ]
    for arm, overrides in report['arms'].items():
        wall = ', '.join(f'{pair} {value} Å' for pair, value in runs[0][arm]['walls'].items())
        lines.append(f'- `{arm}`: {json.dumps(overrides)} (walls: {wall})')
    lines += [
        '',
        f'Seeds {report["seeds"]}; {report["samples"]} generated structures per arm and seed over the targets '
        f'{report["targets"]}; {report["relaxations"]} of them relaxed (FIRE, fmax 0.05 eV/Å, at most '
        f'{report["relax_steps"]} steps, cell relaxed). Hull: CHGNet-relaxed OQMD phases and elements. Values are the '
        'mean ± standard deviation over seeds of the per-run statistic.',
        '',
        *arm_table((*STRUCTURE_ROWS[:-1], ('training seconds', 'seconds')), runs, arms, [f'`{arm}`' for arm in arms]),
    ]
    finish_markdown(lines, report, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common_parser(__doc__.split('\n\n')[0], steps=1000, relaxations=10)
    parser.add_argument(
        '--arm',
        type=parse_arm,
        action='append',
        default=None,
        metavar='NAME=JSON',
        help='an arm: a name and its GanConfig overrides, e.g. \'wide={"min_distance_scale": 1.0}\' (repeat; '
        'default: the shortest contact x 0.85, and the defaults)',
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = data_folder(args, 'contact_wall_ablation')
    if data_dir is None:
        return 0

    from aiida_crystalgan.workflows.training import TrainingWorkChain

    started = time.perf_counter()
    arms = dict(args.arm or DEFAULT_ARMS)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='contact_wall_'))
    system = LabelledSystem.prepare(data_dir, work, args.reference_atoms, args.n_max)
    base = {'steps': args.steps, 'n_max': args.n_max, 'log_every': 10, 'checkpoint_every_steps': 0}
    config = {**TrainingWorkChain.get_protocol_inputs('balanced')['config'], **base}
    runs = []
    for seed in args.seeds:
        run: dict[str, Any] = {'seed': seed}
        for index, (arm, overrides) in enumerate(arms.items()):
            folder = work / 'models' / f'arm{index}-{seed}'
            checkpoint, training = train_model(system.records, {**config, **overrides, 'seed': seed}, folder)
            scored = score_with(system, checkpoint, args, seed)
            run[arm] = {'walls': walls(checkpoint), 'training': training, 'summary': summarise(scored)}
            print(f'seed {seed} {arm}: {json.dumps(run[arm]["summary"])}', flush=True)
        runs.append(run)
    report = {
        **run_report('contact_wall_ablation.py', argv, data_dir, system, args),
        'config': base,
        'arms': arms,
        'runs': runs,
        'total_seconds': time.perf_counter() - started,
    }
    report['verdict'] = verdict(runs, list(arms))
    if args.discussion:
        report['discussion'] = args.discussion.read_text()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = 'contact_wall_ablation_quick' if args.quick else 'contact_wall_ablation'
    (args.output_dir / f'{stem}.json').write_text(json.dumps(report, indent=1) + '\n')
    write_markdown(report, args.output_dir / f'{stem}.md')
    print(report['verdict'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
