"""``aiida-crystalgan candidates|trace|report``: what a campaign predicted, and where it came from."""

from __future__ import annotations

from pathlib import Path

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

from aiida_crystalgan.cli.campaign import latest_campaign

COLUMNS = (
    ('pk', None), ('formula', 'formula'), ('spacegroup', 'spacegroup'), ('e_hull (eV/atom)', 'e_above_hull'),
    ('max_force (eV/Å)', 'max_force'), ('min_freq (THz)', 'min_frequency'), ('local_min', 'is_local_minimum'),
    ('novel', 'is_novel'),
)


def _campaign_or_latest(process):
    return process if process is not None else latest_campaign()


def candidate_rows(campaign) -> list[dict]:
    """One row per predicted structure of ``campaign``, sorted by energy above the hull."""
    if 'predicted' not in campaign.outputs:
        return []
    rows = []
    for structure in campaign.outputs.predicted.values():
        extras = structure.base.extras.all
        row = {'pk': structure.pk}
        for _, key in COLUMNS[1:]:
            row[key] = extras.get(f'crystalgan_{key}')
        rows.append(row)
    return sorted(rows, key=lambda r: (r['e_above_hull'] is None, r['e_above_hull']))


def format_value(value) -> str:
    if isinstance(value, float):
        return f'{value:.3f}'
    return '-' if value is None else str(value)


@click.command('candidates')
@arguments.PROCESS(required=False)
@click.option('--pks-only', is_flag=True, help='Print only the PKs, best first (for scripts).')
@decorators.with_dbenv()
def candidates(process, pks_only) -> None:
    """Table of the predicted structures of a campaign (default: the latest), lowest energy above hull first."""
    from tabulate import tabulate

    campaign = _campaign_or_latest(process)
    rows = candidate_rows(campaign)
    if pks_only:
        echo.echo('\n'.join(str(row['pk']) for row in rows))
        return
    if not rows:
        echo.echo_warning(f'campaign <{campaign.pk}> has no predicted structures (stage '
                          f'`{campaign.base.extras.get("crystalgan_stage", "created")}`)')
        return
    table = [[format_value(row.get(key) if key else row['pk']) for _, key in COLUMNS] for row in rows]
    echo.echo(tabulate(table, headers=[name for name, _ in COLUMNS]))


def _backward_path(start, is_target) -> list | None:
    """Shortest path from ``start`` back to the first node that ``is_target(node, child)`` accepts.

    Walks backwards over CREATE and INPUT_CALC links only (data provenance); returns the nodes from ``start`` to the
    target, or ``None``.
    """
    from collections import deque

    from aiida.common.links import LinkType

    parents = {start.pk: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for link in current.base.links.get_incoming(link_type=(LinkType.CREATE, LinkType.INPUT_CALC)).all():
            source = link.node
            if source.pk in parents:
                continue
            parents[source.pk] = current
            if is_target(source, current):
                path = [source]
                while path[-1] is not start:
                    path.append(parents[path[-1].pk])
                return list(reversed(path))
            queue.append(source)
    return None


def provenance_path_to_md(node) -> list | None:
    """The provenance path from ``node`` through the GAN model that generated it to the MD calculations.

    First back to the nearest ``crystalgan.model`` (when there is one: seeds have none), then from that model back to
    a calculation that produced an MD trajectory of its training data.
    """
    from aiida.orm import CalcJobNode, TrajectoryData

    from aiida_crystalgan.data.model import GanModelData

    def is_md(source, child) -> bool:
        return isinstance(source, CalcJobNode) and isinstance(child, TrajectoryData)

    to_model = _backward_path(node, lambda source, _: isinstance(source, GanModelData)) or [node]
    to_md = _backward_path(to_model[-1], is_md)
    return None if to_md is None else to_model[:-1] + to_md


def describe(node) -> str:
    """One line naming a node of a provenance path."""
    from aiida.orm import ProcessNode

    if isinstance(node, ProcessNode):
        return f'{node.process_label}<{node.pk}> ({node.process_state.value if node.process_state else "?"})'
    label = f' "{node.label}"' if node.label else ''
    return f'{type(node).__name__}<{node.pk}>{label}'


@click.command('trace')
@arguments.NODE()
@decorators.with_dbenv()
def trace(node) -> None:
    """Provenance path from a predicted structure back to the MD calculations that made its training data."""
    path = provenance_path_to_md(node)
    if path is None:
        echo.echo_critical(f'no MD trajectory upstream of {describe(node)}: is it a predicted structure?')
    for depth, step in enumerate(path):
        echo.echo(f'{"  " * depth}{"└─ " if depth else ""}{describe(step)}')
    md = path[-1]
    echo.echo_success(f'reached the MD calculation {describe(md)} of operation '
                      f'`{md.inputs.operation.value if "operation" in md.inputs else "md"}`')


@click.command('report')
@arguments.PROCESS(required=False)
@click.option('-o', '--output-dir', type=click.Path(file_okay=False), help='Default: `crystalgan-report-<pk>`.')
@decorators.with_dbenv()
def report(process, output_dir) -> None:
    """Write a markdown report with plots (GAN losses, energy above hull) for a campaign (default: the latest)."""
    from aiida_crystalgan.reporting import write_report

    campaign = _campaign_or_latest(process)
    directory = Path(output_dir or f'crystalgan-report-{campaign.pk}')
    path = write_report(campaign, directory)
    echo.echo_success(f'report written to {path}')
