"""Plots of campaigns, predicted structures and datasets, each returned as a matplotlib ``Figure``.

Nothing here selects a matplotlib backend or writes files: in Jupyter the figures show inline, elsewhere the caller
saves them (``figure.savefig(path)``). Figures are detached from pyplot, so making many of them leaks no memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from aiida import orm
from matplotlib.figure import Figure

from aiida_crystalgan.tools.campaigns import phase_diagram, phonon_calculation, predicted_structures

if TYPE_CHECKING:
    import pandas

    from aiida_crystalgan.data.dataset import CrystalDatasetData

ADVERSARIAL_COLUMNS = ('critic_loss', 'generator_loss', 'gradient_penalty', 'wasserstein_distance')
NOT_LOSSES = ('step', 'seconds_per_step')
METASTABLE_EV_PER_ATOM = 0.1


def plot_losses(losses: orm.ArrayData) -> Figure:
    """GAN loss curves from the training's ``losses`` ArrayData: adversarial terms left, physics terms right."""
    steps = losses.get_array('step')
    figure = Figure(figsize=(10, 4), layout='tight')
    adversarial, physics = figure.subplots(1, 2)
    for name in losses.get_arraynames():
        if name not in NOT_LOSSES:
            axis = adversarial if name in ADVERSARIAL_COLUMNS else physics
            axis.plot(steps, losses.get_array(name), label=name)
    adversarial.set_title('adversarial (WGAN-GP)')
    physics.set_title('physics head and priors')
    for axis in (adversarial, physics):
        axis.set_xlabel('training step')
        axis.set_ylabel('loss')
        axis.legend(fontsize=7)
    return figure


def plot_e_above_hull(values: list[float]) -> Figure:
    """Histogram of energies above the hull (eV/atom), with the usual metastability threshold."""
    figure = Figure(figsize=(6, 4), layout='tight')
    axis = figure.subplots()
    axis.hist(values, bins=max(5, len(values) // 2), color='tab:blue', edgecolor='black')
    axis.axvline(
        METASTABLE_EV_PER_ATOM, color='tab:red', linestyle='--', label=f'{METASTABLE_EV_PER_ATOM} eV/atom (metastable)'
    )
    axis.set_xlabel('energy above hull (eV/atom)')
    axis.set_ylabel('candidates')
    axis.legend()
    return figure


def plot_convex_hull(campaign: orm.WorkflowNode, show_unstable: float = 1.0) -> Figure:
    """The convex hull of the reference phases with the predicted structures (pymatgen's ``PDPlotter``).

    Candidates are labelled by PK; those more than ``show_unstable`` eV/atom above the hull are left out. Raises
    ValueError before the candidates have been evaluated.
    """
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDPlotter

    diagram = phase_diagram(campaign, with_candidates=True)
    if diagram is None:
        raise ValueError(f'campaign <{campaign.pk}> has no evaluated candidates yet: no convex hull to plot')
    figure, axis = plt.subplots(figsize=(8, 6))
    plt.close(figure)  # PDPlotter draws through pyplot; the figure is returned, not kept in pyplot's list
    plt.sca(axis)
    PDPlotter(diagram, backend='matplotlib', show_unstable=show_unstable).get_plot(ax=axis)
    axis.set_title(f'campaign <{campaign.pk}>: {campaign.inputs.system.value}')
    figure.tight_layout()
    return figure


def plot_phonons(structure: orm.StructureData, npoints: int = 100, mesh: tuple[int, int, int] = (12, 12, 12)) -> Figure:
    """Phonon band structure (along ASE's high-symmetry path) and total DOS of a checked structure, with phonopy.

    Computed from the force constants of the structure's phonon workchain; raises ValueError when its phonons were
    not checked (force check failed, or phonons switched off).
    """
    from ase.cell import Cell

    node = phonon_calculation(structure)
    if node is None:
        raise ValueError(f'structure <{structure.pk}> has no successful phonon calculation')
    phonopy = node.outputs.force_constants.get_phonopy_instance()
    path = Cell(np.array(phonopy.primitive.cell)).bandpath(npoints=npoints)
    phonopy.run_qpoints(path.kpts)
    frequencies = phonopy.get_qpoints_dict()['frequencies']
    distance, special_distances, special_labels = path.get_linear_kpoint_axis()
    jumps = np.flatnonzero(np.diff(distance) < 1e-9) + 1  # where the path jumps (``X,M``): no line across
    distance = np.insert(distance, jumps, np.nan)
    frequencies = np.insert(frequencies, jumps, np.nan, axis=0)
    ticks: dict[float, list[str]] = {}
    for position, label in zip(special_distances, special_labels):
        ticks.setdefault(round(float(position), 9), []).append(r'$\Gamma$' if label == 'G' else label)
    phonopy.run_mesh(list(mesh), is_gamma_center=True)
    phonopy.run_total_dos()
    dos = phonopy.get_total_dos_dict()

    figure = Figure(figsize=(8, 4.5), layout='tight')
    bands, density = figure.subplots(1, 2, sharey=True, gridspec_kw={'width_ratios': [3, 1]})
    bands.plot(distance, frequencies, color='tab:blue', linewidth=1)
    for position in ticks:
        bands.axvline(position, color='grey', linewidth=0.5)
    bands.axhline(0, color='black', linewidth=0.5)
    bands.set_xticks(list(ticks), ['|'.join(dict.fromkeys(labels)) for labels in ticks.values()])
    bands.set_xlim(special_distances[0], special_distances[-1])
    bands.set_ylabel('frequency (THz)')
    bands.set_title(f'{structure.get_formula()} <{structure.pk}>')
    density.plot(dos['total_dos'], dos['frequency_points'], color='tab:blue')
    density.set_xlabel('DOS (states/THz)')
    return figure


def plot_structure(structure: orm.StructureData, rotation: str = '10x,-10y', axis=None) -> Figure:
    """A picture of ``structure`` and its cell (ASE's ``plot_atoms``), on ``axis`` when given."""
    from ase.visualize.plot import plot_atoms

    if axis is None:
        figure = Figure(figsize=(4, 4), layout='tight')
        axis = figure.subplots()
    plot_atoms(structure.get_ase(), axis, rotation=rotation, radii=0.5)
    extras = structure.base.extras
    hull = extras.get('crystalgan_e_above_hull', None)
    title = f'{extras.get("crystalgan_formula", structure.get_formula())} <{structure.pk}>'
    axis.set_title(title if hull is None else f'{title}\n{hull:.3f} eV/atom above hull', fontsize=9)
    axis.set_axis_off()
    return axis.figure


def plot_predicted_structures(campaign: orm.WorkflowNode, columns: int = 4) -> Figure:
    """Pictures of every predicted structure of ``campaign``, lowest energy above the hull first."""
    structures = sorted(
        predicted_structures(campaign).values(),
        key=lambda node: node.base.extras.get('crystalgan_e_above_hull', None) or np.inf,
    )
    if not structures:
        raise ValueError(f'campaign <{campaign.pk}> has no predicted structures yet')
    rows = -(-len(structures) // columns)
    figure = Figure(figsize=(3 * min(columns, len(structures)), 3 * rows), layout='tight')
    axes = np.atleast_1d(figure.subplots(rows, min(columns, len(structures)))).ravel()
    for axis, structure in zip(axes, structures):
        plot_structure(structure, axis=axis)
    for axis in axes[len(structures) :]:
        axis.set_axis_off()
    return figure


def plot_dataset(dataset: CrystalDatasetData) -> Figure:
    """Overview of a dataset: energies per atom, cell sizes, volumes per atom and compositions."""
    energies = dataset.get_energies()
    num_atoms = dataset.get_num_atoms()
    per_atom = energies / num_atoms
    figure = Figure(figsize=(11, 7), layout='tight')
    (energy, size), (volume, composition) = figure.subplots(2, 2)
    energy.hist(per_atom[np.isfinite(per_atom)], bins=30, color='tab:blue', edgecolor='black')
    energy.set_xlabel('energy (eV/atom)')
    size.hist(
        num_atoms, bins=np.arange(num_atoms.min(), num_atoms.max() + 2) - 0.5, color='tab:orange', edgecolor='black'
    )
    size.set_xlabel('atoms per cell')
    volume.hist(dataset.get_volumes_per_atom(), bins=30, color='tab:green', edgecolor='black')
    volume.set_xlabel('volume per atom (Å$^3$)')
    counts = sorted(dataset.compositions.items(), key=lambda item: -item[1])
    composition.bar([name for name, _ in counts], [count for _, count in counts], color='tab:purple')
    composition.tick_params(axis='x', labelrotation=45)
    composition.set_xlabel('composition')
    for axis in (energy, size, volume, composition):
        axis.set_ylabel('structures')
    figure.suptitle(f'dataset <{dataset.pk}>: {dataset.size} structures of {", ".join(dataset.elements)}')
    return figure


def plot_cost(by_stage: pandas.DataFrame) -> Figure:
    """Core-hours (left) and GPU-hours (right) per stage, one bar per engine and arm, from ``tools.cost_by_stage``."""
    figure = Figure(figsize=(10, 4), layout='tight')
    axes = figure.subplots(1, 2)
    stages = list(dict.fromkeys(by_stage['stage']))
    series = list(dict.fromkeys(zip(by_stage['arm'], by_stage['engine'])))
    width = 0.8 / max(len(series), 1)
    for axis, column, unit in zip(axes, ('core_hours', 'gpu_hours'), ('core-hours', 'GPU-hours')):
        for offset, (arm, engine) in enumerate(series):
            rows = by_stage[(by_stage['arm'] == arm) & (by_stage['engine'] == engine)]
            totals = rows.groupby('stage')[column].sum()
            positions = np.arange(len(stages)) + offset * width
            axis.bar(positions, [totals.get(stage, 0.0) for stage in stages], width, label=f'{engine} ({arm} arm)')
        axis.set_xticks(np.arange(len(stages)) + width * (len(series) - 1) / 2, stages, rotation=30)
        axis.set_ylabel(unit)
        axis.set_title(f'{unit} per stage')
        axis.legend(fontsize=7)
    return figure
