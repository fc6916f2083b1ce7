"""``crystalgan-train --validation``: held-out objective, intermediate values and pruning, from files alone."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from aiida_crystalgan.gan.cli import train_main
from aiida_crystalgan.gan.evaluation import DEFAULT_WEIGHTS
from aiida_crystalgan.io import write_datafile
from aiida_crystalgan.io.status import EXIT_INVALID_INPUT


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture
def run_dir(tmp_path, make_grouped_records, tiny_config):
    records = make_grouped_records()
    write_datafile(tmp_path / 'dataset.h5', records)
    (tmp_path / 'config.json').write_text(json.dumps(tiny_config))
    held_out = [i for i, record in enumerate(records) if record.source == 'traj3']
    train = [i for i in range(len(records)) if i not in held_out]
    return tmp_path, train, held_out


def train_with(directory, plan) -> int:
    (directory / 'validation.json').write_text(json.dumps(plan))
    return train_main(
        [
            '--dataset',
            str(directory / 'dataset.h5'),
            '--config',
            str(directory / 'config.json'),
            '--output-dir',
            str(directory / 'out'),
            '--device',
            'cpu',
            '--validation',
            str(directory / 'validation.json'),
        ]
    )


def test_held_out_objective_is_written_to_metrics_and_curve(run_dir):
    directory, train, held_out = run_dir
    assert train_with(directory, {'train': train, 'validation': held_out, 'samples_per_minimum': 2}) == 0
    metrics = json.loads((directory / 'out' / 'metrics.json').read_text())
    assert metrics['num_structures'] == len(train)
    values = metrics['validation']
    assert values['num_held_out'] == values['num_evaluated'] == len(held_out)
    assert values['num_minima'] == 1
    assert values['energy_mae_ev_per_atom'] > 0 and values['force_mae_ev_per_angstrom'] > 0
    assert 0.0 <= values['coverage_recall'] <= 1.0
    terms = {
        **values,
        'coverage_miss': 1.0 - values['coverage_recall'],
        'generated_energy_gap_ev_per_atom': max(values['generated_energy_gap_ev_per_atom'], 0.0),
    }
    assert values['objective'] == pytest.approx(sum(w * terms[name] for name, w in DEFAULT_WEIGHTS.items()))
    assert values['objectives'][0] + values['objectives'][1] == pytest.approx(values['objective'])
    assert values['pruned'] is False
    assert values['curve']['step'] == [2, 4]
    rows = list(csv.DictReader((directory / 'out' / 'validation.csv').open()))
    assert [int(row['step']) for row in rows] == [2, 4]
    assert float(rows[-1]['objective']) == pytest.approx(values['curve']['objective'][-1])


def test_a_run_above_the_pruning_threshold_stops_early(run_dir):
    directory, train, held_out = run_dir
    plan = {
        'train': train,
        'validation': held_out,
        'coverage': False,
        'pruning': {'steps': [2, 4], 'thresholds': [-1e9, -1e9], 'warmup_steps': 0},
    }
    assert train_with(directory, plan) == 0
    values = json.loads((directory / 'out' / 'metrics.json').read_text())['validation']
    assert values['pruned'] is True and values['pruned_at_step'] == 2
    assert values['coverage_recall'] is None
    assert torch.load(directory / 'out' / 'model.pt', weights_only=True)['step'] == 2


@pytest.mark.parametrize(
    ('plan', 'message'),
    [
        ({'train': [0, 1], 'validation': [1, 2]}, 'overlap'),
        ({'train': [0, 1], 'validation': [99]}, 'indices below 16'),
        ({'train': [0, 1], 'validation': [2], 'weights': {'speed': 1.0}}, 'unknown objective weight'),
        ({'train': [0, 1], 'validation': [2], 'folds': 3}, 'unknown validation key'),
    ],
)
def test_bad_plans_are_refused(run_dir, capsys, plan, message):
    directory, _, _ = run_dir
    assert train_with(directory, plan) == EXIT_INVALID_INPUT
    assert message in capsys.readouterr().err
