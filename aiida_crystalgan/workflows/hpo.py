"""``crystalgan.hpo``: hyperparameter and architecture search with k-fold cross-validation over training runs.

Every trial trains one model per fold (``crystalgan.training``, so wall-clock stops resume) and scores it on the
fold's held-out structures; the study is rebuilt from the finished trials at every step (``aiida_crystalgan.hpo``),
so a restarted daemon continues the same deterministic search. The best configuration is then trained on all folds
and evaluated once on the held-out test split.
"""

from __future__ import annotations

import copy
from typing import Any

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_

from aiida_crystalgan.data.dataset import CrystalDatasetData, compute_folds, compute_splits
from aiida_crystalgan.data.model import GanModelData
from aiida_crystalgan.gan.evaluation import DEFAULT_WEIGHTS
from aiida_crystalgan.hpo.space import SearchSpace
from aiida_crystalgan.hpo.study import (
    STRATEGIES,
    best_trial,
    parameter_importances,
    pruning_thresholds,
    suggest,
    summarise_trial,
)
from aiida_crystalgan.io import MINIMUM
from aiida_crystalgan.workflows.protocols import ProtocolMixin
from aiida_crystalgan.workflows.training import TrainingWorkChain

GROUP_BY = ('source', 'label', 'composition', 'none')
#: Keys of the ``parameters`` input and of its ``objective`` and ``pruning`` namespaces.
PARAMETER_KEYS = {
    'strategy',
    'num_trials',
    'max_concurrent',
    'num_folds',
    'test_fraction',
    'group_by',
    'seed',
    'grid_cap',
    'startup_trials',
    'train_final',
    'objective',
    'pruning',
}
OPTIONAL_PARAMETER_KEYS = {'startup_trials', 'train_final'}
OBJECTIVE_KEYS = {'weights', 'multi_objective', 'samples_per_minimum', 'coverage'}
PRUNING_KEYS = {'enabled', 'min_trials', 'warmup_steps'}
EXTRA_TRIALS = 'crystalgan_hpo_trials'


def search_parameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``parameters`` of the default protocol with ``overrides`` merged on top."""
    return HyperparameterSearchWorkChain.get_protocol_inputs(None, {'parameters': overrides or {}})['parameters']


def plan_folds(
    dataset: CrystalDatasetData, num_folds: int, test_fraction: float, group_by: str, seed: int
) -> dict[str, Any]:
    """The test split and the k folds of the rest, grouped by ``group_by`` (``ValueError`` when impossible).

    The dataset's own ``test`` split is used when it has splits; otherwise ``test_fraction`` of the groups is held out.
    The dataset's stored folds (less the test split) are used when there are ``num_folds`` of them.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f'cross-validation needs at least 2 folds, got num_folds={num_folds!r}')
    if group_by not in GROUP_BY:
        raise ValueError(f'group_by must be one of {", ".join(GROUP_BY)}, got {group_by!r}')
    keys = None if group_by == 'none' else dataset._group_keys(group_by)  # noqa: SLF001 - the dataset's own grouping
    if dataset.base.attributes.get('splits', None) is not None:
        test = list(dataset.get_split('test'))
    elif test_fraction > 0:
        test = compute_splits(dataset.size, (1.0 - test_fraction, 0.0, test_fraction), seed, keys)['test']
    else:
        test = []
    excluded = set(test)
    pool = [index for index in range(dataset.size) if index not in excluded]
    groups = len({keys[i] for i in pool}) if keys is not None else len(pool)
    if num_folds > groups:
        grouping = f'groups of structures (by {group_by})' if keys is not None else 'structures'
        raise ValueError(f'{num_folds} folds but only {groups} {grouping} outside the test split')
    if dataset.num_folds == num_folds:
        folds = [[i for i in dataset.get_fold(k)[1] if i not in excluded] for k in range(num_folds)]
        if not all(folds):
            raise ValueError('a cross-validation fold stored in the dataset lies entirely in the test split')
    else:
        pool_keys = None if keys is None else [keys[i] for i in pool]
        folds = [[pool[j] for j in fold] for fold in compute_folds(len(pool), num_folds, seed, pool_keys)]
    return {'pool': pool, 'test': sorted(test), 'folds': folds}


def validate_parameters(parameters: dict[str, Any]) -> str | None:
    """A message for the first bad search setting, ``None`` when all are fine."""
    unknown = sorted(set(parameters) - PARAMETER_KEYS)
    if unknown:
        return f'unknown search parameter(s): {", ".join(unknown)}; valid: {", ".join(sorted(PARAMETER_KEYS))}'
    missing = sorted(PARAMETER_KEYS - OPTIONAL_PARAMETER_KEYS - set(parameters))
    if missing:
        return f'missing search parameter(s): {", ".join(missing)} (start from the protocol: `search_parameters()`)'
    for name, known in (('objective', OBJECTIVE_KEYS), ('pruning', PRUNING_KEYS)):
        unknown = sorted(set(parameters.get(name, {})) - known)
        if unknown:
            return f'unknown `{name}` key(s): {", ".join(unknown)}; valid: {", ".join(sorted(known))}'
    if parameters.get('strategy') not in STRATEGIES:
        return f'unknown strategy {parameters.get("strategy")!r}: choose one of {", ".join(STRATEGIES)}'
    for name in ('num_trials', 'max_concurrent', 'grid_cap'):
        value = parameters.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f'`{name}` must be a positive integer, got {value!r}'
    if not 0.0 <= parameters.get('test_fraction', 0.0) < 1.0:
        return f'`test_fraction` must be in [0, 1), got {parameters["test_fraction"]!r}'
    weights = parameters.get('objective', {}).get('weights', {})
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        return f'unknown objective weight(s): {", ".join(unknown)}; valid: {", ".join(DEFAULT_WEIGHTS)}'
    return None


def validate_inputs(inputs: dict[str, Any], _) -> str | None:
    """Refuse at submission: a bad search space or setting, a grid over the cap, too few folds or groups."""
    if 'parameters' not in inputs or 'search_space' not in inputs or 'dataset' not in inputs:
        return None
    parameters = inputs['parameters'].get_dict()
    message = validate_parameters(parameters)
    if message:
        return message
    try:
        space = SearchSpace(inputs['search_space'].get_dict())
        base = inputs['training']['train']['parameters'].get_dict()
        space.check_config(base)
        if parameters['strategy'] == 'grid':
            space.grid(parameters['grid_cap'])
        plan = plan_folds(
            inputs['dataset'],
            parameters['num_folds'],
            parameters['test_fraction'],
            parameters['group_by'],
            parameters['seed'],
        )
        if parameters['objective'].get('multi_objective', False):
            roles = inputs['dataset'].get_roles()
            if any(all(roles[i] != MINIMUM for i in fold) for fold in plan['folds']):
                return 'a multi-objective search needs a `minimum` structure in every fold (its generative objective)'
    except (ValueError, KeyError) as exception:
        return str(exception)
    return None


@calcfunction
def tabulate_trials(summary: orm.Dict, **metrics: orm.Dict) -> dict[str, orm.Dict]:
    """The trial table (config, per-fold values, mean and spread, wall time), Optuna's parameter importances and
    the best configuration; ``metrics`` (the folds' training metrics) are linked for provenance."""
    content = summary.get_dict()
    trials = content['trials']
    space = SearchSpace(content['search_space'])
    best = best_trial(trials)
    rows = [
        {
            key: trial[key]
            for key in ('number', 'state', 'params', 'fold_values', 'value', 'spread', 'wall_seconds', 'curve')
        }
        for trial in trials
    ]
    table = {
        **{k: v for k, v in content.items() if k != 'trials'},
        'trials': rows,
        'importances': parameter_importances(space, trials),
        'best': None if best is None else {key: best[key] for key in ('number', 'params', 'value', 'spread')},
    }
    outputs = {'trials': orm.Dict(table)}
    if best is not None:
        outputs['best_config'] = orm.Dict({**content['base_config'], **best['params']})
    return outputs


class HyperparameterSearchWorkChain(ProtocolMixin, WorkChain):
    """Grid, random or TPE search over ``GanConfig`` fields with k-fold cross-validation, then a final model."""

    _protocol_file = 'hpo.yaml'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            TrainingWorkChain,
            namespace='training',
            exclude=('train.dataset', 'train.validation', 'train.parent_model'),
            namespace_options={
                'help': 'Inputs of every training run; `train.parameters` is the '
                'configuration that the searched fields are set on.'
            },
        )
        spec.input('dataset', valid_type=CrystalDatasetData, help='Structures to cross-validate on.')
        spec.input(
            'search_space',
            valid_type=orm.Dict,
            help='GanConfig fields to search: `{low, high[, log, step, num]}` or `{choices: [...]}` each.',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(search_parameters()),
            help='Search settings: strategy, num_trials, max_concurrent, num_folds, objective, pruning...',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.should_run_trials)(
                cls.run_trials,
                cls.inspect_trials,
            ),
            cls.tabulate,
            if_(cls.should_train_final)(
                cls.run_final,
                cls.inspect_final,
            ),
        )
        spec.output(
            'trials',
            valid_type=orm.Dict,
            help='Trial table: configuration, per-fold values, mean and spread, wall time; importances.',
        )
        spec.output('best_config', valid_type=orm.Dict, required=False, help='GanConfig of the best trial.')
        spec.output(
            'model', valid_type=GanModelData, required=False, help='The best configuration trained on all folds.'
        )
        spec.output(
            'final_metrics',
            valid_type=orm.Dict,
            required=False,
            help='Training metrics of the final model; `validation` holds its held-out test values.',
        )
        spec.exit_code(670, 'ERROR_NO_TRIAL_COMPLETED', message='No trial completed: see the trial table and reports.')
        spec.exit_code(671, 'ERROR_FINAL_TRAINING_FAILED', message='Training the best configuration failed.')

    @classmethod
    def get_override_keys(cls) -> dict[str, Any]:
        """The protocol's keys; ``config`` takes any field of ``GanConfig``."""
        return {**super().get_override_keys(), 'config': TrainingWorkChain.get_override_keys()['config']}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None, overrides: dict[str, Any] | None = None):
        """The protocol's inputs; a ``search_space`` in ``overrides`` replaces the protocol's."""
        overrides = copy.deepcopy(overrides or {})
        search_space = overrides.pop('search_space', None)
        inputs = super().get_protocol_inputs(protocol, overrides)
        if search_space is not None:
            inputs['search_space'] = search_space
        return inputs

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        dataset: CrystalDatasetData,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ):
        """A ready builder for searching on ``dataset`` with ``code`` (``crystalgan.train``) and ``protocol``."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.dataset = dataset
        builder.search_space = orm.Dict(inputs['search_space'])
        builder.parameters = orm.Dict(inputs['parameters'])
        builder.training.train.code = code
        builder.training.train.parameters = orm.Dict(inputs['config'])
        builder.training.max_iterations = orm.Int(inputs['max_iterations'])
        if options:
            builder.training.train.metadata.options = options
        return builder

    def setup(self) -> None:
        """Fix the folds and the test split, and start with no trials."""
        parameters = self.inputs.parameters.get_dict()
        self.ctx.parameters = parameters
        self.ctx.plan = plan_folds(
            self.inputs.dataset,
            parameters['num_folds'],
            parameters['test_fraction'],
            parameters['group_by'],
            parameters['seed'],
        )
        self.ctx.multi = bool(parameters['objective'].get('multi_objective', False))
        self.ctx.trials = []
        self.ctx.batch = []
        self.ctx.exhausted = False
        sizes = [len(fold) for fold in self.ctx.plan['folds']]
        self.report(
            f'{parameters["strategy"]} search of {parameters["num_trials"]} trials, {len(sizes)} folds of '
            f'{sizes} structures, {len(self.ctx.plan["test"])} held out for the test'
        )

    def should_run_trials(self) -> bool:
        return not self.ctx.exhausted and len(self.ctx.trials) < self.ctx.parameters['num_trials']

    def _validation(self, train: list[int], held_out: list[int], pruning: dict | None) -> orm.Dict:
        objective = self.ctx.parameters['objective']
        plan = {
            'train': train,
            'validation': held_out,
            'seed': self.ctx.parameters['seed'],
            'weights': objective.get('weights', {}),
            'samples_per_minimum': objective.get('samples_per_minimum', 4),
            'coverage': objective.get('coverage', True),
        }
        if pruning:
            plan['pruning'] = pruning
        return orm.Dict(plan)

    def _training_inputs(self, config: dict[str, Any], validation: orm.Dict, label: str) -> dict[str, Any]:
        inputs = self.exposed_inputs(TrainingWorkChain, 'training')
        inputs['train'] = {
            **inputs['train'],
            'dataset': self.inputs.dataset,
            'parameters': orm.Dict(config),
            'validation': validation,
        }
        inputs['metadata'] = {'call_link_label': label, 'label': label}
        return inputs

    def run_trials(self):
        """Ask the rebuilt study for the next batch (at most ``max_concurrent`` trials) and train all their folds."""
        parameters = self.ctx.parameters
        count = min(parameters['max_concurrent'], parameters['num_trials'] - len(self.ctx.trials))
        directions = ['minimize'] * (2 if self.ctx.multi else 1)
        batch = suggest(
            SearchSpace(self.inputs.search_space.get_dict()),
            parameters['strategy'],
            parameters['seed'],
            self.ctx.trials,
            count,
            directions,
            parameters.get('startup_trials', 10),
            parameters['grid_cap'],
        )
        if not batch:
            self.report('the grid is exhausted')
            self.ctx.exhausted = True
            return None
        pruning = None
        options = parameters['pruning']
        if options.get('enabled', True) and not self.ctx.multi:
            pruning = pruning_thresholds(self.ctx.trials, options.get('min_trials', 3), options.get('warmup_steps', 0))
        base = self.inputs.training.train.parameters.get_dict()
        pool, folds = self.ctx.plan['pool'], self.ctx.plan['folds']
        running = {}
        self.ctx.batch = []
        for params in batch:
            number = len(self.ctx.trials) + len(self.ctx.batch)
            self.ctx.batch.append({'number': number, 'params': params})
            for index, fold in enumerate(folds):
                held_out = set(fold)
                validation = self._validation([i for i in pool if i not in held_out], fold, pruning)
                label = f'trial_{number}_fold_{index}'
                running[label] = self.submit(
                    TrainingWorkChain, **self._training_inputs({**base, **params}, validation, label)
                )
            self.report(f'trial {number}: {params}')
        return ToContext(**running)

    def inspect_trials(self) -> None:
        """Score each trial of the batch from its folds' held-out values; keep the table in an extra as it grows."""
        for entry in self.ctx.batch:
            number = entry['number']
            nodes = [self.ctx[f'trial_{number}_fold_{index}'] for index in range(len(self.ctx.plan['folds']))]
            folds = []
            for node in nodes:
                ok = node.is_finished_ok and 'metrics' in node.outputs
                folds.append(node.outputs.metrics.get('validation') if ok else None)
                if not ok:
                    self.report(f'trial {number}: {node.process_label}<{node.pk}> failed: {node.exit_message}')
            wall = max(node.mtime for node in nodes) - min(node.ctime for node in nodes)
            trial = summarise_trial(number, entry['params'], folds, wall.total_seconds(), self.ctx.multi)
            self.ctx.trials.append(trial)
            self.report(f'trial {number} {trial["state"]}: objective {trial["value"]} +- {trial["spread"]}')
        self.ctx.batch = []
        self.node.base.extras.set(EXTRA_TRIALS, self.ctx.trials)

    def tabulate(self):
        """Store the trial table and the best configuration."""
        links = {}
        for trial in self.ctx.trials:
            for index in range(len(self.ctx.plan['folds'])):
                node = self.ctx[f'trial_{trial["number"]}_fold_{index}']
                if 'metrics' in node.outputs:
                    links[f'trial_{trial["number"]}_fold_{index}'] = node.outputs.metrics
        summary = {
            'strategy': self.ctx.parameters['strategy'],
            'seed': self.ctx.parameters['seed'],
            'num_folds': len(self.ctx.plan['folds']),
            'fold_sizes': [len(f) for f in self.ctx.plan['folds']],
            'test_size': len(self.ctx.plan['test']),
            'multi_objective': self.ctx.multi,
            'search_space': self.inputs.search_space.get_dict(),
            'base_config': self.inputs.training.train.parameters.get_dict(),
            'trials': self.ctx.trials,
        }
        outputs = tabulate_trials(summary=orm.Dict(summary), **links)
        self.out('trials', outputs['trials'])
        if 'best_config' not in outputs:
            return self.exit_codes.ERROR_NO_TRIAL_COMPLETED
        self.out('best_config', outputs['best_config'])
        self.ctx.best_config = outputs['best_config']
        best = outputs['trials']['best']
        self.report(f'best: trial {best["number"]}, objective {best["value"]} +- {best["spread"]}')
        return None

    def should_train_final(self) -> bool:
        return bool(self.ctx.parameters.get('train_final', True))

    def run_final(self):
        """Train the best configuration on all folds; score it on the test split when there is one."""
        plan = self.ctx.plan
        inputs = self.exposed_inputs(TrainingWorkChain, 'training')
        train = {**inputs['train'], 'dataset': self.inputs.dataset, 'parameters': self.ctx.best_config}
        if plan['test']:
            train['validation'] = self._validation(plan['pool'], plan['test'], None)
        inputs['train'] = train
        inputs['metadata'] = {'call_link_label': 'final', 'label': 'final'}
        return ToContext(final=self.submit(TrainingWorkChain, **inputs))

    def inspect_final(self):
        node = self.ctx.final
        if not node.is_finished_ok:
            self.report(f'{node.process_label}<{node.pk}> failed: {node.exit_message}')
            return self.exit_codes.ERROR_FINAL_TRAINING_FAILED
        self.out('model', node.outputs.model)
        if 'metrics' in node.outputs:
            self.out('final_metrics', node.outputs.metrics)
            test = node.outputs.metrics.get('validation')
            if test:
                self.report(f'final model on the test split: objective {test["objective"]}')
        return None
