"""``dataset`` commands: import structures (OPTIMADE, files, AiiDA groups), show, export, stats, clean, split."""

from __future__ import annotations

import functools
from pathlib import Path

import click
from aiida.cmdline.params import arguments, options, types
from aiida.cmdline.utils import decorators, echo

from aiida_crystalgan.io.datafile import ROLES

DATASET = arguments.DATA(
    'dataset',
    nargs=1,
    type=types.DataParamType(sub_classes=('aiida.data:crystalgan.dataset',)),
)


def role_option(default: str | None, help_: str):
    """``--role`` of the import commands: the role of every imported structure."""
    return click.option(
        '--role', type=click.Choice(ROLES), default=default, show_default=default is not None, help=help_
    )


def _roles_line(dataset) -> str:
    return f'{dataset.num_minima} minima, {dataset.num_labelled} labelled'


def cleaning_options(command):
    """Options of ``CleaningOptions``; the report is printed and stored in the dataset metadata."""
    decorators_ = [
        click.option(
            '--clean/--no-clean',
            default=True,
            show_default=True,
            help='Apply the cleaning checks below (reported, never silent).',
        ),
        click.option(
            '--min-distance',
            type=float,
            default=0.5,
            show_default=True,
            help='Drop structures with atoms closer than this (Å).',
        ),
        click.option('--min-volume-per-atom', type=float, help='Drop structures below this volume per atom (Å^3).'),
        click.option('--max-volume-per-atom', type=float, help='Drop structures above this volume per atom (Å^3).'),
        click.option('--volume-zscore', type=float, help='Drop robust z-score outliers of the volume per atom.'),
        click.option('--allowed-elements', help='Comma-separated elements; drop structures with others.'),
        click.option('--require-energies', is_flag=True, help='Drop structures without a finite energy.'),
        click.option('--require-forces', is_flag=True, help='Drop structures without finite forces.'),
        click.option('--dedupe', is_flag=True, help='Drop duplicates (pymatgen StructureMatcher), keep lowest energy.'),
    ]
    return functools.reduce(lambda f, decorator: decorator(f), reversed(decorators_), command)


def split_options(command):
    decorators_ = [
        click.option('--splits', type=float, nargs=3, help='Train, validation and test fractions, e.g. 0.8 0.1 0.1.'),
        click.option('--folds', type=int, help='Number of cross-validation folds.'),
        click.option('--seed', type=int, default=0, show_default=True, help='Seed of splits and folds.'),
        click.option(
            '--group-by',
            type=click.Choice(['source', 'label', 'composition']),
            help='Keep structures sharing this in the same split and fold.',
        ),
    ]
    return functools.reduce(lambda f, decorator: decorator(f), reversed(decorators_), command)


def _cleaning(kwargs: dict) -> dict | None:
    """``CleaningOptions`` as a dict from the command-line options (popped from ``kwargs``)."""
    clean = kwargs.pop('clean')
    allowed = kwargs.pop('allowed_elements')
    values = {
        'min_distance': kwargs.pop('min_distance'),
        'min_volume_per_atom': kwargs.pop('min_volume_per_atom'),
        'max_volume_per_atom': kwargs.pop('max_volume_per_atom'),
        'max_volume_zscore': kwargs.pop('volume_zscore'),
        'allowed_elements': [e.strip() for e in allowed.split(',')] if allowed else None,
        'require_energies': kwargs.pop('require_energies'),
        'require_forces': kwargs.pop('require_forces'),
        'dedupe': kwargs.pop('dedupe'),
    }
    return values if clean else None


def _node_options(kwargs: dict) -> dict:
    return {
        'splits': kwargs.pop('splits') or None,
        'folds': kwargs.pop('folds'),
        'seed': kwargs.pop('seed'),
        'group_by': kwargs.pop('group_by'),
    }


def _store(dataset, label: str | None, description: str | None, group=None):
    """Store ``dataset`` (when not yet stored), add it to ``group`` and print what was done."""
    if label:
        dataset.label = label
    if description:
        dataset.description = description
    if not dataset.is_stored:
        dataset.store()
    if group is not None:
        group.add_nodes(dataset)
    report = dataset.metadata.get('cleaning', {})
    for item in report.get('dropped', [])[:20]:
        echo.echo_warning(f'dropped {item["label"] or item["source"]}: {item["reason"]} ({item["detail"]})')
    if len(report.get('dropped', [])) > 20:
        echo.echo_warning(f'... and {len(report["dropped"]) - 20} more: `dataset show {dataset.pk}` lists them all')
    echo.echo_success(
        f'stored CrystalDatasetData<{dataset.pk}> with {dataset.size} structures '
        f'({report.get("num_kept", dataset.size)} of {report.get("num_input", dataset.size)} kept; '
        f'{_roles_line(dataset)})'
    )


def _import_errors(function):
    """Turn the importers' errors into a clean CLI error instead of a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from aiida_crystalgan.importers import OptimadeError

        try:
            return function(*args, **kwargs)
        except (OptimadeError, ValueError, TypeError) as exception:
            echo.echo_critical(str(exception))

    return wrapper


def import_options(command):
    """What every ``dataset import`` command shares: cleaning and split options, label, description, target group,
    the database environment and clear messages for import errors."""
    shared = (
        cleaning_options,
        split_options,
        options.LABEL(),
        options.DESCRIPTION(),
        options.GROUP(help='Add the dataset to this group.'),
        decorators.with_dbenv(),
        _import_errors,
    )
    for decorator in reversed(shared):
        command = decorator(command)
    return command


@click.group('dataset')
def dataset():
    """Import, inspect, export and prepare datasets of structures with energies and forces."""


@dataset.group('import')
def dataset_import():
    """Import structures into a new dataset node."""


@dataset_import.command('optimade')
@click.argument('base_url')
@click.option('-e', '--elements', help='Comma-separated elements of the chemical system, e.g. Nb,O.')
@click.option('--any-other-elements', is_flag=True, help='Also structures with further elements.')
@click.option('--nelements', type=int, help='Exact number of elements.')
@click.option('--filter', 'filter_', help='A full OPTIMADE filter (instead of --elements/--nelements).')
@click.option('--page-limit', type=int, default=100, show_default=True)
@click.option('--max-results', type=int, help='Stop after this many entries.')
@role_option('minimum', 'Role of the structures: database entries are known phases (minima).')
@import_options
def import_optimade_command(
    base_url,
    elements,
    any_other_elements,
    nelements,
    filter_,
    page_limit,
    max_results,
    role,
    label,
    description,
    group,
    **kwargs,
):
    """Import the structures of the OPTIMADE provider BASE_URL matching a filter."""
    from aiida_crystalgan.importers.optimade import build_filter, import_optimade

    if filter_ is None:
        element_list = [e.strip() for e in elements.split(',')] if elements else None
        filter_ = build_filter(element_list, nelements, elements_only=not any_other_elements)
    echo.echo_report(f'querying {base_url} with filter: {filter_ or "(none)"}')
    cleaning = _cleaning(kwargs)
    node = import_optimade(
        base_url,
        filter_,
        page_limit=page_limit,
        max_results=max_results,
        cleaning=cleaning,
        role=role,
        **_node_options(kwargs),
    )
    _store(node, label, description, group)


@dataset_import.command('files')
@click.argument('paths', nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    '-F',
    '--format',
    'fmt',
    type=click.Choice(['cif', 'poscar', 'extxyz', 'vasprun', 'outcar']),
    help='Format of all files (default: guessed from each name).',
)
@click.option('--index', default=':', show_default=True, help='Frames of multi-frame files (ASE syntax, -1: last).')
@role_option(
    None,
    'Role of every structure [default: minimum for CIF and POSCAR, labelled for trajectories '
    '(extxyz, vasprun.xml, OUTCAR) unless an extxyz frame names its role].',
)
@import_options
def import_files_command(paths, fmt, index, role, label, description, group, **kwargs):
    """Import structure files or directories of them (CIF, POSCAR/CONTCAR, extxyz, vasprun.xml, OUTCAR)."""
    from aiida_crystalgan.importers.files import import_files

    cleaning = _cleaning(kwargs)
    _store(
        import_files(paths, fmt, index, cleaning=cleaning, role=role, **_node_options(kwargs)),
        label,
        description,
        group,
    )


@dataset_import.command('group')
@arguments.GROUP('source_group')
@import_options
def import_group_command(source_group, label, description, group, **kwargs):
    """Build a dataset (calcfunction, with provenance) from a group of structures or finished engine processes."""
    from aiida_crystalgan.importers.nodes import import_group

    parameters = {key: value for key, value in _node_options(kwargs).items() if value is not None}
    cleaning = _cleaning(kwargs)
    if cleaning is not None:
        parameters['cleaning'] = cleaning
    _store(import_group(source_group, parameters), label, description, group)


@dataset.command('show')
@DATASET
@click.option('--dropped', is_flag=True, help='List every structure dropped on import, with the reason.')
@decorators.with_dbenv()
def dataset_show(dataset, dropped):
    """Show the summary of a dataset."""
    attributes = dataset.base.attributes.all
    metadata = attributes.get('metadata', {})
    lines = [
        ('PK / UUID', f'{dataset.pk} / {dataset.uuid}'),
        ('label', dataset.label or '-'),
        ('structures', attributes['size']),
        ('roles', _roles_line(dataset)),
        ('atoms', f'{attributes["num_atoms_total"]} (max {attributes["num_atoms_max"]} per structure)'),
        ('elements', ' '.join(attributes['elements'])),
        (
            'with energies / forces / stress',
            f'{attributes["num_with_energies"]} / {attributes["num_with_forces"]} / {attributes["num_with_stress"]}',
        ),
        ('sources', attributes['sources_count']),
        ('file size', f'{attributes["file_size"] / 1e6:.2f} MB'),
        ('provider', metadata.get('provider', '-')),
    ]
    for key in ('base_url', 'filter', 'group', 'parent'):
        if key in metadata:
            lines.append((key, metadata[key]))
    if 'energy_per_atom' in attributes:
        stats = attributes['energy_per_atom']
        lines.append(
            (
                'energy per atom (eV)',
                f'{stats["min"]:.4f} .. {stats["max"]:.4f} (mean {stats["mean"]:.4f}, std {stats["std"]:.4f})',
            )
        )
    if 'splits' in attributes:
        lines.append(('splits', ', '.join(f'{name} {len(idx)}' for name, idx in attributes['splits'].items())))
    if 'folds' in attributes:
        lines.append(('folds', len(attributes['folds'])))
    compositions = sorted(attributes['compositions'].items(), key=lambda item: -item[1])
    lines.append(
        (
            'compositions',
            ', '.join(f'{formula} {count}' for formula, count in compositions[:10])
            + (f' (+{len(compositions) - 10} more)' if len(compositions) > 10 else ''),
        )
    )
    report = metadata.get('cleaning')
    if report:
        counts = ', '.join(f'{count} {reason}' for reason, count in report['counts'].items()) or 'none'
        lines.append(('cleaning', f'{report["num_kept"]} of {report["num_input"]} kept; dropped: {counts}'))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        echo.echo(f'{key:<{width}}  {value}')
    if dropped and report:
        for item in report['dropped']:
            echo.echo(f'  {item["label"] or item["source"]}: {item["reason"]} ({item["detail"]})')


@dataset.command('export')
@DATASET
@click.argument('path', type=click.Path(path_type=Path))
@click.option(
    '-F',
    '--format',
    'fmt',
    type=click.Choice(['extxyz', 'cif', 'h5']),
    default='extxyz',
    show_default=True,
    help='extxyz (energies, forces), cif (a folder, or a .zip), h5 (the raw file).',
)
@options.FORCE(help='Overwrite PATH if it exists.')
@decorators.with_dbenv()
def dataset_export(dataset, path, fmt, force):
    """Export a dataset to PATH."""
    if path.exists() and not force:
        echo.echo_critical(f'{path} exists: use --force to overwrite')
    written = dataset.write_file(path) if fmt == 'h5' else dataset.export(path, fmt)
    echo.echo_success(f'exported {dataset.size} structures to {written}')


@dataset.command('stats')
@DATASET
@click.option(
    '-o',
    '--output-dir',
    type=click.Path(file_okay=False, path_type=Path),
    default=Path('.'),
    show_default=True,
    help='Folder of the PNG plots.',
)
@click.option('--top', type=int, default=20, show_default=True, help='Compositions shown in the histogram.')
@decorators.with_dbenv()
def dataset_stats(dataset, output_dir, top):
    """Print statistics of a dataset and plot compositions, energy per atom and volume per atom (PNG)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    output_dir.mkdir(parents=True, exist_ok=True)
    num_atoms = dataset.get_num_atoms()
    energies_per_atom = dataset.get_energies() / num_atoms
    energies_per_atom = energies_per_atom[np.isfinite(energies_per_atom)]
    volumes = dataset.get_volumes_per_atom()
    compositions = sorted(dataset.compositions.items(), key=lambda item: -item[1])[:top]

    echo.echo(
        f'structures: {dataset.size} ({_roles_line(dataset)}), compositions: {len(dataset.compositions)}, '
        f'atoms per structure: {num_atoms.min()}..{num_atoms.max()} (mean {num_atoms.mean():.1f})'
    )
    echo.echo(f'volume per atom (Å^3): {volumes.min():.3f}..{volumes.max():.3f} (median {np.median(volumes):.3f})')
    if len(energies_per_atom):
        echo.echo(
            f'energy per atom (eV): {energies_per_atom.min():.4f}..{energies_per_atom.max():.4f} '
            f'(median {np.median(energies_per_atom):.4f}, {len(energies_per_atom)} structures)'
        )
    else:
        echo.echo('energy per atom: no energies')

    written = []
    figure, axis = plt.subplots(figsize=(max(4.0, 0.4 * len(compositions)), 3.5))
    axis.bar([formula for formula, _ in compositions], [count for _, count in compositions])
    axis.set_ylabel('structures')
    axis.set_title(f'compositions (top {len(compositions)})')
    axis.tick_params(axis='x', rotation=90)
    written.append(_save(figure, output_dir / 'compositions.png'))
    for values, name, xlabel in [
        (energies_per_atom, 'energy_per_atom', 'energy per atom (eV)'),
        (volumes, 'volume_per_atom', 'volume per atom (Å$^3$)'),
    ]:
        if not len(values):
            continue
        figure, axis = plt.subplots(figsize=(4.5, 3.5))
        axis.hist(values, bins=min(50, max(5, len(values) // 5)))
        axis.set_xlabel(xlabel)
        axis.set_ylabel('structures')
        written.append(_save(figure, output_dir / f'{name}.png'))
    echo.echo_success(f'plots: {", ".join(str(path) for path in written)}')


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


@dataset.command('clean')
@DATASET
@cleaning_options
@decorators.with_dbenv()
def dataset_clean(dataset, **kwargs):
    """Derive a cleaned dataset (calcfunction `clean_dataset`, the report in its metadata)."""
    from aiida import orm

    from aiida_crystalgan.importers.transforms import clean_dataset

    kwargs['clean'] = True
    result, process = clean_dataset.run_get_node(dataset, orm.Dict(_cleaning(kwargs)))
    if not process.is_finished_ok:
        echo.echo_critical(f'cleaning failed: {process.exit_message}')
    _store(result, None, None)


@dataset.command('split')
@DATASET
@click.option('--fractions', type=float, nargs=3, help='Train, validation and test fractions, e.g. 0.8 0.1 0.1.')
@click.option('--folds', type=int, help='Number of cross-validation folds.')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--group-by', type=click.Choice(['source', 'label', 'composition']))
@decorators.with_dbenv()
def dataset_split(dataset, fractions, folds, seed, group_by):
    """Derive a copy with seeded splits and/or folds (calcfunction `split_dataset`)."""
    from aiida import orm

    from aiida_crystalgan.importers.transforms import split_dataset

    parameters = {
        'seed': seed,
        **({'fractions': list(fractions)} if fractions else {}),
        **({'folds': folds} if folds else {}),
        **({'group_by': group_by} if group_by else {}),
    }
    result, process = split_dataset.run_get_node(dataset, orm.Dict(parameters))
    if not process.is_finished_ok:
        echo.echo_critical(f'splitting failed: {process.exit_message}')
    echo.echo_success(f'CrystalDatasetData<{result.pk}>: splits and folds of CrystalDatasetData<{dataset.pk}>')
