"""The campaign report: a markdown summary with PNG plots of the GAN losses and the energies above the hull."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from aiida.common.links import LinkType

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ADVERSARIAL_COLUMNS = ('critic_loss', 'generator_loss', 'gradient_penalty', 'wasserstein_distance')
NOT_LOSSES = ('step', 'seconds_per_step')
SUMMARY_METRICS = ('steps', 'device', 'seconds_per_step', 'physics_training_mae_ev_per_atom',
                   'physics_validation_mae_ev_per_atom', 'physics_training_force_mae_ev_per_angstrom',
                   'physics_validation_force_mae_ev_per_angstrom', 'generated_validity_fraction')


def plot_losses(losses, path: Path) -> Path:
    """GAN loss curves from the training's ``losses`` ArrayData: adversarial terms left, physics terms right."""
    steps = losses.get_array('step')
    names = [name for name in losses.get_arraynames() if name not in NOT_LOSSES]
    figure, (adversarial, physics) = plt.subplots(1, 2, figsize=(10, 4))
    for name in names:
        axis = adversarial if name in ADVERSARIAL_COLUMNS else physics
        axis.plot(steps, losses.get_array(name), label=name)
    adversarial.set_title('adversarial (WGAN-GP)')
    physics.set_title('physics head and priors')
    for axis in (adversarial, physics):
        axis.set_xlabel('training step')
        axis.set_ylabel('loss')
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_hull_histogram(values: list[float], path: Path) -> Path:
    """Histogram of the candidates' energies above the hull (eV/atom)."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(values, bins=max(5, len(values) // 2), color='tab:blue', edgecolor='black')
    axis.axvline(0.1, color='tab:red', linestyle='--', label='0.1 eV/atom (metastable)')
    axis.set_xlabel('energy above hull (eV/atom)')
    axis.set_ylabel('candidates')
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(campaign, directory: Path) -> Path:
    """Write ``report.md`` and its plots into ``directory``; return the markdown path."""
    from aiida_crystalgan.cli.results import COLUMNS, candidate_rows, format_value

    directory.mkdir(parents=True, exist_ok=True)
    lines = [f'# Campaign {campaign.pk}: {campaign.inputs.system.value}', '',
             f'- state: {campaign.process_state.value if campaign.process_state else "unknown"}, exit status '
             f'{campaign.exit_status}', f'- stage: {campaign.base.extras.get("crystalgan_stage", "created")}',
             f'- engine: {campaign.inputs.engine.name.value}', f'- UUID: `{campaign.uuid}`']
    outputs = campaign.outputs
    sections: list[str] = []
    if 'dataset' in outputs:
        dataset = outputs.dataset
        lines.append(f'- training set: {dataset.size} structures, elements {", ".join(dataset.elements)}')
    if 'model' in outputs:
        metrics = outputs.model.metrics
        summary = ', '.join(f'{key} {format_value(metrics[key])}' for key in SUMMARY_METRICS if key in metrics)
        lines.append(f'- model: {summary}')
        training = outputs.model.base.links.get_incoming(link_type=LinkType.CREATE).one().node
        if 'losses' in training.outputs:
            plot_losses(training.outputs.losses, directory / 'gan_losses.png')
            sections += ['', '## GAN training', '', '![GAN losses](gan_losses.png)']
    if 'candidates' in outputs:
        lines.append(f'- generated candidates: {outputs.candidates.size}')
    lines += sections
    rows = candidate_rows(campaign)
    if rows:
        lines += ['', '## Predicted structures', '', '| ' + ' | '.join(name for name, _ in COLUMNS) + ' |',
                  '|' + '---|' * len(COLUMNS)]
        for row in rows:
            lines.append('| ' + ' | '.join(format_value(row.get(key) if key else row['pk'])
                                            for _, key in COLUMNS) + ' |')
        hull = [row['e_above_hull'] for row in rows if row['e_above_hull'] is not None]
        if hull:
            plot_hull_histogram(hull, directory / 'e_above_hull.png')
            lines += ['', '![Energy above hull](e_above_hull.png)']
        lines += ['', 'Trace any structure back to its MD data with `aiida-crystalgan trace <pk>`.']
    path = directory / 'report.md'
    path.write_text('\n'.join(lines) + '\n')
    return path
