"""Import structures from files: CIF, POSCAR/CONTCAR, extended XYZ, vasprun.xml and OUTCAR.

CIFs are read with pymatgen (symmetry operations, partial occupancies detected), everything else with ASE, which
keeps energies, forces and stress. Files are streamed frame by frame; a file that cannot be read, or holds a structure
without a 3D lattice or with NaN coordinates, raises :class:`FileImportError` naming it. Compressed files are
decompressed to a temporary file of at most :data:`MAX_DECOMPRESSED_BYTES`.

Roles (:data:`DEFAULT_ROLES`): structure files (CIF, POSCAR) hold known phases, so their structures are ``minimum``;
trajectories (extxyz, vasprun.xml, OUTCAR) hold MD frames and relaxation steps with energies and forces, so theirs are
``labelled``, except extxyz frames that carry a ``role`` in their comment line (as written by the dataset export). An
explicit ``role`` overrides both.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.io.datafile import LABELLED, MINIMUM, StructureRecord, check_role

from .cleaning import CleaningOptions, CleaningReport, build_dataset

__all__ = ('DEFAULT_ROLES', 'FileImportError', 'FORMATS', 'detect_format', 'import_files', 'iter_file_records')

#: File formats and the ASE format name used to read them (``cif`` is read by pymatgen).
FORMATS = {'cif': 'cif', 'poscar': 'vasp', 'extxyz': 'extxyz', 'vasprun': 'vasp-xml', 'outcar': 'vasp-out'}
#: Role of the structures of each format when none is given.
DEFAULT_ROLES = {'cif': MINIMUM, 'poscar': MINIMUM, 'extxyz': LABELLED, 'vasprun': LABELLED, 'outcar': LABELLED}


_OPENERS = {'.gz': gzip.open, '.bz2': bz2.open, '.xz': lzma.open}
#: Most bytes that one compressed file may decompress to (a guard against decompression bombs filling /tmp).
MAX_DECOMPRESSED_BYTES = 4 * 1024**3
_CHUNK_BYTES = 1 << 20


class FileImportError(ValueError):
    """A file could not be read as a structure file."""


def detect_format(path: Path) -> str:
    """Guess the format of ``path`` from its name (compressed ``.gz``/``.bz2``/``.xz`` allowed)."""
    name = re.sub(r'\.(gz|bz2|xz)$', '', path.name.lower())
    if name.endswith('.cif'):
        return 'cif'
    if name.endswith(('.extxyz', '.xyz')):
        return 'extxyz'
    if name.startswith('vasprun') and name.endswith('.xml'):
        return 'vasprun'
    if name.startswith('outcar'):
        return 'outcar'
    if name.startswith(('poscar', 'contcar')) or name.endswith(('.vasp', '.poscar')):
        return 'poscar'
    raise FileImportError(
        f'{path}: unsupported file type; name it *.cif, *.extxyz/*.xyz, POSCAR*/CONTCAR*/*.vasp, '
        'vasprun*.xml or OUTCAR* (optionally compressed), or pass the format explicitly'
    )


def _read_cif(path: Path, report: CleaningReport, role: str) -> Iterator[StructureRecord]:
    import warnings

    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        parser = CifParser(path)
        structures = parser.parse_structures(primitive=False)
    if not structures:
        raise ValueError('no structure could be parsed')
    for i, structure in enumerate(structures):
        label = path.name if len(structures) == 1 else f'{path.name}:{i}'
        if not structure.is_ordered:
            report.num_input += 1
            report.drop('disordered', f'partial occupancies in {structure.composition}', source=str(path), label=label)
            continue
        problem = check_lattice(structure.lattice.matrix, structure.cart_coords)
        if problem:
            raise FileImportError(f'{path}: structure {i} is not a crystal: {problem}')
        yield StructureRecord.from_pymatgen(structure, source=str(path), label=label, role=role)


def _decompress(path: Path, target: Path) -> None:
    """Decompress ``path`` into ``target`` chunk by chunk; stop with :class:`FileImportError` beyond the limit."""
    limit = MAX_DECOMPRESSED_BYTES
    written = 0
    with _OPENERS[path.suffix](path, 'rb') as source, target.open('wb') as handle:
        while chunk := source.read(_CHUNK_BYTES):
            written += len(chunk)
            if written > limit:
                raise FileImportError(
                    f'{path}: decompresses to more than {limit / 1024**3:.1f} GiB; decompress it '
                    'yourself where there is room, or split it'
                )
            handle.write(chunk)


def check_lattice(cell: Any, positions: Any, pbc: Any = (True, True, True)) -> str | None:
    """Why a structure with ``cell`` and ``positions`` is not a crystal (NaN values, no lattice), or ``None``."""
    cell, positions = np.asarray(cell, dtype=float), np.asarray(positions, dtype=float)
    if not np.isfinite(cell).all():
        return 'its lattice holds NaN or infinite values'
    if not np.isfinite(positions).all():
        return 'its positions hold NaN or infinite values'
    if not np.all(pbc) or abs(np.linalg.det(cell)) < 1e-6:
        return (
            'it has no 3D periodic lattice (a molecule or a slab?): give the cell, e.g. `Lattice="..."` and '
            '`pbc="T T T"` in an extended XYZ comment line'
        )
    return None


def _read_ase(path: Path, fmt: str, index: str, role: str | None) -> Iterator[StructureRecord]:
    """Frames of ``path``; without ``role``, an extxyz frame's ``role`` in its comment line, else the format's."""
    from ase.io import iread

    with contextlib.ExitStack() as stack:
        readable = path
        if path.suffix in _OPENERS:
            # ASE seeks back to every frame: in a compressed stream each seek decompresses from the start again.
            tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix='crystalgan-import-'))
            readable = Path(tmpdir) / path.stem
            _decompress(path, readable)
        for i, atoms in enumerate(iread(readable, index=index, format=FORMATS[fmt])):
            problem = check_lattice(atoms.cell[:], atoms.positions, atoms.pbc)
            if problem:
                raise FileImportError(f'{path}: structure {i} is not a crystal: {problem}')
            frame_role = role or (atoms.info.get('role') if fmt == 'extxyz' else None) or DEFAULT_ROLES[fmt]
            yield StructureRecord.from_ase(atoms, source=str(path), label=f'{path.name}:{i}', role=frame_role)


def iter_file_records(
    path: str | Path,
    fmt: str | None = None,
    index: str = ':',
    report: CleaningReport | None = None,
    role: str | None = None,
) -> Iterator[StructureRecord]:
    """Yield the records of one file; ``index`` selects frames of multi-frame files (ASE syntax, e.g. ``-1``).

    Disordered CIF structures are recorded in ``report`` instead of being yielded. ``role`` (``minimum`` or
    ``labelled``) overrides the role guessed from the format (see :data:`DEFAULT_ROLES`).
    """
    if role is not None:
        check_role(role)
    path = Path(path)
    if not path.is_file():
        raise FileImportError(f'{path}: no such file')
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise FileImportError(f'{path}: unknown format `{fmt}`, choose one of {", ".join(FORMATS)}')
    report = report if report is not None else CleaningReport()
    count = 0
    try:
        records = _read_cif(path, report, role or MINIMUM) if fmt == 'cif' else _read_ase(path, fmt, index, role)
        for record in records:
            count += 1
            yield record
    except FileImportError:
        raise
    except Exception as exception:
        raise FileImportError(f'{path}: cannot read as {fmt}: {type(exception).__name__}: {exception}') from exception
    if count == 0 and not report.dropped:
        raise FileImportError(f'{path}: no structure found in this {fmt} file')


def _expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files of ``paths``, directories replaced by their structure files; also the other files found in directories."""
    files: list[Path] = []
    skipped: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        for candidate in sorted(path.rglob('*')):
            if not candidate.is_file() or candidate.name.startswith('.'):
                continue
            try:
                detect_format(candidate)
            except FileImportError:
                skipped.append(str(candidate))
            else:
                files.append(candidate)
    return files, skipped


def import_files(
    paths: Iterable[str | Path],
    fmt: str | None = None,
    index: str = ':',
    cleaning: CleaningOptions | dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    role: str | None = None,
    **kwargs,
) -> CrystalDatasetData:
    """Read structure files (or directories of them) into one unstored ``CrystalDatasetData``.

    In directories, files whose name matches no format are skipped and listed in ``metadata['skipped_files']``.

    :param fmt: force the format (``cif``, ``poscar``, ``extxyz``, ``vasprun``, ``outcar``) instead of guessing it.
    :param index: frames of multi-frame files, ASE syntax (``:`` all, ``-1`` the last).
    :param cleaning: :class:`CleaningOptions` (or their dict) to apply; the report lands in ``metadata['cleaning']``.
    :param role: role of every structure (``minimum`` or ``labelled``) instead of the format's (:data:`DEFAULT_ROLES`).
    :param kwargs: passed to ``CrystalDatasetData`` (``splits``, ``folds``, ``seed``, ``group_by``).
    """
    files, skipped = _expand(paths)
    if not files:
        raise FileImportError(f'no structure files given (skipped in directories: {skipped[:10]})')
    if role is not None:
        check_role(role)
    report = CleaningReport()
    options = CleaningOptions.from_dict(cleaning) if isinstance(cleaning, dict) else cleaning
    records = (record for path in files for record in iter_file_records(path, fmt, index, report, role))
    metadata = {
        'provider': 'files',
        'files': [str(path) for path in files],
        'skipped_files': skipped,
        'options': {'format': fmt, 'index': index, 'role': role},
        **(metadata or {}),
    }
    return build_dataset(records, metadata, options, report, **kwargs)
