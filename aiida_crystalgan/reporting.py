"""The campaign report: a markdown summary with PNG plots, built from :mod:`aiida_crystalgan.tools`."""

from __future__ import annotations

from pathlib import Path

from aiida import orm

from aiida_crystalgan import tools
from aiida_crystalgan.tools.campaigns import campaign_metrics, metric_rows, rejected_structures

SUMMARY_METRICS = (
    'steps',
    'device',
    'seconds_per_step',
    'physics_training_mae_ev_per_atom',
    'physics_validation_mae_ev_per_atom',
    'physics_training_force_mae_ev_per_angstrom',
    'physics_validation_force_mae_ev_per_angstrom',
    'generated_validity_fraction',
)
# Table heading → column of :func:`aiida_crystalgan.tools.candidate_rows`.
TABLE_COLUMNS = (
    ('pk', 'pk'),
    ('round', 'round'),
    ('formula', 'formula'),
    ('spacegroup', 'spacegroup'),
    ('e_hull (eV/atom)', 'e_above_hull'),
    ('max_force (eV/Å)', 'max_force'),
    ('min_freq (THz)', 'min_frequency'),
    ('local_min', 'is_local_minimum'),
    ('novel', 'is_novel'),
    ('rediscovered', 'rediscovered'),
)


def format_value(value) -> str:
    """A table cell: floats to 3 decimals, ``-`` for missing values."""
    if isinstance(value, float):
        return f'{value:.3f}'
    return '-' if value is None else str(value)


def table_rows(rows: list[dict]) -> list[list[str]]:
    """The cells of :data:`TABLE_COLUMNS` for each candidate row."""
    return [[format_value(row.get(key)) for _, key in TABLE_COLUMNS] for row in rows]


def _save(figure, path: Path) -> str:
    figure.savefig(path, dpi=120)
    return path.name


#: Row heading of the cost summary → key of each arm in :func:`aiida_crystalgan.tools.cost_summary`.
COST_SUMMARY_ROWS = (
    ('core-hours', 'core_hours'),
    ('GPU-hours', 'gpu_hours'),
    ('generated candidates', 'generated'),
    ('validated structures', 'validated'),
    ('S.U.N. structures', 'sun'),
    ('core-hours per validated structure', 'core_hours_per_validated'),
    ('core-hours per S.U.N. structure', 'core_hours_per_sun'),
    ('core-hours to generate and screen one candidate', 'screen_core_hours_per_candidate'),
    ('core-hours to evaluate one candidate with the engine', 'engine_core_hours_per_candidate'),
    ('engine / (generate + screen) per candidate', 'engine_to_screen_ratio'),
)


def format_cost(value) -> str:
    """A cost cell: three significant digits (costs per candidate are small), ``n/a`` when unknown."""
    if isinstance(value, float):
        return f'{value:.3g}'
    return 'n/a' if value is None else str(value)


def cost_summary_table(summary: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the cost summary, one column per arm (GAN, and random search when there is one)."""
    arms = list(summary)
    rows = [[heading, *(format_cost(summary[arm][key]) for arm in arms)] for heading, key in COST_SUMMARY_ROWS]
    return ['', *(f'{arm} arm' for arm in arms)], rows


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        '| ' + ' | '.join(headers) + ' |',
        '|' + '---|' * len(headers),
        *('| ' + ' | '.join(cells) + ' |' for cells in rows),
    ]


def cost_section(campaign: orm.WorkflowNode, directory: Path) -> list[str]:
    """The report's cost section: the summary per arm, core-hours per stage and their plot (empty without cost)."""
    ledger = tools.campaign_cost(campaign)
    if ledger.empty:
        return []
    by_stage = tools.cost_by_stage(ledger)
    stage_rows = [
        [
            row.stage,
            row.engine,
            row.arm,
            str(row.calculations),
            f'{row.wall_s:.1f}',
            format_cost(row.core_hours),
            format_cost(row.gpu_hours),
        ]
        for row in by_stage.itertuples()
    ]
    sources = ', '.join(f'{source} {count}' for source, count in ledger['source'].value_counts().items())
    name = _save(tools.plot_cost(by_stage), directory / 'cost.png')
    return [
        '',
        '## Cost',
        '',
        *_markdown_table(*cost_summary_table(tools.cost_summary(campaign, ledger))),
        '',
        *_markdown_table(['stage', 'engine', 'arm', 'calculations', 'wall (s)', 'core-hours', 'GPU-hours'], stage_rows),
        '',
        f'Wall times of {len(ledger)} calculations, by source: {sources}. '
        'Per-calculation ledger: `aiida-crystalgan cost <pk> --csv`.',
        '',
        f'![Cost per stage]({name})',
    ]


def write_report(campaign: orm.WorkflowNode, directory: Path) -> Path:
    """Write ``report.md`` and its plots into ``directory``; return the markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f'# Campaign {campaign.pk}: {campaign.inputs.system.value}',
        '',
        f'- state: {campaign.process_state.value if campaign.process_state else "unknown"}, exit status '
        f'{campaign.exit_status}',
        f'- stage: {tools.campaign_stage(campaign)}',
        f'- engine: {campaign.inputs.engine.name.value}',
        f'- UUID: `{campaign.uuid}`',
    ]
    outputs = campaign.outputs
    sections: list[str] = []
    if 'dataset' in outputs:
        dataset = outputs.dataset
        lines.append(f'- training set: {dataset.size} structures, elements {", ".join(dataset.elements)}')
        name = _save(tools.plot_dataset(dataset), directory / 'dataset.png')
        sections += ['', '## Training set', '', f'![Training set]({name})']
    if 'model' in outputs:
        metrics = outputs.model.metrics
        summary = ', '.join(f'{key} {format_value(metrics[key])}' for key in SUMMARY_METRICS if key in metrics)
        lines.append(f'- model: {summary}')
        training = tools.training_calculation(campaign)
        if 'losses' in training.outputs:
            name = _save(tools.plot_losses(training.outputs.losses), directory / 'gan_losses.png')
            sections += ['', '## GAN training', '', f'![GAN losses]({name})']
    if 'candidates' in outputs:
        lines.append(f'- generated candidates: {outputs.candidates.size}')
    lines += sections
    headers, rounds = tools.round_table(campaign)
    if rounds:
        lines += ['', '## Discovery rounds', '', '| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
        lines += ['| ' + ' | '.join(format_value(value) for value in row) + ' |' for row in rounds]
    metrics = campaign_metrics(campaign)
    if metrics:
        headers, cells = metric_rows(metrics)
        lines += [
            '',
            '## Screening funnel and metrics' + (' (last round)' if len(rounds) > 1 else ''),
            '',
            '| ' + ' | '.join(headers) + ' |',
            '|' + '---|' * len(headers),
        ]
        lines += ['| ' + ' | '.join(format_value(value) for value in row) + ' |' for row in cells]
        rejected = rejected_structures(campaign)
        if rejected:
            lines += [
                '',
                f'{len(rejected)} validated candidates were rejected (group '
                f'`{campaign.base.extras.get("crystalgan_group", "")}/rejected`, extra '
                '`crystalgan_rejection_reason`).',
            ]
    rows = tools.candidate_rows(campaign)
    if rows:
        lines += [
            '',
            '## Predicted structures',
            '',
            '| ' + ' | '.join(name for name, _ in TABLE_COLUMNS) + ' |',
            '|' + '---|' * len(TABLE_COLUMNS),
        ]
        lines += ['| ' + ' | '.join(cells) + ' |' for cells in table_rows(rows)]
        hull = [row['e_above_hull'] for row in rows if row['e_above_hull'] is not None]
        if hull:
            name = _save(tools.plot_e_above_hull(hull), directory / 'e_above_hull.png')
            lines += ['', f'![Energy above hull]({name})']
        if tools.phase_diagram(campaign) is not None:
            name = _save(tools.plot_convex_hull(campaign), directory / 'convex_hull.png')
            lines += ['', f'![Convex hull with the candidates]({name})']
        name = _save(tools.plot_predicted_structures(campaign), directory / 'structures.png')
        lines += ['', f'![Predicted structures]({name})']
        lines += ['', 'Trace any structure back to its MD data with `aiida-crystalgan trace <pk>`.']
    lines += cost_section(campaign, directory)
    path = directory / 'report.md'
    path.write_text('\n'.join(lines) + '\n')
    return path
