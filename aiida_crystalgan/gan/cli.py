"""Executables run by the CalcJobs on compute nodes: ``crystalgan-train`` and ``crystalgan-generate``.

Both write ``status.json`` next to their outputs and exit with the shared exit codes of ``aiida_crystalgan.io.status``
(a second start of the same job waits for the first and exits with its code, see ``io.status.sole_instance``):
``EXIT_OK`` (0), ``EXIT_FAILED`` (1), ``EXIT_INVALID_INPUT`` (2, message also on stderr) and, for training,
``EXIT_SOFT_WALLCLOCK`` (3, ``checkpoint.pt`` written) and ``EXIT_DIVERGED`` (4, a NaN or infinite loss:
``checkpoint.pt`` is the last good checkpoint, when there is one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from aiida_crystalgan.io.status import (
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SOFT_WALLCLOCK,
    sole_instance,
    write_status,
)

_STARTED = time.monotonic()


def _fail(directory: Path, message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    return write_status(directory, EXIT_INVALID_INPUT, message)


def _crash(directory: Path, exception: Exception) -> int:
    traceback.print_exc()
    return write_status(directory, EXIT_FAILED, f'{type(exception).__name__}: {exception}')


def _diverged(checkpoint: Path, diverged: Exception) -> int:
    """Leave the last good checkpoint at ``checkpoint`` (it may be the one resumed from) and report the divergence."""
    last_good = diverged.checkpoint_path
    if last_good is not None and Path(last_good).resolve() != checkpoint.resolve():
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(last_good, checkpoint)
    print(f'error: {diverged}', file=sys.stderr)
    return write_status(
        checkpoint.parent,
        EXIT_DIVERGED,
        str(diverged),
        step=diverged.step,
        checkpoint=checkpoint.name if last_good is not None else None,
    )


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ValueError(f'{what} `{path}` does not exist')


def train_main(argv: list[str] | None = None) -> int:
    """Train a GAN from a dataset file; see the module docstring for exit codes."""
    parser = argparse.ArgumentParser(prog='crystalgan-train', description=train_main.__doc__)
    parser.add_argument('--dataset', type=Path, required=True, help='dataset file (HDF5, aiida_crystalgan.io format)')
    parser.add_argument('--config', type=Path, required=True, help='JSON file of GanConfig fields')
    parser.add_argument('--output-dir', type=Path, required=True)
    parser.add_argument('--resume', type=Path, help='checkpoint to continue from')
    parser.add_argument('--max-wallclock-seconds', type=float, help='soft limit: checkpoint and exit 3 before it')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument(
        '--validation', type=Path, help='JSON: train / held-out indices and scoring (aiida_crystalgan.gan.evaluation)'
    )
    args = parser.parse_args(argv)
    with sole_instance(args.output_dir) as earlier:
        return earlier if earlier is not None else _train(args)


def _train(args: argparse.Namespace) -> int:
    """Train as ``args`` say; the exit code."""
    from aiida_crystalgan.io import read_datafile

    from .config import GanConfig
    from .evaluation import held_out_evaluator, write_validation_summary
    from .trainer import TrainingDiverged
    from .training import CHECKPOINT_FILE, train

    try:
        _require_file(args.dataset, 'dataset file')
        _require_file(args.config, 'config file')
        if args.resume is not None:
            _require_file(args.resume, 'checkpoint')
        config = GanConfig.from_json(args.config)
        records = read_datafile(args.dataset)
        evaluator = None
        if args.validation is not None:
            _require_file(args.validation, 'validation file')
            records, evaluator = held_out_evaluator(records, args.validation, args.output_dir / 'validation.csv')
        limit = None
        if args.max_wallclock_seconds is not None:
            limit = args.max_wallclock_seconds - (time.monotonic() - _STARTED)
        result = train(
            records,
            config,
            args.output_dir,
            resume=args.resume,
            max_wallclock_seconds=limit,
            device=args.device,
            on_log=evaluator,
        )
        if result.completed and evaluator is not None:
            write_validation_summary(evaluator, result, config, args.output_dir, args.device)
    except TrainingDiverged as diverged:
        return _diverged(args.output_dir / CHECKPOINT_FILE, diverged)
    except (ValueError, KeyError, TypeError) as exception:
        return _fail(args.output_dir, str(exception))
    except Exception as exception:  # noqa: BLE001 - report every failure in the status file for the parser
        return _crash(args.output_dir, exception)
    if not result.completed:
        print(f'wall-clock limit reached: wrote {result.checkpoint_path}', file=sys.stderr)
        return write_status(args.output_dir, EXIT_SOFT_WALLCLOCK, f'wrote {result.checkpoint_path.name}')
    print(json.dumps(result.metrics))
    return write_status(args.output_dir, EXIT_OK, 'training finished')


def generate_main(argv: list[str] | None = None) -> int:
    """Generate candidate structures from a trained model and screen them; prints a one-line JSON summary.

    Writes every candidate to ``--output`` and, with ``--screening``, a JSON summary of the screening: the counts of
    each fast filter, the counts per composition and the survivors ranked by the physics head's predicted energy.
    """
    parser = argparse.ArgumentParser(prog='crystalgan-generate', description=generate_main.__doc__)
    parser.add_argument('--model', type=Path, required=True, help='checkpoint written by crystalgan-train')
    parser.add_argument(
        '--request',
        type=Path,
        required=True,
        help='JSON: {"targets": [{"composition": "NbO2", "formula_units": 2}], "num_per_target": 100, '
        '"seed": 0, "source": "gan" or "random", "screening": {...ScreeningCriteria fields}}',
    )
    parser.add_argument('--output', type=Path, required=True, help='candidates dataset file (HDF5)')
    parser.add_argument('--screening', type=Path, help='screening summary file (JSON) to write')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    args = parser.parse_args(argv)
    with sole_instance(args.output.parent) as earlier:
        return earlier if earlier is not None else _generate(args)


def _generate(args: argparse.Namespace) -> int:
    """Generate and screen as ``args`` say; the exit code."""
    from aiida_crystalgan.io import write_datafile

    from .checkpoint import load_checkpoint
    from .device import resolve_device
    from .generation import generate, random_records
    from .model import CrystalGan
    from .screening import ScreeningCriteria, screen

    try:
        _require_file(args.model, 'model checkpoint')
        _require_file(args.request, 'request file')
        try:
            request = json.loads(args.request.read_text())
        except json.JSONDecodeError as exception:
            raise ValueError(f'request `{args.request}` is not valid JSON: {exception}') from exception
        if not isinstance(request, dict) or 'targets' not in request:
            raise ValueError('request must be a JSON object with `targets` (and `num_per_target`, `seed`)')
        unknown = sorted(set(request) - {'targets', 'num_per_target', 'seed', 'source', 'screening'})
        if unknown:
            raise ValueError(f'unknown request key(s): {", ".join(unknown)}')
        seed = request.get('seed', 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f'seed must be an integer, got {seed!r}')
        if not isinstance(request['targets'], list):
            raise ValueError('`targets` must be a list of {"composition": ..., "formula_units": ...}')
        source = request.get('source', 'gan')
        if source not in ('gan', 'random'):
            raise ValueError(f'source must be `gan` or `random`, got {source!r}')
        criteria = ScreeningCriteria.from_dict(request.get('screening'))
        num_per_target = request.get('num_per_target', 1)
        started = time.perf_counter()
        if source == 'gan':
            records = generate(args.model, request['targets'], num_per_target, seed=seed, device=args.device)
        else:
            state = load_checkpoint(args.model)
            records = random_records(
                request['targets'], list(state['elements']), int(state['config']['n_max']), num_per_target, seed=seed
            )
        seconds = time.perf_counter() - started
        model = CrystalGan.from_dict(load_checkpoint(args.model))
        screening = screen(model, records, criteria, device=resolve_device(args.device))
        screening_seconds = time.perf_counter() - started - seconds
    except (ValueError, KeyError, TypeError) as exception:
        return _fail(args.output.parent, str(exception))
    except Exception as exception:  # noqa: BLE001 - report every failure in the status file for the parser
        return _crash(args.output.parent, exception)
    write_datafile(args.output, records, metadata={'request': request})
    if args.screening is not None:
        args.screening.write_text(json.dumps({'source': source, **screening.to_dict(records)}))
    print(
        json.dumps(
            {
                'count': len(records),
                'seconds': seconds,
                'screening_seconds': screening_seconds,
                'structures_per_second': len(records) / seconds if seconds > 0 else None,
                **screening.counts,
            }
        )
    )
    return write_status(args.output.parent, EXIT_OK, f'{len(records)} candidates, {len(screening.ranked)} ranked')
