"""The tutorial notebook ``docs/tutorial.ipynb`` runs from top to bottom on a finished campaign."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / 'docs' / 'tutorial.ipynb'


def outputs_of(cell) -> str:
    return ''.join(
        output.get('text', '') + ''.join(map(str, output.get('data', {}).values())) for output in cell.outputs
    )


def test_tutorial_runs(finished_campaign, aiida_config, aiida_profile, tmp_path):
    campaign = finished_campaign()
    aiida_config.set_default_profile(aiida_profile.name, overwrite=True)
    aiida_config.store()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name='python3',
        resources={'metadata': {'path': tmp_path}},
        env={key: value for key, value in os.environ.items() if key != 'MPLBACKEND'},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first failing cell

    code = [cell for cell in notebook.cells if cell.cell_type == 'code']
    assert f'campaign <{campaign.pk}> Nb-O: stage `finished`' in outputs_of(code[0])
    assert 'NbO2' in outputs_of(code[1])
    figures = [cell for cell in code if any('image/png' in output.get('data', {}) for output in cell.outputs)]
    assert len(figures) == 4  # hull, structures, phonons, dataset (this campaign has no GAN losses)
    assert sorted(path.suffix for path in (tmp_path / 'predicted_structures').iterdir()) == ['.cif', '.cif', '.csv']
