"""The campaign on a PostgreSQL + RabbitMQ profile with two daemon workers, every code run through SSH and Slurm.

The daemon (circus and its workers) is SIGKILLed while an engine job is in Slurm and restarted: the campaign
finishes, no process excepted, and no finished calculation runs a second time.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import psutil
import pytest
from aiida import orm
from aiida.engine import submit
from aiida.engine.daemon.client import get_daemon_client
from aiida.manage import get_manager

from aiida_crystalgan.workflows.campaign import CampaignWorkChain

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('services')]  # one worker starts and stops the services

TIMEOUT = 1800


def calculations_of(campaign: orm.WorkChainNode) -> list[orm.CalcJobNode]:
    return [node for node in campaign.called_descendants if isinstance(node, orm.CalcJobNode)]


def refresh() -> None:
    """Forget the nodes loaded by this process: the daemon workers change them in the database."""
    get_manager().get_profile_storage().get_session().expire_all()


def await_condition(condition, what: str, campaign: orm.WorkChainNode) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        refresh()
        if condition():
            return
        if campaign.is_terminated:
            pytest.fail(f'the campaign terminated before {what}: {campaign.process_state} {campaign.exit_message}')
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {TIMEOUT} s waiting for {what}')
        time.sleep(1)


def kill_daemon(client) -> list[int]:
    """SIGKILL the circus daemon and all its processes (workers included), by pid; return the pids once gone."""
    daemon = psutil.Process(client.get_daemon_pid())
    workers = {int(pid) for pid in client.get_worker_info()['info']}
    processes = [daemon, *daemon.children(recursive=True)]
    assert len(workers) == 2 and workers <= {p.pid for p in processes}
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], 'daemon processes survived SIGKILL'
    return [p.pid for p in processes]


def interrupted_and_relaunched(node: orm.ProcessNode, killed_time: datetime) -> bool:
    """Whether ``node`` is a process function that was running when the daemon was killed and was run again.

    A process function runs inside its caller's step and has no checkpoint of its own: a SIGKILL leaves its node
    without an end state for good, and the caller, resumed from its last checkpoint, calls it again. Accepted only if
    it started before the kill, never reached an end state (an excepted or killed one is a failure) and its caller
    finished the same function after the kill.
    """
    if not isinstance(node, orm.CalcFunctionNode | orm.WorkFunctionNode) or node.ctime > killed_time:
        return False
    if node.is_terminated:
        return False
    if node.caller is None:
        return False
    return any(
        sibling.process_label == node.process_label and sibling.ctime > killed_time and sibling.is_finished_ok
        for sibling in node.caller.called
    )


def test_campaign_survives_a_killed_daemon(production_profile, slurm, tiny_overrides):
    builder = CampaignWorkChain.get_builder_from_protocol(
        'Nb-O',
        slurm['crystalgan-mlip'],
        slurm['crystalgan-train'],
        slurm['crystalgan-generate'],
        protocol='fast',
        # what is under test is the daemon, not the phonon check (covered through the daemon on the ZeroMQ profile):
        # no phonon jobs, and six seeds, keep the campaign short
        overrides=tiny_overrides(seeds={'max_atoms': 3}, stability={'check_phonons': False}),
    )
    builder.group_label = orm.Str('test/production')

    client = get_daemon_client(production_profile.name)
    client.start_daemon(number_workers=2)
    assert client.get_number_of_workers() == 2
    campaign = submit(builder)

    # Mid-campaign: one engine calculation finished and another one queued or running in Slurm.
    def finished_and_in_slurm() -> bool:
        calculations = calculations_of(campaign)
        return any(c.is_finished_ok for c in calculations) and any(
            not c.is_terminated and c.get_job_id() for c in calculations
        )

    await_condition(finished_and_in_slurm, 'a calculation in Slurm after a finished one', campaign)
    finished_before = {c.pk for c in calculations_of(campaign) if c.is_finished_ok}
    killed = kill_daemon(client)
    killed_time = datetime.now(UTC)  # every process node created before this was created before the kill
    killed_at = (killed_time - campaign.ctime).total_seconds()

    client.start_daemon(number_workers=2)
    assert client.get_number_of_workers() == 2
    assert not set(killed) & {client.get_daemon_pid(), *(int(p) for p in client.get_worker_info()['info'])}
    await_condition(lambda: campaign.is_terminated, 'the end of the campaign', campaign)
    assert campaign.is_finished_ok, campaign.exit_message
    assert campaign.base.extras.get('crystalgan_stage') == 'finished'
    # a tiny model's candidates are validated, then predicted or rejected by their verdicts
    validated = [
        structure
        for namespace in ('predicted', 'rejected')
        if namespace in campaign.outputs
        for structure in campaign.outputs[namespace].values()
    ]
    assert validated

    # No process left behind or excepted in the whole profile, except the process functions the kill interrupted.
    processes = orm.QueryBuilder().append(orm.ProcessNode).all(flat=True)
    left = [node for node in processes if node.process_state is None or node.process_state.value != 'finished']
    interrupted = [node for node in left if interrupted_and_relaunched(node, killed_time)]
    unfinished = [
        f'{node.process_label}<{node.pk}> state {node.process_state} called by {node.caller} created '
        f'{(node.ctime - campaign.ctime).total_seconds():.0f} s after the campaign'
        for node in left
        if node not in interrupted
    ]
    assert not unfinished, f'daemon killed {killed_at:.0f} s after the campaign started; ' + '; '.join(unfinished)
    for node in interrupted:
        print(f'interrupted by the kill and run again by its caller: {node.process_label}<{node.pk}>')

    # No calculation ran twice: each caller launched each set of inputs once, and each Slurm job belongs to one node.
    calculations = calculations_of(campaign)
    assert finished_before <= {c.pk for c in calculations}
    launches = Counter(
        (
            c.caller.pk,
            frozenset(
                (link.link_label, link.node.pk)
                for link in c.base.links.get_incoming().all()
                if link.link_type.value == 'input_calc'
            ),
        )
        for c in calculations
    )
    assert max(launches.values()) == 1, 'a calculation was launched twice with the same inputs'
    job_ids = [c.get_job_id() for c in calculations]
    assert None not in job_ids and len(set(job_ids)) == len(job_ids)
    assert all(c.computer.label == 'slurm-ssh' for c in calculations)
    assert {c.process_type for c in calculations} >= {
        'aiida.calculations:crystalgan.mlip',
        'aiida.calculations:crystalgan.train',
        'aiida.calculations:crystalgan.generate',
    }


def test_only_a_relaunched_process_function_counts_as_interrupted(production_profile):
    """The killed-daemon test's exception: a process function with a finished rerun by its caller after the kill."""
    from aiida.common.links import LinkType
    from aiida.tools import delete_nodes

    created: list[orm.ProcessNode] = []

    def node(kind: type[orm.ProcessNode], label: str, caller=None, state: str | None = None) -> orm.ProcessNode:
        process = kind()
        created.append(process)
        process.set_process_label(label)
        if caller is not None:
            link = LinkType.CALL_CALC if kind is orm.CalcFunctionNode else LinkType.CALL_WORK
            process.base.links.add_incoming(caller, link, 'CALL')
        process.store()
        if state is not None:
            process.set_process_state(state)
        if state == 'finished':
            process.set_exit_status(0)
        return process

    try:
        campaign = node(orm.WorkChainNode, 'CampaignWorkChain')
        caller = node(orm.WorkChainNode, 'SamplingWorkChain', campaign)
        orphan = node(orm.CalcFunctionNode, 'collect_snapshots', caller)
        other = node(orm.CalcFunctionNode, 'select_candidates', caller)
        failed = node(orm.CalcFunctionNode, 'quench_targets', caller, state='excepted')
        node(orm.CalcFunctionNode, 'earlier', caller, state='finished')  # same label finished before the kill
        earlier = node(orm.CalcFunctionNode, 'earlier', caller)
        time.sleep(0.01)
        killed_time = datetime.now(UTC)
        time.sleep(0.01)
        assert not interrupted_and_relaunched(orphan, killed_time)  # not run again yet
        running = node(orm.CalcFunctionNode, 'collect_snapshots', caller, state='running')
        assert not interrupted_and_relaunched(orphan, killed_time)  # the rerun has not finished
        rerun = node(orm.CalcFunctionNode, 'collect_snapshots', caller, state='finished')
        node(orm.CalcFunctionNode, 'quench_targets', caller, state='finished')
        node(orm.WorkChainNode, 'SamplingWorkChain', campaign, state='finished')
        assert interrupted_and_relaunched(orphan, killed_time)
        assert not interrupted_and_relaunched(other, killed_time)  # another function: still unfinished
        assert not interrupted_and_relaunched(earlier, killed_time)  # its sibling finished before the kill
        assert not interrupted_and_relaunched(failed, killed_time)  # excepted: a failure, rerun or not
        assert not interrupted_and_relaunched(running, killed_time)  # started after the kill
        assert not interrupted_and_relaunched(rerun, killed_time)
        assert not interrupted_and_relaunched(caller, killed_time)  # a workchain has checkpoints: never excused
    finally:  # the profile is the campaign test's, whose checks count every process in it
        delete_nodes([process.pk for process in created if process.is_stored], dry_run=False)
