"""Guidance in a second round: does the physics head steer the generator once it has learned generated structures?

The guidance ablation (``guidance_ablation.py``) found no effect of the energy/force guidance in a first round: the
physics head never saw a generated structure and underestimates their energies and forces. A campaign's later rounds
feed the engine's energies and forces of candidates back as ``labelled`` data, so the head of round 2 has seen the
generator's distribution. This benchmark reproduces that step. Per seed: a first-round model (the ``balanced``
training protocol, guided) is trained on the OQMD Nb-O phases labelled with CHGNet, as in ``guidance_ablation.py``;
``--labelled`` of its generated structures get CHGNet single points and join the data as ``labelled`` records; the
model then continues training for ``--round-steps`` steps in each arm:

- ``unguided + labels``: guidance weights 0, with the labels (the reference of the verdict);
- ``guided + labels``: the protocol's guidance weights (or ``--guided-weights``), with the labels;
- ``guided, no labels``: the same guidance weights, without the labels.

Each arm's generated structures are scored as in the guidance ablation (CHGNet energy above the hull and largest
force before relaxation, the head's energy error against CHGNet, FIRE steps and energy above the hull after relaxing
a subset).

    python benchmarks/guidance_second_round.py --data-dir "$DATA" --work-dir /tmp/guidance_round
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _oqmd_chgnet as labels
import numpy as np
from guidance_ablation import (
    ROWS,
    LabelledSystem,
    add_merge_argument,
    arm_table,
    common_parser,
    data_folder,
    finish_markdown,
    merged_report,
    run_report,
    score_with,
    summarise,
    train_model,
)

REPO = Path(__file__).resolve().parents[1]
UNGUIDED = {'energy_weight': 0.0, 'force_weight': 0.0}
#: Arm name -> (whether the generated structures' labels join the data, guidance weights; None: the protocol's).
ARMS: dict[str, tuple[bool, dict[str, float] | None]] = {
    'unguided + labels': (True, UNGUIDED),
    'guided + labels': (True, None),
    'guided, no labels': (False, None),
}
VERDICT_ROWS = (
    ('median E above hull before relaxation', 'e_hull_median'),
    ('median largest force', 'max_force_median'),
    ('mean relaxation steps', 'relax_steps_mean'),
    ('mean E above hull after relaxation', 'relaxed_e_hull_mean'),
)


def first_round(records: list, values: dict[str, Any], folder: Path) -> tuple[Path, dict[str, Any]]:
    """The first-round model: reused from ``folder`` when its checkpoint was trained with ``values``, else trained."""
    from aiida_crystalgan.gan import GanConfig, load_checkpoint

    checkpoint = folder / 'model.pt'
    if checkpoint.is_file() and load_checkpoint(checkpoint)['config'] == GanConfig.from_dict(values).to_dict():
        labels.log(f'first round: reusing {checkpoint}')
        return checkpoint, {'reused': True}
    return train_model(records, values, folder)


def labelled_generated(checkpoint: Path, targets: list, count: int, seed: int, calculator) -> list:
    """``count`` generated structures (round robin over ``targets``) with CHGNet energies and forces, as ``labelled``
    records; a structure whose single point fails is left out."""
    from aiida_crystalgan.gan import generate
    from aiida_crystalgan.io import LABELLED, StructureRecord

    per_target = math.ceil(count / len(targets))
    requested = [{'composition': t.formula, 'formula_units': t.formula_units} for t in targets]
    generated = generate(checkpoint, requested, num_per_target=per_target, seed=seed)
    records = []
    for index, record in enumerate(generated[: per_target * len(targets)]):
        try:
            result = labels.single_point(record.to_pymatgen(), calculator)
        except Exception as exception:  # noqa: BLE001 - one failed single point must not stop the benchmark
            labels.log(f'generated structure {index}: single point failed ({type(exception).__name__})')
            continue
        records.append(
            StructureRecord(
                numbers=record.numbers,
                positions=result['positions'],
                cell=result['cell'],
                energy=result['energy'],
                forces=result['forces'],
                source=f'generated-{index}',
                label=record.label,
                role=LABELLED,
            )
        )
    return records


def verdict(runs: list[dict[str, Any]]) -> str:
    """Per arm against ``unguided + labels``: in how many seeds its statistics are lower, and the mean change."""
    reference, sentences = next(iter(ARMS)), []
    for arm in list(ARMS)[1:]:
        parts = []
        for label, key in VERDICT_ROWS:
            pairs = [(run[arm]['summary'][key], run[reference]['summary'][key]) for run in runs]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            change = np.mean([a for a, _ in pairs]) - np.mean([b for _, b in pairs]) if pairs else math.nan
            parts.append(f'{label} lower in {sum(a < b for a, b in pairs)} of {len(pairs)} seeds ({change:+.3f})')
        sentences.append(f'`{arm}` against `{reference}`: ' + '; '.join(parts) + '.')
    return ' '.join(sentences)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    runs = report['runs']
    lines = [
        '# Guidance in a second round, after the physics head has learned generated structures (Nb-O, CHGNet; '
        f'weights {report["guided_weights"]["energy_weight"]:g} / {report["guided_weights"]["force_weight"]:g})',
        '',
        f'Produced by `{report["command"]}` on {report["date"]} ({report["machine"]}). '
        f'Total wall time {report["total_seconds"] / 60:.1f} min.',
        '',
        f'First round: the `balanced` training protocol with {json.dumps(report["config"])} (its guidance weights '
        f'{json.dumps(report["first_round_weights"])}), trained on {report["num_records"]} records '
        f'({report["num_minima"]} CHGNet-relaxed OQMD phases as `minimum`, the rest OQMD geometries with CHGNet single '
        f'points as `labelled`). Then {report["labelled"]} of its generated structures (targets {report["targets"]}) '
        f'got CHGNet single points, and the model continued for {report["round_steps"]} steps per arm:',
        '',
        '- `unguided + labels`: guidance weights 0, with the generated structures as `labelled` records;',
        f'- `guided + labels`: guidance weights {json.dumps(report["guided_weights"])}, with the generated structures;',
        "- `guided, no labels`: the same guidance weights, on the first round's data only.",
        '',
        f'Seeds {report["seeds"]}; {report["samples"]} generated structures per arm and seed (a different generation '
        f'seed from the labelled ones); {report["relaxations"]} of them relaxed (FIRE, fmax 0.05 eV/Å, at most '
        f'{report["relax_steps"]} steps, cell relaxed). Hull: CHGNet-relaxed OQMD phases and elements. Values are the '
        'mean ± standard deviation over seeds of the per-run statistic; the head rows are the physics head of the arm.',
        '',
        *arm_table(ROWS, runs, list(ARMS), [f'`{arm}`' for arm in ARMS]),
    ]
    finish_markdown(lines, report, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common_parser(__doc__.split('\n\n')[0], steps=1000, relaxations=10)
    parser.add_argument('--round-steps', type=int, default=500, help='training steps of the second round')
    parser.add_argument('--labelled', type=int, default=300, help='generated structures labelled after round 1')
    parser.add_argument(
        '--guided-weights',
        type=float,
        nargs=2,
        default=None,
        metavar=('ENERGY', 'FORCE'),
        help="energy_weight and force_weight of the guided arms of round 2 (default: the protocol's, which the "
        'first round always uses)',
    )
    add_merge_argument(parser)
    return parser.parse_args(argv)


def save(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Add the verdict and ``--discussion``; write the JSON and Markdown reports to ``--output-dir``."""
    report['verdict'] = verdict(report['runs'])
    if args.discussion:
        report['discussion'] = args.discussion.read_text()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = 'guidance_second_round_quick' if args.quick else 'guidance_second_round'
    (args.output_dir / f'{stem}.json').write_text(json.dumps(report, indent=1) + '\n')
    write_markdown(report, args.output_dir / f'{stem}.md')
    labels.log(report['verdict'])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        arguments = shlex.join(sys.argv[1:] if argv is None else list(argv))
        save(merged_report(args.merge, f'python benchmarks/guidance_second_round.py {arguments}'), args)
        return 0
    data_dir = data_folder(args, 'guidance_second_round')
    if data_dir is None:
        return 0
    if args.quick:
        args.round_steps, args.labelled = 10, 10

    from aiida_crystalgan.gan import GanConfig
    from aiida_crystalgan.workflows.training import TrainingWorkChain

    started = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix='guidance_second_round_'))
    system = LabelledSystem.prepare(data_dir, work, args.reference_atoms, args.n_max)
    base = {'steps': args.steps, 'n_max': args.n_max, 'log_every': 10, 'checkpoint_every_steps': 0}
    config = {**TrainingWorkChain.get_protocol_inputs('balanced')['config'], **base}
    defaults = GanConfig.from_dict(config)
    first_weights = {'energy_weight': defaults.energy_weight, 'force_weight': defaults.force_weight}
    guided = dict(zip(first_weights, args.guided_weights)) if args.guided_weights else first_weights
    weights_name = f'{guided["energy_weight"]:g}-{guided["force_weight"]:g}'
    runs = []
    for seed in args.seeds:
        first, _ = first_round(system.records, {**config, 'seed': seed}, work / 'models' / f'round1-{seed}')
        generated = labelled_generated(first, system.targets, args.labelled, seed + 200, system.calculator)
        labels.log(f'seed {seed}: {len(generated)} generated structures labelled')
        run: dict[str, Any] = {'seed': seed, 'labelled': len(generated)}
        for index, (arm, (with_labels, weights)) in enumerate(ARMS.items()):
            records = system.records + generated if with_labels else system.records
            values = {**config, **(weights or guided), 'seed': seed, 'steps': args.steps + args.round_steps}
            folder = work / 'models' / f'round2-{weights_name}-arm{index}-{seed}'
            checkpoint, training = train_model(records, values, folder, resume=first)
            scored = score_with(system, checkpoint, args, seed)
            run[arm] = {'training': training, 'summary': summarise(scored)}
            labels.log(f'seed {seed} {arm}: {json.dumps(run[arm]["summary"])}')
        runs.append(run)
    report = {
        **run_report('guidance_second_round.py', argv, data_dir, system, args),
        'config': base,
        'first_round_weights': first_weights,
        'guided_weights': guided,
        'labelled': args.labelled,
        'round_steps': args.round_steps,
        'runs': runs,
        'total_seconds': time.perf_counter() - started,
    }
    save(report, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
