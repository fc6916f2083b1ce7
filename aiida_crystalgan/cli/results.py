"""``aiida-crystalgan candidates|trace|report``: what a campaign predicted, and where it came from.

The commands only parse options and print: queries, tables, plots and exports live in :mod:`aiida_crystalgan.tools`.
"""

from __future__ import annotations

from pathlib import Path

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

from aiida_crystalgan.tools.export import FORMATS


def campaign_or_latest(process):
    """``process``, or the latest campaign of the profile; a clear error when there is none."""
    from aiida_crystalgan import tools

    campaign = process if process is not None else tools.latest_campaign()
    if campaign is None:
        echo.echo_critical('no campaign in this profile: submit one with `aiida-crystalgan campaign submit`')
    return campaign


@click.command('candidates')
@arguments.PROCESS(required=False)
@click.option('--pks-only', is_flag=True, help='Print only the PKs, best first (for scripts).')
@click.option(
    '--export',
    'export_dir',
    type=click.Path(file_okay=False),
    help='Write one file per structure and `candidates.csv` (their evaluation) into this directory.',
)
@click.option(
    '--format',
    'fmt',
    type=click.Choice(list(FORMATS)),
    default='cif',
    show_default=True,
    help='File format of `--export`.',
)
@click.option('--force', is_flag=True, help='With `--export`: write into a directory that is not empty.')
@decorators.with_dbenv()
def candidates(process, pks_only, export_dir, fmt, force) -> None:
    """Table of the predicted structures of a campaign (default: the latest), lowest energy above hull first, and the
    metrics of its screening funnel."""
    from tabulate import tabulate

    from aiida_crystalgan import tools
    from aiida_crystalgan.reporting import TABLE_COLUMNS, format_value, table_rows
    from aiida_crystalgan.tools.campaigns import campaign_metrics, metric_rows

    campaign = campaign_or_latest(process)
    rows = tools.candidate_rows(campaign)
    if pks_only:
        echo.echo('\n'.join(str(row['pk']) for row in rows))
        return
    metrics = campaign_metrics(campaign)
    if not rows:
        message = f'campaign <{campaign.pk}> has no predicted structures (stage `{tools.campaign_stage(campaign)}`)'
        if export_dir:
            echo.echo_critical(f'{message}: nothing to export')
        echo.echo_warning(message)
    else:
        echo.echo(tabulate(table_rows(rows), headers=[name for name, _ in TABLE_COLUMNS]))
    if metrics:
        headers, cells = metric_rows(metrics)
        echo.echo('')
        echo.echo(tabulate([[format_value(value) for value in row] for row in cells], headers=headers))
    headers, cells = tools.round_table(campaign)
    if cells:
        echo.echo('')
        echo.echo(tabulate([[format_value(value) for value in row] for row in cells], headers=headers))
    if not rows:
        return
    if export_dir:
        try:
            paths = tools.export_candidates(campaign, export_dir, fmt, force=force)
        except FileExistsError as exception:
            echo.echo_critical(f'{exception} (`--force` to write into it)')
        echo.echo_success(
            f'{len(paths)} structures written to {export_dir} ({fmt}), evaluation in '
            f'{Path(export_dir) / "candidates.csv"}'
        )


@click.command('trace')
@arguments.NODE()
@decorators.with_dbenv()
def trace(node) -> None:
    """Provenance path from a predicted structure back to the MD calculations that made its training data."""
    from aiida_crystalgan.tools import describe, provenance_path_to_md

    path = provenance_path_to_md(node)
    if path is None:
        echo.echo_critical(f'no MD trajectory upstream of {describe(node)}: is it a predicted structure?')
    for depth, step in enumerate(path):
        echo.echo(f'{"  " * depth}{"└─ " if depth else ""}{describe(step)}')
    md = path[-1]
    echo.echo_success(
        f'reached the MD calculation {describe(md)} of operation '
        f'`{md.inputs.operation.value if "operation" in md.inputs else "md"}`'
    )


@click.command('report')
@arguments.PROCESS(required=False)
@click.option('-o', '--output-dir', type=click.Path(file_okay=False), help='Default: `crystalgan-report-<pk>`.')
@decorators.with_dbenv()
def report(process, output_dir) -> None:
    """Write a markdown report with plots (dataset, GAN losses, convex hull, structures) for a campaign."""
    from aiida_crystalgan.reporting import write_report

    campaign = campaign_or_latest(process)
    directory = Path(output_dir or f'crystalgan-report-{campaign.pk}')
    path = write_report(campaign, directory)
    echo.echo_success(f'report written to {path}')
