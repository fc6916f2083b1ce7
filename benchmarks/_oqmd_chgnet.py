"""OQMD Nb-O entries labelled with CHGNet, shared by the Nb-O benchmarks (imported as ``_oqmd_chgnet``).

Reads the OQMD Nb-O CIFs (folder with ``entries.csv`` and ``cif/``; entries above 25 Å^3/atom dropped), gives each a
CHGNet single point at the OQMD geometry and a CHGNet relaxation with the product's MLIP runner, relaxes the elemental
seeds of the system for the hull, and turns the labelled entries into training records. Every CHGNet result is a JSON
file in a :class:`Cache` keyed by a hash of its inputs, so an interrupted run resumes and a rerun only recomputes what
changed; the key format is the same in every benchmark, so they can share one cache folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

SYSTEM = 'Nb-O'
MAX_VOLUME_PER_ATOM = 25.0  # Å^3/atom: OQMD entries above this are implausible (see the data README)


def log(message: str) -> None:
    """Print a time-stamped progress line."""
    print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


class Cache:
    """JSON files keyed by a hash of their inputs, so an interrupted run resumes where it stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def get(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.folder / f'{key}.json'
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        path.with_suffix('.part').write_text(json.dumps(value))
        os.replace(path.with_suffix('.part'), path)
        return value


def structure_fingerprint_key(structure) -> list:
    """A JSON-able, rounded description of a structure for cache keys."""
    return [
        np.round(structure.lattice.matrix, 6).tolist(),
        [site.specie.Z for site in structure],
        np.round(structure.frac_coords, 6).tolist(),
    ]


def to_structure(result: dict[str, Any]):
    """pymatgen Structure from a runner result (numbers, positions, cell)."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(result['cell']), result['numbers'], result['positions'], coords_are_cartesian=True)


def to_atoms(structure):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def chgnet():
    """The CHGNet calculator of the product's MLIP engine (its weights ship in the wheel; nothing is downloaded)."""
    from aiida_crystalgan.calculations.mlip import MlipCalculation
    from aiida_crystalgan.mlip.calculators import load_calculator

    return load_calculator(MlipCalculation.get_protocol_values('forces', settings={'model': 'chgnet'})['settings'])


def read_oqmd(folder: Path) -> list[dict[str, Any]]:
    """OQMD entries (id, formula, space group, structure) of ``folder`` with at most ``MAX_VOLUME_PER_ATOM``."""
    from pymatgen.core import Structure

    entries = []
    with (folder / 'entries.csv').open() as handle:
        for row in csv.DictReader(handle):
            if float(row['volume_per_atom']) > MAX_VOLUME_PER_ATOM:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                structure = Structure.from_file(folder / row['cif'])
            entries.append(
                {
                    'id': int(row['oqmd_entry_id']),
                    'formula': structure.composition.reduced_formula,
                    'spacegroup': row['spacegroup_symbol'],
                    'structure': structure,
                }
            )
    return entries


def relax(
    structure, calculator, fmax: float, max_steps: int, relax_cell: bool = True, trajectory_frames: int = 0
) -> dict[str, Any]:
    """CHGNet relaxation with the MLIP runner, keeping ``trajectory_frames`` of its steps (the runner's
    ``trajectory``); adds wall time and never raises."""
    from aiida_crystalgan.mlip.runner import run_relax

    start = time.perf_counter()
    parameters = {
        'fmax': fmax,
        'max_steps': max_steps,
        'relax_cell': relax_cell,
        'trajectory_frames': trajectory_frames,
    }
    try:
        result = run_relax(to_atoms(structure), calculator, parameters)
    except Exception as exception:  # noqa: BLE001 - one failed relaxation must not stop the benchmark
        return {'error': f'{type(exception).__name__}: {exception}', 'seconds': time.perf_counter() - start}
    result['seconds'] = time.perf_counter() - start
    return result


def single_point(structure, calculator) -> dict[str, Any]:
    from aiida_crystalgan.mlip.runner import run_forces

    return run_forces(to_atoms(structure), calculator, {})


def relax_cached(structure, calculator, cache: Cache, fmax: float, max_steps: int) -> dict[str, Any]:
    """:func:`relax` of a generated candidate, through ``cache``."""
    params = (fmax, max_steps)
    return cache.get(
        Cache.key('candidate', structure_fingerprint_key(structure), params),
        lambda: relax(structure, calculator, *params),
    )


def label_oqmd(
    entries: list[dict[str, Any]], calculator, cache: Cache, fmax: float, max_steps: int, max_atoms: int | None
) -> None:
    """Add CHGNet single-point and relaxed results to every entry (in place): ``single_point``, ``relaxed`` (None when
    the entry has more than ``max_atoms`` atoms or its relaxation failed), ``energy`` and ``final_structure``."""
    for entry in entries:
        structure = entry['structure']
        key = structure_fingerprint_key(structure)
        entry['single_point'] = cache.get(Cache.key('sp', key), lambda s=structure: single_point(s, calculator))
        if max_atoms is None or len(structure) <= max_atoms:
            params = (fmax, max_steps)
            entry['relaxed'] = cache.get(
                Cache.key('relax', key, params), lambda s=structure, p=params: relax(s, calculator, *p)
            )
            if 'error' in entry['relaxed']:
                entry['relaxed'] = None
        else:
            entry['relaxed'] = None
        final = entry['relaxed'] or entry['single_point']
        entry['energy'] = float(final['energy'])
        entry['final_structure'] = to_structure(final)
        log(
            f'  OQMD {entry["id"]} {entry["formula"]} ({len(structure)} atoms): '
            f'{entry["energy"] / len(structure):.3f} eV/atom'
            + (f', relaxed in {entry["relaxed"]["steps"]} steps' if entry['relaxed'] else ', single point')
        )


def elemental_references(calculator, cache: Cache, fmax: float, max_steps: int) -> list[tuple[Any, float, str]]:
    """CHGNet-relaxed elemental seeds of the system: (structure, total energy, label); a molecular crystal keeps its
    cell."""
    from aiida_crystalgan.structures.prototypes import seed_structures

    references = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        seeds = seed_structures(SYSTEM)
    for seed in seeds:
        if not seed.structure.composition.is_element:
            continue
        molecular = 'molecular' in seed.label
        params = (fmax, max_steps, not molecular)
        result = cache.get(
            Cache.key('element', structure_fingerprint_key(seed.structure), params),
            lambda s=seed.structure, p=params: relax(s, calculator, *p[:2], relax_cell=p[2]),
        )
        references.append((to_structure(result), float(result['energy']), seed.label))
        log(
            f'  element {seed.label}: {result["energy"] / len(seed.structure):.3f} eV/atom '
            f'(cell {"fixed" if molecular else "relaxed"})'
        )
    return references


def training_records(entries: Iterable[dict[str, Any]]) -> list:
    """StructureRecords of labelled entries: the OQMD geometry (single point) and the relaxed geometry of each, with
    CHGNet energies and forces; the relaxed geometry (the OQMD one when not relaxed) is a ``minimum``, the other
    ``labelled``."""
    from aiida_crystalgan.io import LABELLED, MINIMUM, StructureRecord

    records = []
    for entry in entries:
        for kind in ('single_point', 'relaxed'):
            result = entry[kind]
            if result is None:
                continue
            role = MINIMUM if kind == 'relaxed' or entry['relaxed'] is None else LABELLED
            records.append(
                StructureRecord(
                    numbers=result['numbers'],
                    positions=result['positions'],
                    cell=result['cell'],
                    energy=result['energy'],
                    forces=result['forces'],
                    source=f'oqmd-{entry["id"]}:{kind}',
                    label=entry['formula'],
                    role=role,
                )
            )
    return records
