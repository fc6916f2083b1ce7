"""Train and sample the GAN on one device and report speed: seconds per training step, structures per second.

Self-contained (synthetic Lennard-Jones Nb–O cells, no data files, no AiiDA), so it runs on a bare GPU machine:

    python benchmarks/gan_device_check.py --device cuda --steps 100 --output docs/benchmarks/gan_device_cuda.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aiida_crystalgan.gan import GanConfig, generate, read_checkpoint_summary, train
from aiida_crystalgan.io import MINIMUM, StructureRecord

TARGETS = [
    {'composition': 'NbO', 'formula_units': 4},
    {'composition': 'NbO2', 'formula_units': 4},
    {'composition': 'Nb2O5', 'formula_units': 2},
]


def synthetic_records(count: int, seed: int) -> list[StructureRecord]:
    """Rattled rock-salt NbO and rutile-like NbO2 supercells with Lennard-Jones energies and forces."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        if index % 2:
            atoms = bulk('NbO', 'rocksalt', a=4.3, cubic=True)
            atoms.set_chemical_symbols(['Nb', 'O'] * 4)
        else:
            atoms = bulk('Nb', 'bcc', a=3.3, cubic=True).repeat((1, 1, 3))
            atoms.set_chemical_symbols(['Nb', 'O', 'O', 'Nb', 'O', 'O'])
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.1, rc=6.0)
        records.append(StructureRecord.from_ase(atoms, label=f'synthetic{index}', role=MINIMUM))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--structures', type=int, default=200)
    parser.add_argument('--samples', type=int, default=20000, help='generated structures per timing run')
    parser.add_argument('--output', type=Path, help='JSON file for the results')
    args = parser.parse_args()

    config = GanConfig(steps=args.steps, n_max=16, log_every=max(1, args.steps // 10))
    records = synthetic_records(args.structures, seed=0)
    with tempfile.TemporaryDirectory() as directory:
        tick = time.perf_counter()
        result = train(records, config, directory, device=args.device)
        training_seconds = time.perf_counter() - tick
        summary = read_checkpoint_summary(Path(directory) / 'model.pt')
        per_target = max(1, args.samples // len(TARGETS))
        generate(Path(directory) / 'model.pt', TARGETS, 64, device=args.device)  # warm-up
        rates = []
        for seed in (1, 2):
            tick = time.perf_counter()
            generated = generate(Path(directory) / 'model.pt', TARGETS, per_target, seed=seed, device=args.device)
            rates.append(len(generated) / (time.perf_counter() - tick))
    report = {
        'device': result.metrics['device'],
        'device_name': torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'steps': summary['step'],
        'training_seconds': training_seconds,
        'seconds_per_step': result.metrics['seconds_per_step'],
        'mixed_precision': result.metrics['mixed_precision'],
        'generated_per_run': per_target * len(TARGETS),
        'structures_per_second_runs': rates,
        'generated_validity_fraction_during_training': result.metrics['generated_validity_fraction'],
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + '\n')


if __name__ == '__main__':
    main()
