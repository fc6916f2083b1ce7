"""Export the predicted structures of a campaign: one file per structure and their evaluation in a CSV beside them."""

from __future__ import annotations

from pathlib import Path

from aiida import orm

from aiida_crystalgan.tools.campaigns import candidates_frame, predicted_structures

# Export format → (ASE writer, file suffix).
FORMATS = {'cif': ('cif', 'cif'), 'poscar': ('vasp', 'vasp'), 'extxyz': ('extxyz', 'extxyz')}
TABLE = 'candidates.csv'


def export_candidates(
    campaign: orm.WorkflowNode, directory: str | Path, fmt: str = 'cif', force: bool = False
) -> list[Path]:
    """Write each predicted structure of ``campaign`` to ``<pk>_<formula>.<suffix>`` in ``directory``, plus
    ``candidates.csv`` (one row per structure with its file and evaluation); return the structure files.

    Raises ValueError on an unknown format or no predicted structure, FileExistsError when ``directory`` is not empty
    and ``force`` is false (existing files of the same names are then overwritten).
    """
    from ase.io import write

    if fmt not in FORMATS:
        raise ValueError(f'unknown export format `{fmt}`: choose one of {", ".join(FORMATS)}')
    structures = {node.pk: node for node in predicted_structures(campaign).values()}
    if not structures:
        raise ValueError(f'campaign <{campaign.pk}> has no predicted structures to export')
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise FileExistsError(f'`{directory}` is not empty: choose another directory or overwrite with force')
    directory.mkdir(parents=True, exist_ok=True)
    ase_format, suffix = FORMATS[fmt]
    frame = candidates_frame(campaign)
    paths = []
    for pk, formula in frame['formula'].items():
        structure = structures[pk]
        path = directory / f'{pk}_{formula or structure.get_formula()}.{suffix}'
        write(path, structure.get_ase(), format=ase_format)
        paths.append(path)
    frame.insert(0, 'file', [path.name for path in paths])
    frame.to_csv(directory / TABLE)
    return paths
