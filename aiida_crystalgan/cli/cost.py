"""``aiida-crystalgan cost``: what a campaign's calculations cost, per stage, and per validated and S.U.N. structure.

The command only parses options and prints: the ledger lives in :mod:`aiida_crystalgan.tools.cost`.
"""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

from aiida_crystalgan.cli.results import campaign_or_latest


@click.command('cost')
@arguments.PROCESS(required=False)
@click.option(
    '--csv',
    'csv_path',
    type=click.Path(dir_okay=False),
    help='Write the per-calculation ledger to this CSV file (`-` for standard output).',
)
@decorators.with_dbenv()
def cost(process, csv_path) -> None:
    """Cost of a campaign (default: the latest): core-hours and GPU-hours per stage, unit costs, GAN vs. engine."""
    from tabulate import tabulate

    from aiida_crystalgan import tools
    from aiida_crystalgan.reporting import cost_summary_table, format_cost

    campaign = campaign_or_latest(process)
    ledger = tools.campaign_cost(campaign)
    if csv_path == '-':
        echo.echo(ledger.to_csv(), nl=False)
        return
    if ledger.empty:
        echo.echo_warning(
            f'campaign <{campaign.pk}> has run no calculation yet (stage `{tools.campaign_stage(campaign)}`)'
        )
        return
    by_stage = tools.cost_by_stage(ledger)
    rows = [
        [
            row.stage,
            row.engine,
            row.arm,
            row.round,
            row.calculations,
            f'{row.wall_s:.1f}',
            format_cost(row.core_hours),
            format_cost(row.gpu_hours),
        ]
        for row in by_stage.itertuples()
    ]
    echo.echo(
        tabulate(
            rows, headers=['stage', 'engine', 'arm', 'round', 'calculations', 'wall (s)', 'core-hours', 'GPU-hours']
        )
    )
    echo.echo('')
    headers, summary_rows = cost_summary_table(tools.cost_summary(campaign, ledger))
    echo.echo(tabulate(summary_rows, headers=headers))
    sources = ', '.join(f'{source} {count}' for source, count in ledger['source'].value_counts().items())
    echo.echo(f'\nwall times by source: {sources}')
    if csv_path:
        ledger.to_csv(csv_path)
        echo.echo_success(f'ledger of {len(ledger)} calculations written to {csv_path}')
