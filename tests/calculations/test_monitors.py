"""The training progress monitor, through a real localhost transport and inside a real training job."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common.log import configure_logging
from aiida.engine import run_get_node

from aiida_crystalgan.calculations.monitors import LATEST_LOSSES_EXTRA, parse_latest_losses, training_progress
from aiida_crystalgan.calculations.train import LOSSES_FILE, TrainCalculation
from aiida_crystalgan.workflows.training import progress_monitor

HEADER = 'step,critic_loss,generator_loss,wasserstein_distance,physics_loss\n'


def test_parse_latest_losses():
    latest = parse_latest_losses(HEADER + '1,0.5,0.25,0.1,nan\n2,0.4,0.2,0.05,1.5\n')
    assert latest == {
        'step': 2.0,
        'critic_loss': 0.4,
        'generator_loss': 0.2,
        'wasserstein_distance': 0.05,
        'physics_loss': 1.5,
    }
    assert parse_latest_losses(HEADER + '1,0.5,0.25,0.1,nan\n')['physics_loss'] is None
    assert parse_latest_losses(HEADER) is None
    assert parse_latest_losses(HEADER + '3,0.4,0.2\n') is None  # half-written line


@pytest.fixture
def database_logging():
    """Reports go to the database: CLI tests that run before these reconfigure logging without the database."""
    configure_logging(with_orm=True)


@pytest.fixture
def running_job(aiida_localhost, tmp_path):
    """A stored training CalcJob node whose remote working directory is ``tmp_path`` on localhost."""
    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:crystalgan.train')
    node.set_remote_workdir(str(tmp_path))
    return node.store()


def _reports(node) -> list[str]:
    return [log.message for log in orm.Log.collection.get_logs_for(node)]


def test_monitor_reports_each_new_step_once(aiida_localhost, running_job, tmp_path, database_logging):
    losses = tmp_path / LOSSES_FILE
    with aiida_localhost.get_transport() as transport:
        assert training_progress(running_job, transport) is None  # no losses yet: no news, no error
        assert LATEST_LOSSES_EXTRA not in running_job.base.extras.all
        losses.write_text(HEADER + '1,0.5,0.25,0.1,nan\n')
        assert training_progress(running_job, transport) is None
        assert training_progress(running_job, transport) is None  # same step: reported once
        losses.write_text(HEADER + '1,0.5,0.25,0.1,nan\n2,0.4,0.2,0.05,1.5\n')
        assert training_progress(running_job, transport) is None
    assert running_job.base.extras.get(LATEST_LOSSES_EXTRA)['step'] == 2
    assert _reports(running_job) == [
        'training step 1: critic_loss 0.5, generator_loss 0.25, wasserstein_distance 0.1',
        'training step 2: critic_loss 0.4, generator_loss 0.2, wasserstein_distance 0.05, physics_loss 1.5',
    ]


def test_training_job_with_monitor_finishes_and_is_costed(train_code, tiny_dataset, tiny_gan_config, database_logging):
    """The monitor reports along a real training job without stopping it; the job's cost is its measured wall time."""
    from aiida_crystalgan.tools import calcjob_cost

    _, node = run_get_node(
        TrainCalculation,
        code=train_code,
        dataset=tiny_dataset,
        parameters=orm.Dict({**tiny_gan_config, 'steps': 20}),
        monitors={'progress': orm.Dict(progress_monitor(1))},
    )
    assert node.is_finished_ok, node.exit_message
    cost = calcjob_cost(node)
    assert cost.source == 'measured'
    assert 0 < cost.wall_s <= (node.mtime - node.ctime).total_seconds()
    assert (cost.cores, cost.gpus) == (1, 0)
    # The job runs for many seconds (twenty logged steps) and the monitor may run every second: it reported.
    assert 1 <= node.base.extras.get(LATEST_LOSSES_EXTRA)['step'] <= 20
    reports = _reports(node)
    assert reports and all(message.startswith('training step ') for message in reports)
