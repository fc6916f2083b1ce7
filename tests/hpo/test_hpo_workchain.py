"""``crystalgan.hpo``: refusals at submission, then a real search of 2 trials x 2 folds on localhost and its CLI."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root
from aiida_crystalgan.workflows.hpo import HyperparameterSearchWorkChain

SPACE = {'critic_width': {'choices': [4, 8]}, 'generator_lr': {'low': 1e-4, 'high': 1e-3, 'log': True}}


def builder_for(code, dataset, config, parameters=None, search_space=None):
    overrides = {
        'parameters': {
            'strategy': 'random',
            'num_trials': 2,
            'max_concurrent': 2,
            'num_folds': 2,
            'test_fraction': 0.25,
            'objective': {'samples_per_minimum': 1},
            **(parameters or {}),
        },
        'config': config,
        'search_space': search_space or SPACE,
    }
    return HyperparameterSearchWorkChain.get_builder_from_protocol(code, dataset, protocol='fast', overrides=overrides)


@pytest.mark.parametrize(
    ('parameters', 'search_space', 'message'),
    [
        ({}, {'critic_widht': {'choices': [4, 8]}}, 'unknown field.*critic_widht'),
        ({}, {'cutoff': {'low': 5.0, 'high': 4.0}}, 'cutoff.*empty range'),
        (
            {'strategy': 'grid', 'grid_cap': 10},
            {'critic_depth': {'low': 1, 'high': 4}, 'critic_width': {'low': 4, 'high': 8}},
            '20 points, more than the cap of 10',
        ),
        ({'num_folds': 1}, None, 'at least 2 folds'),
        ({'num_folds': 4}, None, '4 folds but only 3 groups of structures \\(by source\\)'),
        ({'strategy': 'bayes'}, None, 'unknown strategy'),
    ],
)
def test_bad_searches_are_refused_at_submission(
    train_code, grouped_dataset, tiny_config, parameters, search_space, message
):
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder_for(train_code, grouped_dataset, tiny_config, parameters, search_space))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_cli_refuses_a_bad_search_with_a_message(train_code, grouped_dataset):
    result = CliRunner().invoke(
        cmd_root,
        [
            'hpo',
            'submit',
            str(grouped_dataset.pk),
            '--num-folds',
            '1',
            '--train-code',
            train_code.full_label,
            '--no-daemon',
        ],
    )
    assert result.exit_code != 0
    assert 'the search was refused: cross-validation needs at least 2 folds' in result.output
    assert 'Traceback' not in result.output


def test_search_cross_validates_by_source_and_trains_the_final_model(
    train_code, grouped_dataset, tiny_config, tmp_path
):
    results, node = run_get_node(builder_for(train_code, grouped_dataset, tiny_config))
    assert node.is_finished_ok, node.exit_message

    sources = [record.source for record in grouped_dataset]
    children = {child.label: child for child in node.called if child.process_label == 'TrainingWorkChain'}
    assert sorted(children) == ['final', 'trial_0_fold_0', 'trial_0_fold_1', 'trial_1_fold_0', 'trial_1_fold_1']
    test = set(children['final'].inputs.train.validation['validation'])
    assert len({sources[i] for i in test}) == 1
    held_out = []
    for label in ('trial_0_fold_0', 'trial_0_fold_1'):
        plan = children[label].inputs.train.validation
        train, validation = set(plan['train']), set(plan['validation'])
        assert not train & validation and not (train | validation) & test
        assert not {sources[i] for i in train} & {sources[i] for i in validation}
        held_out += sorted(validation)
    assert sorted(held_out) == sorted(set(range(len(sources))) - test)

    table = results['trials'].get_dict()
    assert [trial['number'] for trial in table['trials']] == [0, 1]
    for trial in table['trials']:
        assert trial['state'] == 'complete'
        assert len(trial['fold_values']) == 2
        assert trial['value'] == pytest.approx(sum(trial['fold_values']) / 2)
        config = children[f'trial_{trial["number"]}_fold_0'].inputs.train.parameters.get_dict()
        assert config == {**tiny_config, **trial['params']}
    best = min(table['trials'], key=lambda trial: trial['value'])
    assert table['best']['number'] == best['number']
    assert results['best_config'].get_dict() == {**tiny_config, **best['params']}
    assert results['model'].uuid == children['final'].outputs.model.uuid
    assert results['final_metrics']['validation']['num_held_out'] == len(test)

    runner = CliRunner()
    shown = runner.invoke(cmd_root, ['hpo', 'show', str(node.pk), '--plot', str(tmp_path / 'search.png')])
    assert shown.exit_code == 0, shown.output
    assert 'complete' in shown.output and (tmp_path / 'search.png').stat().st_size > 0
    best_output = runner.invoke(cmd_root, ['hpo', 'best', str(node.pk)])
    assert best_output.exit_code == 0, best_output.output
    assert json.loads(best_output.stdout) == results['best_config'].get_dict()
    status = runner.invoke(cmd_root, ['hpo', 'status', str(node.pk)])
    assert '2/2 trials done (2 complete, 0 pruned, 0 failed)' in status.output
