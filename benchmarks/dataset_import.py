"""Benchmark of dataset imports: time, peak memory, node file size and random access.

Cases: the Ti-O extxyz set of Artrith & Urban (7,815 structures with energies and forces), the Nb-O CIFs of OQMD
(with cleaning) and a synthetic dataset of 100,000 structures that must build and load without being held in memory.

    python benchmarks/dataset_import.py [--data /work/shared/data] [--synthetic 100000] \
        [--output docs/benchmarks/dataset_import.md]

Runs in a temporary AiiDA profile (SQLite, no broker) that is deleted afterwards. Times are wall-clock seconds of one
run; peak memory is the tracemalloc peak of Python and NumPy allocations of a second run (HDF5's own buffers are not
counted) and the process's maximum resident set size at the end.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _profile import temporary_profile

LOAD_AT_START = os.getloadavg()[0]


def measure(function: Callable[[], Any], memory: bool = True) -> tuple[Any, float, float | None]:
    """Run ``function`` timed, then (``memory``) again under tracemalloc; return result, seconds, peak MB."""
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    peak = None
    if memory:
        tracemalloc.start()
        function()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return result, seconds, peak


def random_access(dataset, count: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean milliseconds per random record: with one open file, and through ``dataset[i]`` (opens each time)."""
    indices = np.random.default_rng(seed).integers(0, dataset.size, count)
    start = time.perf_counter()
    with dataset.open() as datafile:
        for index in indices:
            datafile[int(index)]
    open_once = (time.perf_counter() - start) / count * 1e3
    start = time.perf_counter()
    for index in indices[:100]:
        dataset[int(index)]
    each = (time.perf_counter() - start) / 100 * 1e3
    return open_once, each


def iterate(dataset) -> float:
    start = time.perf_counter()
    atoms = sum(record.num_atoms for record in dataset)
    assert atoms == dataset.base.attributes.get('num_atoms_total')
    return time.perf_counter() - start


def synthetic_records(count: int, seed: int = 0) -> Iterator:
    """``count`` random structures of 8-48 atoms with energies and forces, generated one at a time."""
    from aiida_crystalgan.io.datafile import StructureRecord

    rng = np.random.default_rng(seed)
    for i in range(count):
        natoms = int(rng.integers(8, 49))
        cell = np.eye(3) * (natoms * 12.0) ** (1 / 3)
        yield StructureRecord(
            numbers=rng.choice([8, 41], natoms),
            positions=rng.random((natoms, 3)) @ cell,
            cell=cell,
            energy=-8.0 * natoms + rng.normal(),
            forces=rng.normal(size=(natoms, 3)),
            source=f'synthetic-{i // 100}',
            label=str(i),
        )


def case_file_import(name: str, paths: list[Path], cleaning: dict | None) -> dict[str, Any]:
    from aiida_crystalgan.importers.files import import_files

    dataset, seconds, peak = measure(lambda: import_files(paths, cleaning=cleaning))
    start = time.perf_counter()
    dataset.store()
    store_seconds = time.perf_counter() - start
    open_once, each = random_access(dataset)
    report = dataset.metadata['cleaning']
    return {
        'case': name,
        'structures': dataset.size,
        'atoms': dataset.base.attributes.get('num_atoms_total'),
        'import_s': seconds,
        'store_s': store_seconds,
        'peak_mb': peak,
        'file_mb': dataset.base.attributes.get('file_size') / 1e6,
        'random_ms': open_once,
        'random_reopen_ms': each,
        'iterate_s': iterate(dataset),
        'dropped': report['counts'],
    }


def case_synthetic(count: int) -> dict[str, Any]:
    from aiida_crystalgan.data.dataset import CrystalDatasetData

    raw_mb = 0.0
    for record in synthetic_records(count):
        raw_mb += (record.positions.nbytes + record.forces.nbytes + record.numbers.nbytes + record.cell.nbytes) / 1e6
    dataset, seconds, peak = measure(lambda: CrystalDatasetData(synthetic_records(count)))
    start = time.perf_counter()
    dataset.store()
    store_seconds = time.perf_counter() - start
    tracemalloc.start()
    start = time.perf_counter()
    from aiida import orm

    reloaded = orm.load_node(dataset.pk)
    with reloaded.open() as datafile:
        for index in np.random.default_rng(1).integers(0, count, 1000):
            datafile[int(index)]
    load_seconds = time.perf_counter() - start
    load_peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    open_once, each = random_access(reloaded)
    return {
        'case': f'synthetic {count:,}',
        'structures': dataset.size,
        'atoms': dataset.base.attributes.get('num_atoms_total'),
        'import_s': seconds,
        'store_s': store_seconds,
        'peak_mb': peak,
        'raw_mb': raw_mb,
        'file_mb': dataset.base.attributes.get('file_size') / 1e6,
        'random_ms': open_once,
        'random_reopen_ms': each,
        'load_s': load_seconds,
        'load_peak_mb': load_peak,
        'dropped': {},
    }


def write_markdown(results: list[dict[str, Any]], path: Path, command: str) -> str:
    lines = [
        '# Benchmark: dataset import',
        '',
        f'Command: `{command}`',
        '',
        f'Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python '
        f'{platform.python_version()}; temporary SQLite profile. Peak = tracemalloc peak of Python/NumPy allocations '
        'during the import (a second run); maximum RSS of the whole benchmark process: '
        f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB.',
        '',
        f'Load average (1 min) at the start / end: {LOAD_AT_START:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} '
        'cores: these machines are shared, so the times are upper bounds of an idle machine.',
        '',
        'Random access: `with dataset.open() as data: data[i]` (file opened once) and `dataset[i]` (opens the '
        'repository file and reads the offsets on every call: use `open()` for more than a few records).',
        '',
        '| case | structures | atoms | import (s) | store (s) | peak (MB) | file (MB) | random access (ms/record, '
        'open once / reopen) | dropped |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in results:
        dropped = ', '.join(f'{n} {reason}' for reason, n in r['dropped'].items()) or '-'
        lines.append(
            f'| {r["case"]} | {r["structures"]:,} | {r["atoms"]:,} | {r["import_s"]:.1f} | {r["store_s"]:.2f} '
            f'| {r["peak_mb"]:.1f} | {r["file_mb"]:.1f} | {r["random_ms"]:.2f} / {r["random_reopen_ms"]:.1f} '
            f'| {dropped} |'
        )
    for r in results:
        if 'iterate_s' in r:
            lines.append(f'\n{r["case"]}: full iteration over all records {r["iterate_s"]:.1f} s.')
        if 'raw_mb' in r:
            lines.append(
                f'\n{r["case"]}: the arrays of all records take {r["raw_mb"]:.0f} MB; building the node '
                f'peaked at {r["peak_mb"]:.0f} MB of Python/NumPy memory, so the set is never held in memory '
                f'(let alone twice). Reloading the node and reading 1,000 random records took '
                f'{r["load_s"]:.2f} s with a peak of {r["load_peak_mb"]:.1f} MB.'
            )
    text = '\n'.join(lines) + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=Path('/work/shared/data'))
    parser.add_argument('--synthetic', type=int, default=100_000, help='Size of the synthetic set (0: skip).')
    parser.add_argument('--output', type=Path, default=Path('docs/benchmarks/dataset_import.md'))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix='crystalgan-benchmark-'))
    try:
        temporary_profile(workdir)
        results = []
        tio = args.data / 'ti-o_artrith2016' / 'TiO2_artrith2016_7815.extxyz.gz'
        log = functools.partial(print, file=sys.stderr, flush=True)
        if tio.exists():
            log('Ti-O ...')
            results.append(case_file_import('Ti-O extxyz (no cleaning)', [tio], None))
            results.append(case_file_import('Ti-O extxyz (default cleaning)', [tio], {}))
        nbo = args.data / 'nb-o_oqmd' / 'cif'
        if nbo.exists():
            log('Nb-O ...')
            results.append(
                case_file_import(
                    'Nb-O OQMD CIFs (cleaning: volume <= 25, dedupe)',
                    [nbo],
                    {'max_volume_per_atom': 25.0, 'dedupe': True},
                )
            )
        if args.synthetic:
            log('synthetic ...')
            results.append(case_synthetic(args.synthetic))
        command = 'python ' + ' '.join([sys.argv[0], *sys.argv[1:]])
        print(write_markdown(results, args.output, command))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
