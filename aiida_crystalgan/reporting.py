"""The campaign report: a markdown summary with PNG plots, built from :mod:`aiida_crystalgan.tools`."""

from __future__ import annotations

from pathlib import Path

from aiida import orm

from aiida_crystalgan import tools
from aiida_crystalgan.tools.campaigns import campaign_metrics, metric_rows, rejected_structures

SUMMARY_METRICS = ('steps', 'device', 'seconds_per_step', 'physics_training_mae_ev_per_atom',
                   'physics_validation_mae_ev_per_atom', 'physics_training_force_mae_ev_per_angstrom',
                   'physics_validation_force_mae_ev_per_angstrom', 'generated_validity_fraction')
# Table heading → column of :func:`aiida_crystalgan.tools.candidate_rows`.
TABLE_COLUMNS = (
    ('pk', 'pk'), ('formula', 'formula'), ('spacegroup', 'spacegroup'), ('e_hull (eV/atom)', 'e_above_hull'),
    ('max_force (eV/Å)', 'max_force'), ('min_freq (THz)', 'min_frequency'), ('local_min', 'is_local_minimum'),
    ('novel', 'is_novel'), ('rediscovered', 'rediscovered'),
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


def write_report(campaign: orm.WorkflowNode, directory: Path) -> Path:
    """Write ``report.md`` and its plots into ``directory``; return the markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f'# Campaign {campaign.pk}: {campaign.inputs.system.value}', '',
             f'- state: {campaign.process_state.value if campaign.process_state else "unknown"}, exit status '
             f'{campaign.exit_status}', f'- stage: {tools.campaign_stage(campaign)}',
             f'- engine: {campaign.inputs.engine.name.value}', f'- UUID: `{campaign.uuid}`']
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
    metrics = campaign_metrics(campaign)
    if metrics:
        headers, cells = metric_rows(metrics)
        lines += ['', '## Screening funnel and metrics', '', '| ' + ' | '.join(headers) + ' |',
                  '|' + '---|' * len(headers)]
        lines += ['| ' + ' | '.join(format_value(value) for value in row) + ' |' for row in cells]
        rejected = rejected_structures(campaign)
        if rejected:
            lines += ['', f'{len(rejected)} validated candidates were rejected (group '
                      f'`{campaign.base.extras.get("crystalgan_group", "")}/rejected`, extra '
                      '`crystalgan_rejection_reason`).']
    rows = tools.candidate_rows(campaign)
    if rows:
        lines += ['', '## Predicted structures', '', '| ' + ' | '.join(name for name, _ in TABLE_COLUMNS) + ' |',
                  '|' + '---|' * len(TABLE_COLUMNS)]
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
    path = directory / 'report.md'
    path.write_text('\n'.join(lines) + '\n')
    return path
