"""``crystalgan.train`` and ``crystalgan.generate`` as real CalcJobs on localhost, and the training restarts."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node

from aiida_crystalgan.calculations.generate import GenerateCalculation
from aiida_crystalgan.calculations.train import TrainCalculation
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.workflows.training import TrainingWorkChain


def test_training_resumes_after_every_soft_walltime_stop(train_code, tiny_dataset, tiny_gan_config):
    """A 0 s soft limit stops each run after one step; the workchain resumes from each checkpoint to the end."""
    inputs = {
        'train': {'code': train_code, 'dataset': tiny_dataset, 'parameters': orm.Dict(tiny_gan_config),
                  'metadata': {'options': {'max_wallclock_seconds': 1}}},
        'max_iterations': orm.Int(5),
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


def test_training_rejects_invalid_configuration(train_code, tiny_dataset):
    """A bad configuration ends in ERROR_INVALID_INPUT with the executable's explanation."""
    inputs = {'code': train_code, 'dataset': tiny_dataset, 'parameters': orm.Dict({'steps': -3})}
    _, node = run_get_node(TrainCalculation, **inputs)
    assert node.exit_status == TrainCalculation.exit_codes.ERROR_INVALID_INPUT.status
    assert 'steps' in node.exit_message


@pytest.fixture
def trained_model(train_code, tiny_dataset, tiny_gan_config) -> GanModelData:
    results, node = run_get_node(TrainCalculation, code=train_code, dataset=tiny_dataset,
                                 parameters=orm.Dict(tiny_gan_config))
    assert node.is_finished_ok, node.exit_message
    return results['model']


def test_generate_candidates(generate_code, trained_model):
    """Generation returns the requested number of structures with exactly the requested compositions."""
    request = {'targets': [{'composition': 'NbO', 'formula_units': 2}, {'composition': 'Nb', 'formula_units': 2}],
               'num_per_target': 5, 'seed': 3}
    results, node = run_get_node(GenerateCalculation, code=generate_code, model=trained_model,
                                 parameters=orm.Dict(request))
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
    assert counts['generated'] == sum(counts[key] for key in ('composition', 'volume', 'min_distance', 'duplicate',
                                                               'ranked'))
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
    request = {'targets': [{'composition': 'NbO', 'formula_units': 2}], 'num_per_target': 4, 'seed': 1,
               'source': 'random'}
    results, node = run_get_node(GenerateCalculation, code=generate_code, model=trained_model,
                                 parameters=orm.Dict(request))
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
    ({'targets': [{'composition': 'NbO', 'formula_units': 1}], 'num_per_target': 2, 'source': 'diffusion'},
     '`source`'),
]


def test_generate_rejects_bad_requests(generate_code, trained_model):
    """Each bad request is refused at submission, with a message naming the problem (one model for all cases)."""
    for request, message in BAD_REQUESTS:
        with pytest.raises(ValueError, match=message):
            run_get_node(GenerateCalculation, code=generate_code, model=trained_model, parameters=orm.Dict(request))
