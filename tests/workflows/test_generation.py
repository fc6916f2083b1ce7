"""The screening funnel of ``crystalgan.generation`` with a tiny trained model, the MLIP engine and the random arm."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_crystalgan.calculations.train import TrainCalculation
from aiida_crystalgan.data.dataset import CrystalDatasetData
from aiida_crystalgan.workflows.generation import GenerationWorkChain, validate_cheap_pass
from aiida_crystalgan.workflows.stability import StabilityWorkChain

#: Reference phases: (symbols, cubic lattice constant in Å, fractional positions, energy per atom in eV).
REFERENCES = {
    'Nb': (['Nb', 'Nb'], 3.3, [[0, 0, 0], [0.5, 0.5, 0.5]], -10.1),
    'O2': (['O', 'O'], 6.0, [[0, 0, 0], [0.2, 0, 0]], -4.9),
    'NbO': (['Nb', 'O'], 2.6, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.6),
}
LENIENT = {'min_distance': 0.3, 'min_volume_per_atom': 1.0, 'max_volume_per_atom': 200.0}


def cubic(symbols, constant, positions) -> orm.StructureData:
    structure = orm.StructureData(cell=(np.eye(3) * constant).tolist())
    for symbol, position in zip(symbols, positions):
        structure.append_atom(symbols=symbol, position=(np.array(position) * constant).tolist())
    return structure


def results_of(structure: orm.StructureData, energy_per_atom: float) -> orm.ArrayData:
    results = orm.ArrayData()
    results.set_array('forces', np.zeros((len(structure.sites), 3)))
    results.set_array('stress', np.zeros((3, 3)))
    results.base.attributes.set_many(
        {
            'energy': energy_per_atom * len(structure.sites),
            'energy_per_atom': energy_per_atom,
            'max_force': 0.0,
            'converged': True,
        }
    )
    return results


@pytest.fixture
def references():
    structures = {key: cubic(*values[:3]) for key, values in REFERENCES.items()}
    return structures, {key: results_of(structures[key], REFERENCES[key][3]) for key in structures}


@pytest.fixture
def training(references):
    structures, _ = references
    return CrystalDatasetData.from_structures(
        list(structures.values()),
        energies=[REFERENCES[key][3] * len(s.sites) for key, s in structures.items()],
        labels=list(structures),
        roles='minimum',
    ).store()


@pytest.fixture
def model(train_code, training, tiny_gan_config):
    results, node = run_get_node(
        TrainCalculation, code=train_code, dataset=training, parameters=orm.Dict(tiny_gan_config)
    )
    assert node.is_finished_ok, node.exit_message
    return results['model']


def builder_for(generate_code, mlip_code, model, training, references, **overrides):
    structures, results = references
    overrides = {
        'num_per_target': 6,
        'screening': LENIENT,
        'random_control': True,
        'max_validations': 2,
        'postprocess': {'require_charge_balance': False, 'validity': {**LENIENT, 'min_distance': 0.3}},
        'cheap_pass': {'size': 3, 'parameters': {'max_steps': 3}},
        'stability': {'check_phonons': False, 'relax': {'max_steps': 5}},
        **overrides,
    }
    builder = GenerationWorkChain.get_builder_from_protocol(
        generate_code,
        {'code': mlip_code},
        targets=[{'composition': 'NbO', 'formula_units': 2}],
        model=model,
        protocol='fast',
        overrides=overrides,
    )
    builder.training_dataset = training
    builder.reference_structures = structures
    builder.reference_results = results
    return builder


@pytest.mark.slow
def test_funnel_with_random_control(generate_code, mlip_code, model, training, references):
    """Both arms go through the same funnel; every stage's count is reported; only passes are predicted."""
    builder = builder_for(generate_code, mlip_code, model, training, references)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    metrics = results['metrics'].get_dict()
    assert set(metrics) == {'gan', 'random', 'sun_rate_lift'}
    for arm in ('gan', 'random'):
        stages = [metrics[arm][key] for key in ('n_generated', 'n_structurally_valid', 'n_unique', 'n_examined')]
        assert stages[0] == 6 and stages == sorted(stages, reverse=True)
        assert metrics[arm]['n_cheap_pass'] <= 3 and metrics[arm]['n_relaxed'] <= 2
    assert results['screening']['counts']['generated'] == 6

    evaluation = results['evaluation'].get_dict()
    assert evaluation, 'the tiny model should leave at least one candidate for validation'
    predicted = dict(results.get('predicted', {}))
    rejected = dict(results.get('rejected', {}))
    assert set(predicted) | set(rejected) == set(evaluation) and not set(predicted) & set(rejected)
    for row in evaluation.values():
        assert row['passes'] == (row['is_local_minimum'] and row['e_above_hull'] <= 0.1)
        assert row['passes'] == (row['rejection_reason'] is None)
    for structure in rejected.values():
        assert structure.base.extras.get('crystalgan_rejection_reason')
    assert metrics['gan']['n_passed'] == len(predicted)


def test_cheap_pass_and_budget_are_validated(generate_code, mlip_code, model, training, references):
    """K above M, an unknown cheap-pass operation or bad engine parameters are refused before anything runs."""
    assert 'operation' in validate_cheap_pass(orm.Dict({'size': 3, 'operation': 'md', 'parameters': {}}), None)
    assert 'max_steps' in validate_cheap_pass(
        orm.Dict({'size': 3, 'operation': 'relax', 'parameters': {'fmax': 0.1}}), None
    )
    assert validate_cheap_pass(orm.Dict({'size': 3, 'operation': 'forces', 'parameters': {}}), None) is None
    builder = builder_for(generate_code, mlip_code, model, training, references, max_validations=5)
    with pytest.raises(ValueError, match='at most cheap_pass.size'):
        run_get_node(builder)


def test_protocol_sizes():
    """`balanced` generates enough for 10^4 candidates over four targets and runs the random control."""
    balanced = GenerationWorkChain.get_protocol_inputs('balanced')
    assert balanced['num_per_target'] * 4 >= 10_000 and balanced['random_control']
    assert balanced['max_validations'] <= balanced['cheap_pass']['size']
    fast = GenerationWorkChain.get_protocol_inputs('fast')
    assert not fast['random_control'] and fast['cheap_pass']['operation'] == 'relax'
    assert set(StabilityWorkChain.get_protocol_inputs('fast')) == set(fast['stability'])


def test_evaluation_verdicts_and_rediscovery(references, training):
    """A relaxed copy of a known phase within 0.01 eV/atom is rediscovered; the window and forces decide the verdict."""
    from aiida_crystalgan.workflows.generation import evaluate_candidates

    structures, results = references
    nodes = {}
    for key, structure in structures.items():
        nodes[f'reference_structure_{key}'] = structure.store()
        nodes[f'reference_results_{key}'] = results[key].store()
    candidates = {
        'known': (REFERENCES['NbO'][:3], -8.595),
        'high': (REFERENCES['NbO'][:3], -8.0),
        'soft': ((['Nb', 'O'], 3.0, [[0, 0, 0], [0.5, 0.5, 0]]), -8.7),
    }
    summary = {}
    for key, (geometry, energy) in candidates.items():
        structure = nodes[f'structure_{key}'] = cubic(*geometry).store()
        nodes[f'results_{key}'] = results_of(structure, energy).store()
        summary[key] = {'is_local_minimum': key != 'soft', 'forces_below_tolerance': key != 'soft'}
    evaluation = evaluate_candidates(orm.Dict(summary), training, orm.Float(0.1), **nodes)['evaluation'].get_dict()
    assert evaluation['known']['rediscovered'] == 'NbO' and evaluation['known']['passes']
    assert evaluation['high']['rediscovered'] is None and not evaluation['high']['passes']
    assert 'outside the 0.1 eV/atom window' in evaluation['high']['rejection_reason']
    assert evaluation['soft']['rejection_reason'] == 'not a local minimum: forces above tolerance'


def test_cheap_pass_ranking_skips_duplicates(references):
    """Copies that the cheap pass brought to the same structure are validated once; the next distinct one goes on."""
    from aiida_crystalgan.workflows.generation import rank_cheap_pass

    structures, results = references
    nodes = {}
    for key, structure in structures.items():
        nodes[f'reference_structure_{key}'] = structure.store()
        nodes[f'reference_results_{key}'] = results[key].store()
    rocksalt = (['Nb', 'Nb', 'Nb', 'Nb', 'O', 'O', 'O', 'O'], 4.2)
    positions = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    candidates = {
        'best': (['Nb', 'O'], 2.6, [[0, 0, 0], [0.5, 0.5, 0.5]], -8.55),
        'copy': (['O', 'Nb'], 2.61, [[0.1, 0.1, 0.1], [0.6, 0.6, 0.6]], -8.54),
        'other': (*rocksalt, [*positions, [0.5, 0.5, 0.5]], -8.3),
        'worst': (['Nb', 'O'], 3.0, [[0, 0, 0], [0.5, 0.5, 0]], -8.0),
    }
    for key, (symbols, constant, coordinates, energy) in candidates.items():
        structure = nodes[f'structure_{key}'] = cubic(symbols, constant, coordinates).store()
        nodes[f'results_{key}'] = results_of(structure, energy).store()
    ranked = rank_cheap_pass(orm.Int(2), **nodes).get_dict()
    assert ranked['selected'] == ['best', 'other']
    assert ranked['duplicate_of'] == {'copy': 'best'}
    assert ranked['e_above_hull']['copy'] > ranked['e_above_hull']['best']
