"""The results API on a finished campaign: DataFrame, hull, plots (as Figures) and exports."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from matplotlib.figure import Figure

from aiida_crystalgan import tools


def test_latest_campaign(finished_campaign):
    first = finished_campaign()
    assert tools.latest_campaign().pk == first.pk
    second = finished_campaign()
    assert tools.latest_campaign().pk == second.pk


def test_candidates_frame(finished_campaign):
    campaign = finished_campaign()
    frame = tools.candidates_frame(campaign)
    assert list(frame.columns) == ['uuid', *tools.CANDIDATE_COLUMNS]
    assert list(frame['formula']) == ['NbO2', 'NbO']
    assert list(frame['e_above_hull']) == pytest.approx([-7.30 - (-8.6 + 3.7 / 3), -8.45 + 8.6])
    assert list(frame.index) == [row['pk'] for row in tools.candidate_rows(campaign)]


def test_candidates_frame_before_generation(finished_campaign):
    campaign = finished_campaign()
    empty = orm.WorkChainNode(process_type=campaign.process_type).store()
    assert tools.candidates_frame(empty).empty
    assert tools.phase_diagram(empty) is None


def test_phase_diagram(finished_campaign):
    campaign = finished_campaign()
    diagram = tools.phase_diagram(campaign)
    assert sorted(entry.composition.reduced_formula for entry in diagram.stable_entries) == ['Nb', 'NbO', 'O2']
    with_candidates = tools.phase_diagram(campaign, with_candidates=True)
    assert len(with_candidates.all_entries) == len(diagram.all_entries) + 2


def test_plots_are_figures(finished_campaign):
    campaign = finished_campaign()
    frame = tools.candidates_frame(campaign)
    nbo2 = orm.load_node(int(frame.index[frame['formula'] == 'NbO2'][0]))
    figures = [
        tools.plot_convex_hull(campaign),
        tools.plot_predicted_structures(campaign),
        tools.plot_structure(nbo2),
        tools.plot_phonons(nbo2),
        tools.plot_e_above_hull(list(frame['e_above_hull'])),
        tools.plot_dataset(campaign.outputs.dataset),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        assert figure.axes and any(axis.has_data() or axis.images or axis.patches for axis in figure.axes)
    bands = figures[3].axes[0]
    assert len(bands.lines) >= 3 * len(nbo2.sites)  # 3N branches plus the special-point markers
    hull = figures[0].axes[0]
    assert any(str(nbo2.pk) in text.get_text() for text in hull.texts)


def test_plot_losses():
    losses = orm.ArrayData()
    steps = np.arange(0, 20, 4)
    losses.set_array('step', steps)
    for name in ('critic_loss', 'generator_loss', 'physics_energy_loss'):
        losses.set_array(name, np.linspace(1, 0, len(steps)))
    adversarial, physics = tools.plot_losses(losses).axes
    assert [line.get_label() for line in adversarial.lines] == ['critic_loss', 'generator_loss']
    assert [line.get_label() for line in physics.lines] == ['physics_energy_loss']


def test_plot_phonons_without_phonons(finished_campaign):
    campaign = finished_campaign()
    nbo = next(
        node
        for node in tools.predicted_structures(campaign).values()
        if node.base.extras.get('crystalgan_formula') == 'NbO'
    )
    with pytest.raises(ValueError, match='has no successful phonon calculation'):
        tools.plot_phonons(nbo)


def test_no_backend_selected_at_import():
    """Importing the results API or the report must not switch matplotlib's backend (Jupyter shows plots inline)."""
    import subprocess
    import sys

    code = (
        'import matplotlib; matplotlib.use("svg"); import aiida_crystalgan.tools, aiida_crystalgan.reporting; '
        'print(matplotlib.get_backend())'
    )
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout == 'svg\n'


@pytest.mark.parametrize('fmt, suffix', [('cif', 'cif'), ('poscar', 'vasp'), ('extxyz', 'extxyz')])
def test_export_candidates(finished_campaign, tmp_path, fmt, suffix):
    import pandas
    from ase.io import read

    campaign = finished_campaign()
    paths = tools.export_candidates(campaign, tmp_path / 'out', fmt)
    assert [path.suffix for path in paths] == [f'.{suffix}'] * 2
    table = pandas.read_csv(tmp_path / 'out' / 'candidates.csv', index_col='pk')
    assert list(table['file']) == [path.name for path in paths]
    assert list(table['formula']) == ['NbO2', 'NbO']
    for path, pk in zip(paths, table.index):
        atoms = read(path)
        assert sorted(atoms.get_chemical_symbols()) == sorted(orm.load_node(int(pk)).get_ase().get_chemical_symbols())


def test_export_refuses_bad_requests(finished_campaign, tmp_path):
    campaign = finished_campaign()
    with pytest.raises(ValueError, match='unknown export format `xyz`: choose one of cif, poscar, extxyz'):
        tools.export_candidates(campaign, tmp_path / 'out', 'xyz')
    assert not (tmp_path / 'out').exists()
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='is not empty'):
        tools.export_candidates(campaign, tmp_path / 'full', 'cif')
    assert len(tools.export_candidates(campaign, tmp_path / 'full', 'cif', force=True)) == 2
    assert (tmp_path / 'full' / 'notes.txt').read_text() == 'mine'


def test_campaign_metrics(finished_campaign):
    """The funnel metrics of the campaign, and their table with a control arm and the lift."""
    from aiida_crystalgan.tools.campaigns import campaign_metrics, metric_rows

    metrics = campaign_metrics(finished_campaign())
    assert set(metrics) == {'gan'}
    gan = metrics['gan']
    assert gan['n_relaxed'] == 2 and gan['n_passed'] == 2
    assert gan['n_sun'] == 1 and gan['sun_rate_per_relaxation'] == pytest.approx(0.5)  # NbO is in the training set
    assert gan['n_rediscovered'] == 0  # NbO matches the reference but 0.15 eV/atom above it
    headers, rows = metric_rows({'gan': gan, 'random': {**gan, 'sun_rate_per_relaxation': 0.25}, 'sun_rate_lift': 2.0})
    assert headers == ['metric', 'gan', 'random']
    assert rows[0] == ['generated', 40, 40] and rows[-1] == ['S.U.N. lift over random search', 2.0, None]
