"""``aiida-crystalgan campaign``: submit a campaign and follow it."""

from __future__ import annotations

import time
from pathlib import Path

import click
import yaml
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo
from aiida.plugins.entry_point import get_entry_point_names

from aiida_crystalgan.cli.results import campaign_or_latest
from aiida_crystalgan.engines.base import ENGINE_GROUP
from aiida_crystalgan.workflows.protocols import DEFAULT_PROTOCOL, PROTOCOL_DIRECTORY, load_protocol_file

PROTOCOLS = list(load_protocol_file(PROTOCOL_DIRECTORY / 'campaign.yaml')['protocols'])

ENGINE_CODE_DEFAULT = {'mlip': 'crystalgan_mlip@localhost'}


def _load_code(label: str, what: str):
    from aiida import orm

    try:
        return orm.load_code(label)
    except Exception as exception:  # noqa: BLE001 - not existent, or ambiguous
        raise click.BadParameter(
            f'{what} code `{label}` not found ({exception}); run `aiida-crystalgan setup` or '
            'create it with `verdi code create`'
        ) from exception


def _seed_structures(group_label: str | None, files: tuple[str, ...], datasets: tuple[int, ...] = ()) -> dict:
    """Extra seeds from a group of StructureData, from structure files and from dataset nodes."""
    from aiida import orm

    structures = {}
    if group_label:
        try:
            group = orm.load_group(group_label)
        except Exception as exception:  # noqa: BLE001
            raise click.BadParameter(f'group `{group_label}` not found: {exception}') from exception
        found = [node for node in group.nodes if isinstance(node, orm.StructureData)]
        if not found:
            raise click.BadParameter(f'group `{group_label}` holds no StructureData')
        structures.update({f'group_{node.pk}': node for node in found})
    for index, path in enumerate(files):
        from pymatgen.core import Structure

        try:
            structure = Structure.from_file(path)
        except Exception as exception:  # noqa: BLE001 - report which file is bad
            raise click.BadParameter(f'cannot read a structure from `{path}`: {exception}') from exception
        structures[f'file_{index}'] = orm.StructureData(pymatgen=structure)
    structures.update({f'dataset_{pk}': structure_node(pk, '--structures-dataset') for pk in datasets})
    return structures


def structure_node(pk: int, option: str):
    """The structure or dataset node ``pk``; a clear error naming ``option`` for anything else."""
    from aiida import orm

    from aiida_crystalgan.data.dataset import CrystalDatasetData

    try:
        node = orm.load_node(pk)
    except Exception as exception:  # noqa: BLE001 - not existent
        raise click.BadParameter(f'no node with pk {pk}: {exception}', param_hint=option) from None
    if not isinstance(node, orm.StructureData | CrystalDatasetData):
        raise click.BadParameter(
            f'node {pk} is a {type(node).__name__}, not a structure or a dataset', param_hint=option
        )
    return node


def reference_phases(values: tuple[str, ...]) -> dict:
    """Reference phases from structure files, folders of CIF files and pks of structure or dataset nodes."""
    from aiida import orm
    from pymatgen.core import Structure

    from aiida_crystalgan.workflows.seeds import link_label

    references = {}
    for value in values:
        path = Path(value)
        if value.isdigit() and not path.exists():
            references[f'node_{value}'] = structure_node(int(value), '--references')
            continue
        files = sorted(path.glob('*.cif')) if path.is_dir() else [path]
        if not path.exists() or not files:
            raise click.BadParameter(
                f'`{value}` is neither a structure file, a folder of CIF files nor a node pk', param_hint='--references'
            )
        for file in files:
            try:
                structure = Structure.from_file(file)
            except Exception as exception:  # noqa: BLE001 - report which file is bad
                raise click.BadParameter(
                    f'cannot read a structure from `{file}`: {exception}', param_hint='--references'
                ) from exception
            node = orm.StructureData(pymatgen=structure)
            node.label = file.stem
            references[link_label(file.stem)] = node
    return references


def read_yaml(path: str | None) -> dict | None:
    """The mapping in a YAML file (``None`` without a path); a clear error when it is not a mapping."""
    if path is None:
        return None
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exception:
        raise click.BadParameter(f'`{path}` is not valid YAML: {exception}') from exception
    if not isinstance(content, dict):
        raise click.BadParameter(f'`{path}` must hold a mapping of keys to values')
    return content


def print_progress(node, last_log: int) -> int:
    """Print the report lines of a campaign and its descendants newer than log ``last_log``; return the newest log's
    id. A few queries (one per level of the call tree), so that following a large campaign stays cheap."""
    from aiida import orm
    from aiida.common.links import LinkType

    processes, callers = {node.pk}, {node.pk}
    while callers:  # one query per level of the call tree
        query = orm.QueryBuilder().append(orm.ProcessNode, filters={'id': {'in': list(callers)}}, tag='caller')
        query.append(
            orm.ProcessNode,
            with_incoming='caller',
            edge_filters={'type': {'in': [LinkType.CALL_CALC.value, LinkType.CALL_WORK.value]}},
            project='id',
        )
        callers = set(query.all(flat=True)) - processes
        processes |= callers
    logs = orm.QueryBuilder().append(
        orm.Log,
        filters={'id': {'>': last_log}, 'dbnode_id': {'in': sorted(processes)}},
        project=['id', 'time', 'dbnode_id', 'message'],
    )
    for log_id, logged, node_pk, message in sorted(logs.all()):
        echo.echo(f'{logged:%H:%M:%S} [{node_pk}] {message}')
        last_log = log_id
    return last_log


@click.group('campaign')
def campaign() -> None:
    """Run and follow structure-prediction campaigns."""


@campaign.command('submit')
@click.option('--system', required=True, help='Chemical system, e.g. `Nb-O`.')
@click.option(
    '--protocol',
    type=click.Choice(PROTOCOLS),
    default=DEFAULT_PROTOCOL,
    show_default=True,
    help='Protocol of every stage (each stage has its own protocol file).',
)
@click.option('--engine', type=click.Choice(get_entry_point_names(ENGINE_GROUP)), default='mlip', show_default=True)
@click.option('--engine-protocol', help='Numerical protocol of the engine (default: the campaign protocol).')
@click.option('--engine-code', help='Code of the engine (default: `crystalgan_mlip@localhost` for mlip).')
@click.option(
    '--engine-settings',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file of engine settings (e.g. potential family and mapping for VASP).',
)
@click.option(
    '--engine-options',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file of scheduler options of the engine calculations (resources, queue, walltime).',
)
@click.option('--train-code', default='crystalgan_train@localhost', show_default=True)
@click.option(
    '--train-options',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file of scheduler options of the training, e.g. custom_scheduler_commands for a GPU.',
)
@click.option('--generate-code', default='crystalgan_generate@localhost', show_default=True)
@click.option(
    '--overrides',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file whose values override the protocols, stage by stage; unknown keys are refused.',
)
@click.option('--structures-group', help='Group of StructureData to add to the seeds.')
@click.option(
    '--structure-file',
    'structure_files',
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help='Structure file (CIF, POSCAR, ...) to add to the seeds; repeatable.',
)
@click.option(
    '--structures-dataset',
    'structures_datasets',
    multiple=True,
    type=int,
    help='pk of a dataset node (e.g. from `dataset import optimade`) whose structures join the seeds; repeatable.',
)
@click.option(
    '--references',
    'references',
    multiple=True,
    help='Known phases for the convex hull: a structure file, a folder of CIF files, or the pk of a '
    'structure or dataset node (e.g. from `dataset import optimade`); repeatable.',
)
@click.option('--group-label', help='Group for the predicted structures.')
@click.option('--wait/--no-wait', default=False, help='Follow the campaign until it ends, printing its reports.')
@click.option(
    '--daemon/--no-daemon', default=True, show_default=True, help='Submit to the daemon, or run in this process.'
)
@decorators.with_dbenv()
def campaign_submit(
    system,
    protocol,
    engine,
    engine_protocol,
    engine_code,
    engine_settings,
    engine_options,
    train_code,
    train_options,
    generate_code,
    overrides,
    structures_group,
    structure_files,
    structures_datasets,
    references,
    group_label,
    wait,
    daemon,
) -> None:
    """Submit a campaign for a chemical system."""
    from aiida import orm
    from aiida.engine import run_get_node, submit

    from aiida_crystalgan.structures.prototypes import parse_system
    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    try:
        parse_system(system)
    except ValueError as exception:
        raise click.BadParameter(str(exception), param_hint='--system') from exception
    engine_code = engine_code or ENGINE_CODE_DEFAULT.get(engine)
    if engine_code is None:
        raise click.BadParameter(f'give --engine-code for the `{engine}` engine', param_hint='--engine-code')
    overrides_dict, settings, engine_options, train_options = (
        read_yaml(path) for path in (overrides, engine_settings, engine_options, train_options)
    )
    try:
        builder = CampaignWorkChain.get_builder_from_protocol(
            system,
            _load_code(engine_code, 'engine'),
            _load_code(train_code, 'training'),
            _load_code(generate_code, 'generation'),
            protocol=protocol,
            overrides=overrides_dict,
            engine=engine,
            engine_protocol=engine_protocol,
            engine_settings=settings,
            engine_options=engine_options,
            train_options=train_options,
            references=reference_phases(references),
            structures=_seed_structures(structures_group, structure_files, structures_datasets),
        )
    except ValueError as exception:  # an unknown override key or engine protocol
        raise click.BadParameter(str(exception), param_hint='--overrides') from exception
    if group_label:
        builder.group_label = orm.Str(group_label)
    try:
        if not daemon:
            _, node = run_get_node(builder)
            echo.echo_report(f'campaign {node.pk} finished with exit status {node.exit_status}')
            return
        node = submit(builder)
    except ValueError as exception:  # inputs refused by the campaign's validators, before any node is stored
        raise click.UsageError(str(exception)) from exception
    echo.echo_success(f'submitted campaign <{node.pk}> ({system}, protocol `{protocol}`, engine `{engine}`)')
    if wait:
        follow(node)


def follow(node, interval: float = 5.0) -> None:
    """Print reports as the campaign runs, under a bar of its stages done; exit non-zero when it fails."""
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_crystalgan.tools import child_stage, planned_stages

    if not get_daemon_client().is_daemon_running:
        echo.echo_warning('the daemon is not running: start it with `verdi daemon start`')
    planned = set(planned_stages(node))

    def stages_done() -> int:
        return sum(child.is_terminated and child_stage(child) in planned for child in node.called)

    last_log = 0
    with click.progressbar(
        length=len(planned),
        label=f'campaign <{node.pk}> stages',
        show_pos=True,
        file=click.get_text_stream('stderr'),
    ) as bar:
        while not node.is_terminated:
            last_log = print_progress(node, last_log)
            bar.update(stages_done() - bar.pos)
            time.sleep(interval)
        print_progress(node, last_log)
        bar.update(stages_done() - bar.pos)
    if not node.is_finished_ok:
        echo.echo_critical(f'campaign <{node.pk}> ended with exit status {node.exit_status}: {node.exit_message}')
    echo.echo_success(f'campaign <{node.pk}> finished')


@campaign.command('status')
@arguments.PROCESS(required=False)
@click.option('--tree/--no-tree', default=True, show_default=True, help='Also print the process tree.')
@decorators.with_dbenv()
def campaign_status(process, tree) -> None:
    """Stages of a campaign (default: the latest) with processes done/submitted and cost so far."""
    from aiida.cmdline.utils.ascii_vis import format_call_graph
    from tabulate import tabulate

    from aiida_crystalgan.calculations.monitors import LATEST_LOSSES_EXTRA
    from aiida_crystalgan.reporting import format_cost, format_value
    from aiida_crystalgan.tools import campaign_stage, round_table, stage_progress

    node = campaign_or_latest(process)
    current = node.base.extras.get('crystalgan_round', None)
    echo.echo(
        f'campaign <{node.pk}> {node.inputs.system.value}: stage `{campaign_stage(node)}`'
        f'{f" of round {current}" if current else ""}, '
        f'state {node.process_state.value if node.process_state else "unknown"}'
    )
    rows = [
        [
            row['round'],
            row['stage'],
            row['pk'] or '-',
            row['state'],
            f'{row["done"]}/{row["total"]}',
            format_cost(row['core_hours']),
            format_cost(row['gpu_hours']),
        ]
        for row in stage_progress(node)
    ]
    echo.echo(tabulate(rows, headers=['round', 'stage', 'pk', 'state', 'done/submitted', 'core-hours', 'GPU-hours']))
    headers, cells = round_table(node)
    if cells:
        echo.echo('')
        echo.echo(tabulate([[format_value(value) for value in row] for row in cells], headers=headers))
    for calculation in node.called_descendants:
        latest = calculation.base.extras.get(LATEST_LOSSES_EXTRA, None)
        if latest and not calculation.is_terminated:
            losses = ', '.join(f'{name} {format_cost(value)}' for name, value in latest.items() if name != 'step')
            echo.echo(f'training <{calculation.pk}> at step {int(latest["step"])}: {losses}')
    if tree:
        echo.echo(format_call_graph(node))


@campaign.command('wait')
@arguments.PROCESS(required=False)
@decorators.with_dbenv()
def campaign_wait(process) -> None:
    """Follow a running campaign (default: the latest) until it ends."""
    follow(campaign_or_latest(process))


@campaign.command('extend')
@arguments.PROCESS()
@click.option('--rounds', type=int, required=True, help='How many more discovery rounds to run.')
@click.option('--wait/--no-wait', default=False, help='Follow the new campaign until it ends, printing its reports.')
@click.option(
    '--daemon/--no-daemon', default=True, show_default=True, help='Submit to the daemon, or run in this process.'
)
@decorators.with_dbenv()
def campaign_extend(process, rounds, wait, daemon) -> None:
    """Continue a finished campaign for more discovery rounds, as a new campaign.

    It trains on the campaign's last training set (with the candidates its last round validated) from its last model,
    and validates on its last convex hull: no seeds, MD or quench are run again. Its predicted structures go to the
    same group.
    """
    from aiida.engine import run_get_node, submit

    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    if rounds < 1:
        raise click.BadParameter(f'must be at least 1, got {rounds}', param_hint='--rounds')
    try:
        builder = CampaignWorkChain.get_builder_extension(process, rounds)
    except ValueError as exception:
        raise click.BadParameter(str(exception), param_hint='PROCESS') from exception
    if not daemon:
        _, node = run_get_node(builder)
        echo.echo_report(f'campaign {node.pk} finished with exit status {node.exit_status}')
        return
    node = submit(builder)
    echo.echo_success(f'submitted campaign <{node.pk}>: {rounds} more rounds after campaign <{process.pk}>')
    if wait:
        follow(node)
