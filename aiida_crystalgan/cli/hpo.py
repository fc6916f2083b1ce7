"""``aiida-crystalgan hpo``: submit a hyperparameter search and read its trial table."""

from __future__ import annotations

import json
import re

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

from aiida_crystalgan.cli.campaign import _load_code, read_yaml
from aiida_crystalgan.workflows.protocols import DEFAULT_PROTOCOL, PROTOCOL_DIRECTORY, load_protocol_file

PROTOCOLS = list(load_protocol_file(PROTOCOL_DIRECTORY / 'hpo.yaml')['protocols'])


@click.group('hpo')
def hpo() -> None:
    """Hyperparameter and architecture search of the GAN with cross-validation."""


@hpo.command('submit')
@click.argument('dataset', type=str)
@click.option('--protocol', type=click.Choice(PROTOCOLS), default=DEFAULT_PROTOCOL, show_default=True)
@click.option('--strategy', type=click.Choice(['grid', 'random', 'tpe']), help='Overrides the protocol.')
@click.option('--num-trials', type=click.IntRange(min=1), help='Overrides the protocol.')
@click.option('--num-folds', type=int, help='Overrides the protocol (at least 2).')
@click.option('--max-concurrent', type=click.IntRange(min=1), help='Trials in flight at a time.')
@click.option('--seed', type=int, help='Seed of the folds and of the sampler.')
@click.option(
    '--search-space',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file: GanConfig field -> {low, high[, log, step, num]} or {choices: [...]}.',
)
@click.option(
    '--overrides',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file whose values override the protocol (`parameters`, `config`, `search_space`).',
)
@click.option('--train-code', default='crystalgan_train@localhost', show_default=True)
@click.option(
    '--train-options',
    type=click.Path(exists=True, dir_okay=False),
    help='YAML file of scheduler options of every training run.',
)
@click.option(
    '--daemon/--no-daemon', default=True, show_default=True, help='Submit to the daemon, or run in this process.'
)
@decorators.with_dbenv()
def hpo_submit(
    dataset,
    protocol,
    strategy,
    num_trials,
    num_folds,
    max_concurrent,
    seed,
    search_space,
    overrides,
    train_code,
    train_options,
    daemon,
) -> None:
    """Search the GAN's configuration on DATASET (pk, UUID or label of a CrystalDatasetData)."""
    from aiida import orm
    from aiida.engine import run_get_node, submit

    from aiida_crystalgan.data.dataset import CrystalDatasetData
    from aiida_crystalgan.workflows.hpo import HyperparameterSearchWorkChain

    try:
        node = orm.load_node(dataset)
    except Exception as exception:  # noqa: BLE001 - not existent, or ambiguous
        raise click.BadParameter(f'dataset `{dataset}` not found: {exception}') from exception
    if not isinstance(node, CrystalDatasetData):
        raise click.BadParameter(f'node `{dataset}` is a {type(node).__name__}, not a CrystalDatasetData')
    values = read_yaml(overrides) or {}
    chosen = {
        'strategy': strategy,
        'num_trials': num_trials,
        'num_folds': num_folds,
        'max_concurrent': max_concurrent,
        'seed': seed,
    }
    values.setdefault('parameters', {}).update({k: v for k, v in chosen.items() if v is not None})
    if search_space:
        values['search_space'] = read_yaml(search_space)
    builder = HyperparameterSearchWorkChain.get_builder_from_protocol(
        _load_code(train_code, 'training'), node, protocol=protocol, overrides=values, options=read_yaml(train_options)
    )
    try:
        process = submit(builder) if daemon else run_get_node(builder).node
    except ValueError as exception:
        reason = re.sub(r"^Error occurred validating port '[\w.]*': ", '', str(exception))
        echo.echo_critical(f'the search was refused: {reason}')
    echo.echo_success(f'hyperparameter search <{process.pk}> {"submitted" if daemon else "finished"}')


def _trials(node) -> list[dict]:
    from aiida_crystalgan.workflows.hpo import EXTRA_TRIALS

    if 'trials' in node.outputs:
        return node.outputs.trials['trials']
    return node.base.extras.get(EXTRA_TRIALS, [])


def _search(pk: str):
    from aiida import orm

    from aiida_crystalgan.workflows.hpo import HyperparameterSearchWorkChain

    node = orm.load_node(pk)
    if node.process_class is not HyperparameterSearchWorkChain:
        raise click.BadParameter(f'node <{node.pk}> is not a crystalgan.hpo search')
    return node


def _format(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, list):
        return '(' + ', '.join(_format(v) for v in value) + ')'
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def format_table(trials: list[dict]) -> str:
    """One line per trial: number, state, mean ± spread, per-fold values, wall time, parameters."""
    lines = [f'{"#":>3} {"state":9} {"objective":>20} {"folds":30} {"wall s":>8}  parameters']
    for trial in trials:
        objective = f'{_format(trial["value"])} ± {_format(trial["spread"])}' if trial['value'] is not None else '-'
        folds = ' '.join(_format(v) for v in trial['fold_values'] or [])
        params = ', '.join(f'{k}={_format(v)}' for k, v in trial['params'].items())
        lines.append(
            f'{trial["number"]:>3} {trial["state"]:9} {objective:>20} {folds:30} {trial["wall_seconds"]:8.0f}  {params}'
        )
    return '\n'.join(lines)


@hpo.command('status')
@arguments.PROCESS()
@decorators.with_dbenv()
def hpo_status(process) -> None:
    """State of a search and its trial counts."""
    node = _search(process.pk)
    trials = _trials(node)
    states = {state: sum(t['state'] == state for t in trials) for state in ('complete', 'pruned', 'failed')}
    planned = node.inputs.parameters['num_trials']
    echo.echo(
        f'search <{node.pk}>: {node.process_state.value if node.process_state else "unknown"}; '
        f'{len(trials)}/{planned} trials done ({", ".join(f"{v} {k}" for k, v in states.items())})'
    )
    running = [n for n in node.called if not n.is_terminated]
    if running:
        echo.echo(f'in flight: {", ".join(sorted(n.label for n in running))}')


@hpo.command('show')
@arguments.PROCESS()
@click.option('--plot', type=click.Path(dir_okay=False), help='Write the objective and importance plot here (PNG).')
@decorators.with_dbenv()
def hpo_show(process, plot) -> None:
    """Print the trial table; with --plot, plot objective vs. trial and Optuna's parameter importances."""
    node = _search(process.pk)
    trials = _trials(node)
    if not trials:
        echo.echo_warning(f'search <{node.pk}> has no finished trial yet')
        return
    echo.echo(format_table(trials))
    importances = node.outputs.trials.get('importances', {}) if 'trials' in node.outputs else {}
    if importances:
        echo.echo('importance: ' + ', '.join(f'{k} {v:.2f}' for k, v in importances.items()))
    if plot:
        from aiida_crystalgan.hpo.plot import plot_search

        plot_search(trials, importances, plot)
        echo.echo_success(f'wrote {plot}')


@hpo.command('best')
@arguments.PROCESS()
@decorators.with_dbenv()
def hpo_best(process) -> None:
    """Print the best configuration as JSON (and the final model's pk when there is one)."""
    node = _search(process.pk)
    if 'best_config' not in node.outputs:
        echo.echo_critical(f'search <{node.pk}> has no best configuration (yet): see `aiida-crystalgan hpo status`')
    echo.echo(json.dumps(node.outputs.best_config.get_dict(), indent=2, sort_keys=True))
    if 'model' in node.outputs:
        echo.echo(f'final model: GanModelData<{node.outputs.model.pk}>', err=True)
