"""``crystalgan.train`` and ``crystalgan.generate`` as real CalcJobs on localhost, and the training restarts."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.calculations.train import TrainCalculation
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.io.status import EXIT_DIVERGED
from aiida_crystalgan.workflows.training import TrainingWorkChain


def test_training_resumes_after_every_soft_walltime_stop(train_code, tiny_dataset, tiny_gan_config):
    """A 0 s soft limit stops each run after one step; the workchain resumes from each checkpoint to the end, and
    these restarts, each of which advanced the training, do not use up ``max_iterations`` (1 here)."""
    inputs = {
        'train': {
            'code': train_code,
            'dataset': tiny_dataset,
            'parameters': orm.Dict(tiny_gan_config),
            'metadata': {'options': {'max_wallclock_seconds': 1}},
        },
        'max_iterations': orm.Int(1),
    }
    results, node = run_get_node(TrainingWorkChain, **inputs)
    assert node.is_finished_ok, node.exit_message
    calculations = sorted(node.called, key=lambda n: n.ctime)
    stopped = TrainCalculation.exit_codes.ERROR_SOFT_WALLTIME_CHECKPOINT.status
    assert [c.exit_status for c in calculations] == [stopped, stopped, 0]
    assert calculations[0].outputs.checkpoint.step == 1
    assert calculations[1].inputs.parent_model.uuid == calculations[0].outputs.checkpoint.uuid
    model = results['model']
    assert model.step == tiny_gan_config['steps']
    assert sorted(model.elements) == ['Nb', 'O']
    assert 'losses' in results and 'metrics' in results
    checkpoint = io.BytesIO(model.base.repository.get_object_content(GanModelData.FILENAME, mode='rb'))
    assert torch.load(checkpoint, weights_only=True)['step'] == tiny_gan_config['steps']


@pytest.mark.parametrize(
    ('config', 'message'),
    [
        ({'steps': -3}, 'steps'),
        ({'n_mx': 8}, 'unknown config key.*n_mx'),
        ({'steps': '3'}, 'steps'),
    ],
)
def test_training_rejects_invalid_configuration_at_submission(train_code, tiny_dataset, config, message):
    """A bad GAN configuration (a typo, a wrong type) is refused when the job is submitted, not hours later."""
    inputs = {'code': train_code, 'dataset': tiny_dataset, 'parameters': orm.Dict(config)}
    with pytest.raises(ValueError, match=message):
        run_get_node(TrainCalculation, **inputs)
    with pytest.raises(ValueError, match=message):
        run_get_node(TrainingWorkChain, train=inputs)


def test_train_executable_reports_divergence(tmp_path, monkeypatch, tiny_gan_config):
    """``crystalgan-train`` maps a diverged run to status `diverged` (exit 4) and leaves the last good checkpoint."""
    from ase.build import bulk

    from aiida_crystalgan.gan import TrainingDiverged, cli, training
    from aiida_crystalgan.io import StructureRecord, write_datafile

    resumed = tmp_path / 'parent.pt'
    resumed.write_bytes(b'last good weights')

    def diverge(*args, **kwargs):
        raise TrainingDiverged(7, {'critic': float('nan')}, resumed)

    monkeypatch.setattr(training, 'train', diverge)
    write_datafile(tmp_path / 'data.h5', [StructureRecord.from_ase(bulk('Nb', 'bcc', a=3.3), label='nb')])
    (tmp_path / 'config.json').write_text(json.dumps(tiny_gan_config))
    output = tmp_path / 'out'
    code = cli.train_main(
        ['--dataset', str(tmp_path / 'data.h5'), '--config', str(tmp_path / 'config.json'), '--output-dir', str(output)]
    )
    assert code == EXIT_DIVERGED
    status = json.loads((output / 'status.json').read_text())
    assert status['status'] == 'diverged' and status['step'] == 7 and 'critic=nan' in status['message']
    assert (output / 'checkpoint.pt').read_bytes() == b'last good weights'


DIVERGING_TRAINER = """#!/bin/bash
cp {checkpoint} checkpoint.pt
echo '{{"status": "diverged", "exit_code": 4, "exit_name": "EXIT_DIVERGED", "message": "critic=nan"}}' > status.json
exit 4
"""


def test_diverged_training_stops_with_its_last_good_checkpoint(
    aiida_localhost, tmp_path, tiny_dataset, trained_model, tiny_gan_config
):
    """The workchain does not rerun a diverged training: it stops with 640 and outputs the last good checkpoint."""
    checkpoint = tmp_path / 'good.pt'
    trained_model.write_file(checkpoint)
    script = tmp_path / 'diverging-train'
    script.write_text(DIVERGING_TRAINER.format(checkpoint=checkpoint))
    script.chmod(0o755)
    code = orm.InstalledCode(
        label='diverging-train',
        computer=aiida_localhost,
        filepath_executable=str(script),
        default_calc_job_plugin='crystalgan.train',
    ).store()
    results, node = run_get_node(
        TrainingWorkChain, train={'code': code, 'dataset': tiny_dataset, 'parameters': orm.Dict(tiny_gan_config)}
    )
    assert node.exit_status == TrainingWorkChain.exit_codes.ERROR_TRAINING_DIVERGED.status
    assert 'critic=nan' in node.exit_message
    assert len(node.called) == 1, 'a diverged training is not restarted'
    assert node.called[0].exit_status == TrainCalculation.exit_codes.ERROR_TRAINING_DIVERGED.status
    assert results['checkpoint'].step == trained_model.step


KILLED_TRAINER = """#!/bin/bash
case " $* " in
    *" --resume "*) exec {real} "$@" ;;
esac
cp {checkpoint} checkpoint.pt
kill -9 $$
"""


def test_killed_training_resumes_from_its_periodic_checkpoint(
    aiida_localhost, tmp_path, tiny_dataset, train_code, trained_model, tiny_gan_config
):
    """A run SIGKILLed after a periodic checkpoint (no status.json) is resumed from that checkpoint, not from zero."""
    checkpoint = tmp_path / 'periodic.pt'
    trained_model.write_file(checkpoint)
    script = tmp_path / 'killed-train'
    script.write_text(KILLED_TRAINER.format(real=train_code.filepath_executable, checkpoint=checkpoint))
    script.chmod(0o755)
    code = orm.InstalledCode(
        label='killed-train',
        computer=aiida_localhost,
        filepath_executable=str(script),
        default_calc_job_plugin='crystalgan.train',
    ).store()
    results, node = run_get_node(
        TrainingWorkChain, train={'code': code, 'dataset': tiny_dataset, 'parameters': orm.Dict(tiny_gan_config)}
    )
    assert node.is_finished_ok, node.exit_message
    killed, resumed = sorted(node.called, key=lambda child: child.ctime)
    assert killed.exit_status == TrainCalculation.exit_codes.ERROR_EXECUTABLE_CRASHED.status
    assert resumed.inputs.parent_model.uuid == killed.outputs.checkpoint.uuid
    assert killed.outputs.checkpoint.step == trained_model.step
    assert results['model'].step == tiny_gan_config['steps']


@pytest.fixture
def trained_model(train_code, tiny_dataset, tiny_gan_config) -> GanModelData:
    results, node = run_get_node(
        TrainCalculation, code=train_code, dataset=tiny_dataset, parameters=orm.Dict(tiny_gan_config)
    )
    assert node.is_finished_ok, node.exit_message
    return results['model']


def test_generate_candidates(generate_code, trained_model):
    """Generation returns the requested number of structures with exactly the requested compositions."""
    request = {
        'targets': [{'composition': 'NbO', 'formula_units': 2}, {'composition': 'Nb', 'formula_units': 2}],
        'num_per_target': 5,
        'seed': 3,
    }
    results, node = run_get_node(
        GenerateCalculation, code=generate_code, model=trained_model, parameters=orm.Dict(request)
    )
    assert node.is_finished_ok, node.exit_message
    candidates = results['candidates']
    assert candidates.size == 10
    formulas = sorted(candidates.get_structure(i).composition.formula for i in range(candidates.size))
    assert formulas == sorted(['Nb2'] * 5 + ['Nb2 O2'] * 5)
    assert candidates.base.attributes.get('metadata')['model'] == trained_model.uuid

    # the fast filters account for every candidate; the survivors are ranked by predicted energy per composition
    screening = results['screening'].get_dict()
    counts = screening['counts']
    assert counts['generated'] == 10
    assert counts['generated'] == sum(
        counts[key] for key in ('composition', 'volume', 'min_distance', 'duplicate', 'ranked')
    )
    assert counts['composition'] == 0
    assert list(screening['per_composition']) == ['NbO', 'Nb']
    ranking = results['ranking']
    indices = ranking.get_array('indices')
    energies = ranking.get_array('predicted_energy_per_atom')
    assert len(indices) == counts['ranked'] == len(set(indices.tolist()))
    assert np.isfinite(energies).all() and (np.diff(energies) >= 0).all()
    labels = [candidates[int(i)].label for i in indices]
    assert labels == [list(screening['per_composition'])[c] for c in ranking.get_array('compositions')]


def test_generate_random_control(generate_code, trained_model):
    """The random-search source: PyXtal crystals of the same compositions, screened by the same model."""
    request = {
        'targets': [{'composition': 'NbO', 'formula_units': 2}],
        'num_per_target': 4,
        'seed': 1,
        'source': 'random',
    }
    results, node = run_get_node(
        GenerateCalculation, code=generate_code, model=trained_model, parameters=orm.Dict(request)
    )
    assert node.is_finished_ok, node.exit_message
    candidates = results['candidates']
    assert candidates.size == 4
    assert {record.source for record in candidates} == {'random'}
    assert {candidates.get_structure(i).composition.formula for i in range(4)} == {'Nb2 O2'}
    assert results['screening']['counts']['generated'] == 4


BAD_REQUESTS = [
    ({'targets': [{'composition': 'TiO2', 'formula_units': 1}], 'num_per_target': 2}, 'not trained on'),
    ({'targets': [{'composition': 'NbO', 'formula_units': 0}], 'num_per_target': 2}, 'must be positive'),
    ({'targets': [{'composition': 'NbO', 'formula_units': 1}], 'num_per_target': 0}, '`num_per_target`'),
    ({'targets': []}, 'no `targets`'),
    ({'targets': [{'composition': 'NbO', 'formula_units': 1}], 'num_per_target': 2, 'source': 'diffusion'}, '`source`'),
]


def test_generate_rejects_bad_requests(generate_code, trained_model):
    """Each bad request is refused at submission, with a message naming the problem (one model for all cases)."""
    for request, message in BAD_REQUESTS:
        with pytest.raises(ValueError, match=message):
            run_get_node(GenerateCalculation, code=generate_code, model=trained_model, parameters=orm.Dict(request))
