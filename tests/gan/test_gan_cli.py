"""The executables ``crystalgan-train`` and ``crystalgan-generate`` run as subprocesses, as the CalcJobs run them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from aiida_crystalgan.io import LABELLED, DataFile, write_datafile


def executable(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f'console script `{name}` is not installed')
    return found


def run(name: str, *args) -> subprocess.CompletedProcess:
    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(
        [executable(name), *map(str, args)], capture_output=True, text=True, env=environment, timeout=300, check=False
    )


def write_json(path: Path, values) -> Path:
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope='session')
def gan_config(tiny_gan) -> dict:
    """The smallest GAN, with a quarter of the data for validation."""
    return tiny_gan(validation_fraction=0.25)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, make_records, gan_config):
    """Run ``crystalgan-train`` once on a tiny dataset file; returns its output directory."""
    directory = tmp_path_factory.mktemp('train')
    write_datafile(directory / 'dataset.h5', make_records())
    write_json(directory / 'config.json', gan_config)
    result = run(
        'crystalgan-train',
        '--dataset',
        directory / 'dataset.h5',
        '--config',
        directory / 'config.json',
        '--output-dir',
        directory / 'out',
        '--device',
        'cpu',
    )
    assert result.returncode == 0, result.stderr
    return directory


def test_train_writes_model_losses_and_metrics(trained):
    out = trained / 'out'
    state = torch.load(out / 'model.pt', weights_only=True)
    assert state['step'] == 3
    rows = list(csv.DictReader((out / 'losses.csv').open()))
    assert [int(row['step']) for row in rows] == [1, 2, 3]
    assert {'critic_loss', 'generator_loss', 'gradient_penalty', 'physics_loss'} <= set(rows[0])
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['steps'] == 3 and metrics['device'] == 'cpu' and metrics['num_validation'] == 6
    assert metrics['physics_validation_mae_ev_per_atom'] > 0 and metrics['seconds_per_step'] > 0


def test_generate_writes_readable_candidates(trained, tmp_path):
    request = write_json(
        tmp_path / 'request.json',
        {
            'targets': [{'composition': 'NbO2', 'formula_units': 2}, {'composition': 'NbO', 'formula_units': 1}],
            'num_per_target': 7,
            'seed': 0,
        },
    )
    result = run(
        'crystalgan-generate',
        '--model',
        trained / 'out' / 'model.pt',
        '--request',
        request,
        '--output',
        tmp_path / 'candidates.h5',
        '--device',
        'cpu',
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary['count'] == 14 and summary['structures_per_second'] > 0
    with DataFile(tmp_path / 'candidates.h5') as candidates:
        assert len(candidates) == 14
        assert candidates[0].label == 'NbO2' and candidates[0].source == 'generated'
        assert candidates[0].num_atoms == 6 and candidates[13].num_atoms == 2


def test_soft_walltime_exits_3_and_resumes(trained, tmp_path, gan_config):
    config = write_json(tmp_path / 'config.json', {**gan_config, 'steps': 100000})
    result = run(
        'crystalgan-train',
        '--dataset',
        trained / 'dataset.h5',
        '--config',
        config,
        '--output-dir',
        tmp_path / 'out',
        '--max-wallclock-seconds',
        4,
        '--device',
        'cpu',
    )
    assert result.returncode == 3, result.stderr
    checkpoint = torch.load(tmp_path / 'out' / 'checkpoint.pt', weights_only=True)
    assert 0 < checkpoint['step'] < 100000
    assert not (tmp_path / 'out' / 'model.pt').exists()
    assert (tmp_path / 'out' / 'losses.csv').exists()
    config = write_json(tmp_path / 'more.json', {**gan_config, 'steps': checkpoint['step'] + 1})
    result = run(
        'crystalgan-train',
        '--dataset',
        trained / 'dataset.h5',
        '--config',
        config,
        '--output-dir',
        tmp_path / 'resumed',
        '--resume',
        tmp_path / 'out' / 'checkpoint.pt',
    )
    assert result.returncode == 0, result.stderr
    assert torch.load(tmp_path / 'resumed' / 'model.pt', weights_only=True)['step'] == checkpoint['step'] + 1


def test_sigkill_loses_at_most_one_checkpoint_interval(trained, tmp_path, gan_config):
    """A training killed with SIGKILL leaves a loadable checkpoint of a step that is a multiple of the interval;
    resuming from it finishes the run.
    """
    config = write_json(tmp_path / 'config.json', {**gan_config, 'steps': 100000, 'checkpoint_every_steps': 3})
    checkpoint = tmp_path / 'out' / 'checkpoint.pt'
    process = subprocess.Popen(
        [
            executable('crystalgan-train'),
            '--dataset',
            str(trained / 'dataset.h5'),
            '--config',
            str(config),
            '--output-dir',
            str(tmp_path / 'out'),
            '--device',
            'cpu',
        ],
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    step = torch.load(checkpoint, weights_only=True)['step']
    assert step > 0 and step % 3 == 0
    assert not (tmp_path / 'out' / 'model.pt').exists()
    more = write_json(tmp_path / 'more.json', {**gan_config, 'steps': step + 1})
    result = run(
        'crystalgan-train',
        '--dataset',
        trained / 'dataset.h5',
        '--config',
        more,
        '--output-dir',
        tmp_path / 'resumed',
        '--resume',
        checkpoint,
        '--device',
        'cpu',
    )
    assert result.returncode == 0, result.stderr
    assert torch.load(tmp_path / 'resumed' / 'model.pt', weights_only=True)['step'] == step + 1


def test_bad_input_exits_2(trained, tmp_path, gan_config, capsys):
    """Bad input: message on stderr, exit code 2 (run in-process: the argument handling is the same)."""
    from aiida_crystalgan.gan.cli import generate_main, train_main

    dataset, config = trained / 'dataset.h5', trained / 'config.json'
    assert (
        train_main(['--dataset', str(tmp_path / 'nope.h5'), '--config', str(config), '--output-dir', str(tmp_path)])
        == 2
    )
    assert 'does not exist' in capsys.readouterr().err
    invalid = write_json(tmp_path / 'bad.json', {**gan_config, 'steps': -1})
    assert train_main(['--dataset', str(dataset), '--config', str(invalid), '--output-dir', str(tmp_path)]) == 2
    assert '`steps` must be positive' in capsys.readouterr().err
    empty = tmp_path / 'empty.h5'
    write_datafile(empty, [])
    assert train_main(['--dataset', str(empty), '--config', str(config), '--output-dir', str(tmp_path)]) == 2
    assert 'empty' in capsys.readouterr().err
    unlabelled_roles = tmp_path / 'no-minima.h5'
    write_datafile(unlabelled_roles, [replace(record, role=LABELLED) for record in DataFile(dataset)])
    assert (
        train_main(
            ['--dataset', str(unlabelled_roles), '--config', str(config), '--output-dir', str(tmp_path / 'no-minima')]
        )
        == 2
    )
    assert 'none of the 24 usable structures has the role `minimum`' in capsys.readouterr().err
    assert not (tmp_path / 'no-minima' / 'model.pt').exists()
    model = str(trained / 'out' / 'model.pt')
    for request, message in [
        ({'targets': [{'composition': 'TiO2'}], 'num_per_target': 2}, 'not in the model vocabulary'),
        ({'targets': [{'composition': 'NbO2', 'formula_units': 5}]}, 'more than n_max'),
        ({'targets': [{'composition': 'NbO2'}], 'num_per_target': -1}, 'num_per_target'),
        ({'targets': 'NbO2'}, '`targets` must be a list'),
    ]:
        path = write_json(tmp_path / 'request.json', request)
        assert generate_main(['--model', model, '--request', str(path), '--output', str(tmp_path / 'c.h5')]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'c.h5').exists()


def test_bad_input_exits_2_from_the_console_script(tmp_path):
    result = run(
        'crystalgan-generate',
        '--model',
        tmp_path / 'none.pt',
        '--request',
        tmp_path / 'r.json',
        '--output',
        tmp_path / 'c.h5',
    )
    assert result.returncode == 2 and 'does not exist' in result.stderr
