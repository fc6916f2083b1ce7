"""Fault injection in a whole campaign: crashing candidates, a SIGKILLed training job and a killed daemon worker.

The smallest campaign (``crystalgan.campaign``, the ``fast`` protocol shrunk by :data:`TINY`, MLIP engine, Nb-O with
two known phases) runs twice through a daemon (one worker, ZeroMQ broker), with the same seeds:

* **clean**: the real ``crystalgan-mlip`` and ``crystalgan-train``;
* **faulty**: (a) a ``crystalgan-mlip`` that dies (``os._exit(9)``) when the generation stage's full relaxation
  reaches one of ``--fraction`` of the candidates it validates (candidates are the ``c<index>`` keys of
  ``results/running.json``; drawn with ``--seed`` + 1 among the clean run's validated candidates, so the fraction is
  exact; the cheap pass of the same candidates is left alone), (b) a ``crystalgan-train`` that SIGKILLs itself once,
  just after its first periodic checkpoint (``checkpoint_every_steps``), and (c) the daemon's worker SIGKILLed once,
  ``--kill-after`` seconds into the first CalcJob of stage ``--kill-stage``; the daemon is restarted if circus does
  not start a new worker; with ``--second-start``, (d) the job of that CalcJob started a second time in its working
  directory as soon as its job script is there, as a daemon that takes over does when the killed one died while
  submitting it.

Reported (JSON): each campaign's exit status and wall time, the load average, the predicted and rejected structures
compared key by key (StructureMatcher, energies), whether the final GAN weights are identical, the failures with their
exit codes, the CalcJobs per stage, and the engine CPU seconds (``status.json`` timing of every CalcJob; the killed
jobs' from what they recorded before dying) of each run, faulty minus clean, with the repeated jobs.

    OMP_NUM_THREADS=1 python benchmarks/fault_injection_campaign.py [--fraction 0.1] [--validations 10] [--seed 0] \
        [--num-per-target 24] [--cheap-pass 40] [--kill-stage QuenchWorkChain] [--kill-after 5] [--second-start] \
        [--output docs/benchmarks/fault_injection_campaign.json]

Runs in a temporary AiiDA profile (SQLite; ZeroMQ broker) that is deleted afterwards; CHGNet and the GAN on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _profile import temporary_profile, use_configuration_directory
from fault_injection import (
    FAULT_LEDGER,
    code,
    daemon_workers,
    fault_ledger,
    faulty_runner,
    kill_daemon_workers,
    localhost,
    write_summary,
)

#: The smallest campaign settings (the ``TINY`` overrides of the test suite): every stage takes seconds.
TINY = {
    'max_formula_units': 1,
    'seeds': {'max_atoms': 4},
    'sampling': {'temperatures': [800], 'steps': 20, 'timestep': 2.0, 'sample_interval': 5},
    'quench': {'max_snapshots': 1},
    'stability': {
        'relax': {'fmax': 0.1, 'max_steps': 60},
        'force_tolerance': 0.15,
        'phonons': {'supercell_min_length': 4.0, 'mesh': [2, 2, 2], 'frequency_tolerance': 0.5},
    },
    'training': {
        'config': {
            'steps': 12,
            'batch_size': 8,
            'n_max': 8,
            'generator_width': 32,
            'critic_width': 16,
            'physics_width': 16,
            'log_every': 4,
            'physics_warmup_steps': 4,
        }
    },
    'generation': {'num_per_target': 8, 'max_validations': 2},
}
#: The known phases given to the campaign (as in the campaign test): bcc Nb and NbO.
REFERENCES = [
    Path(__file__).parents[1] / 'examples' / 'references' / 'nb-o' / name for name in ('Nb-bcc.cif', 'NbO-Pm-3m.cif')
]
#: Checkpoint entries that hold timings (``metrics``, the loss history's ``seconds_per_step``), not the model.
NOT_COMPARED = {'metrics', 'seconds_per_step'}
#: Keys under which the generation stage hands its candidates to the engine (``c<index>``).
CANDIDATE_PREFIX = 'c'

FAULTY_TRAINER = '''#!{python}
"""crystalgan-train that SIGKILLs itself just after its first periodic checkpoint, once (marker {marker!r})."""
import json, os, signal, sys
from pathlib import Path
from aiida_crystalgan.gan import cli, training
from aiida_crystalgan.io.status import process_timing

marker = Path({marker!r})
save_checkpoint = training.save_checkpoint


def save_then_die(path, state):
    save_checkpoint(path, state)
    if Path(path).name == training.CHECKPOINT_FILE and not marker.exists():
        record = {{'job': 'train', 'step': int(state['step']), 'cwd': os.getcwd(), **process_timing()}}
        marker.write_text(json.dumps(record))
        with open({ledger!r}, 'a') as ledger:
            ledger.write(json.dumps(record) + '\\n')
        os.kill(os.getpid(), signal.SIGKILL)


training.save_checkpoint = save_then_die
sys.exit(cli.train_main())
'''


def faulty_trainer(directory: Path) -> Path:
    """Write the ``crystalgan-train`` that kills itself after its first periodic checkpoint into ``directory``."""
    script = directory / 'faulty-train'
    script.write_text(
        FAULTY_TRAINER.format(
            python=sys.executable, marker=str(directory / 'train-killed.json'), ledger=str(directory / FAULT_LEDGER)
        )
    )
    script.chmod(0o755)
    return script


def campaign_overrides(validations: int, num_per_target: int, cheap_pass: int | None, checkpoint_every: int) -> dict:
    """:data:`TINY` with ``validations`` candidates validated after a cheap pass of ``cheap_pass`` (default: at least
    12 and ``validations``), and periodic checkpoints."""
    overrides = json.loads(json.dumps(TINY))
    size = cheap_pass if cheap_pass is not None else max(12, validations)
    overrides['generation'].update(
        {'num_per_target': num_per_target, 'max_validations': validations, 'cheap_pass': {'size': size}}
    )
    overrides['training']['config']['checkpoint_every_steps'] = checkpoint_every
    return overrides


def build_campaign(mlip, train, generate, overrides: dict):
    """The campaign's builder for Nb-O with the known phases :data:`REFERENCES`."""
    from aiida import orm
    from pymatgen.core import Structure

    from aiida_crystalgan.workflows.campaign import CampaignWorkChain

    references = {
        path.stem.replace('-', '_'): orm.StructureData(pymatgen=Structure.from_file(path)) for path in REFERENCES
    }
    return CampaignWorkChain.get_builder_from_protocol(
        'Nb-O', mlip, train, generate, protocol='fast', overrides=overrides, references=references
    )


def kill_workers_once(client, killed: list[int], timeout: float = 60) -> dict:
    """After ``killed`` workers were SIGKILLed: wait for circus to start another one, else restart the daemon."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        fresh = [worker.pid for worker in daemon_workers(client) if worker.pid not in killed]
        if fresh:
            return {'new_workers': fresh, 'restarted_by': 'circus', 'after_seconds': time.monotonic() - start}
        time.sleep(1)
    client.restart_daemon(wait=True)
    return {
        'new_workers': [worker.pid for worker in daemon_workers(client)],
        'restarted_by': 'restart_daemon',
        'after_seconds': timeout,
    }


def running_calcjobs(campaign, process_label: str) -> list:
    """The CalcJobs not terminated yet under the campaign's child stage ``process_label``."""
    from aiida import orm

    return [
        node
        for child in campaign.called
        if child.process_label == process_label
        for node in child.called_descendants
        if isinstance(node, orm.CalcJobNode) and not node.is_terminated
    ]


def start_job_again(job) -> dict | None:
    """Start the job of the CalcJob ``job`` a second time in its working directory, as the daemon that takes over does
    when its predecessor died while submitting it (aiida-core#3183); ``None`` before the job script is there."""
    import subprocess

    workdir = job.get_remote_workdir()
    if not workdir or not (Path(workdir) / '_aiidasubmit.sh').exists():
        return None
    process = subprocess.Popen(  # noqa: S603 - the job script that AiiDA wrote, run as the scheduler runs it
        ['bash', '_aiidasubmit.sh'], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return {'pk': job.pk, 'pid': process.pid}


def await_campaign(
    client, node, timeout: float, kill_stage: str | None, kill_after: float, second_start: bool = False
) -> dict:
    """Wait for the campaign ``node`` to end, sampling the load; SIGKILL the workers once during ``kill_stage`` and,
    with ``second_start``, start the job of that stage's first running CalcJob a second time."""
    start, loads, killed, started_again = time.monotonic(), [], None, None
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f'campaign <{node.pk}> not finished after {timeout} s')
        loads.append(os.getloadavg()[0])
        if kill_stage and (killed is None or (second_start and started_again is None)):
            jobs = running_calcjobs(node, kill_stage)
            if second_start and started_again is None and jobs:
                started_again = start_job_again(min(jobs, key=lambda job: job.ctime))
            if killed is None and jobs and time.time() - min(job.ctime.timestamp() for job in jobs) > kill_after:
                pids = kill_daemon_workers(client)
                killed = {
                    'stage': kill_stage,
                    'seconds_into_campaign': time.monotonic() - start,
                    'running_calcjobs': [{'pk': job.pk, 'label': job.process_label} for job in jobs],
                    'killed_workers': pids,
                    **kill_workers_once(client, pids),
                }
        time.sleep(0.5 if second_start and started_again is None else 2)
    return {
        'wall_seconds': time.monotonic() - start,
        'load_average': {'mean': float(np.mean(loads)) if loads else None, 'max': max(loads, default=None)},
        'daemon_kill': killed,
        'second_start': started_again,
    }


def status_timing(node) -> dict | None:
    """``timing`` (wall and CPU seconds) of the ``status.json`` that a CalcJob of the plugin retrieved."""
    from aiida_crystalgan.io.status import STATUS_FILE

    if 'retrieved' not in node.outputs:
        return None
    for path in node.outputs.retrieved.base.repository.glob():
        if path.name == STATUS_FILE:
            return json.loads(node.outputs.retrieved.base.repository.get_object_content(path)).get('timing')
    return None


def step_of(node, stage: str) -> str:
    """``stage``, split for the generation's engine work into ``cheap pass`` and ``validation`` (relax, phonons)."""
    if stage != 'validation':
        return stage
    caller = node.caller
    while caller is not None and caller.process_label != 'GenerationWorkChain':
        if caller.process_label == 'StabilityWorkChain':
            return 'validation'
        caller = caller.caller
    return 'cheap pass'


def calcjob_ledger(campaign, ledger: list[dict]) -> list[dict]:
    """Every CalcJob of ``campaign``: stage, exit status, structures, CPU and wall seconds (``status.json``, else the
    record a killed executable left in ``ledger``, matched by working directory), and whether its job started twice."""
    from aiida import orm

    from aiida_crystalgan.tools.cost import cost_rows

    killed = {record['cwd']: record for record in ledger}
    jobs = []
    for row in cost_rows(campaign):
        node = orm.load_node(row['pk'])
        if not isinstance(node, orm.CalcJobNode):
            continue
        timing = status_timing(node)
        source = 'status.json'
        if timing is None and node.get_remote_workdir() in killed:
            timing, source = killed[node.get_remote_workdir()], 'recorded before the kill'
        jobs.append(
            {
                'pk': node.pk,
                'process_label': node.process_label,
                'caller': node.caller.pk,
                'stage': step_of(node, row['stage']),
                'exit_status': node.exit_status,
                'exit_message': node.exit_message,
                'structures': sorted(node.inputs.structures) if 'structures' in node.inputs else [],
                'cpu_seconds': timing.get('cpu_seconds') if timing else None,
                'wall_seconds': timing.get('wall_seconds') if timing else None,
                'timing_source': source if timing else None,
                'started_twice': started_twice(node),
            }
        )
    return jobs


def started_twice(node) -> bool:
    """Whether the job of ``node`` was started a second time while the first ran (the daemon died while submitting
    it): the second start says so on the executable's stderr (``io.status.sole_instance``)."""
    if 'retrieved' not in node.outputs:
        return False
    repository = node.outputs.retrieved.base.repository
    return any(
        'another instance runs' in repository.get_object_content(name, mode='rb').decode(errors='replace')
        for name in repository.list_object_names()
        if name.endswith('.err')
    )


def per_stage(jobs: list[dict]) -> dict[str, dict]:
    """CalcJobs, their exit statuses and their CPU seconds summed per stage."""
    stages: dict[str, dict] = {}
    for job in jobs:
        entry = stages.setdefault(job['stage'], {'calcjobs': 0, 'exit_statuses': Counter(), 'cpu_seconds': 0.0})
        entry['calcjobs'] += 1
        entry['exit_statuses'][str(job['exit_status'])] += 1
        entry['cpu_seconds'] += job['cpu_seconds'] or 0.0
    return {stage: {**entry, 'exit_statuses': dict(entry['exit_statuses'])} for stage, entry in stages.items()}


def failures(campaign, jobs: list[dict]) -> dict:
    """Failed CalcJobs, and the structures that the engine batches report as failed, with their exit codes."""
    from aiida import orm

    failed_structures = {}
    for node in campaign.called_descendants:
        if isinstance(node, orm.WorkflowNode) and 'failures' in node.outputs:
            for key, entry in node.outputs.failures.get_dict().items():
                failed_structures[f'{node.process_label}<{node.pk}>:{key}'] = {
                    name: entry.get(name) for name in ('exit_status', 'exit_label', 'message')
                }
    return {
        'calcjobs': [
            {name: job[name] for name in ('pk', 'process_label', 'stage', 'exit_status', 'exit_message')}
            for job in jobs
            if job['exit_status'] != 0
        ],
        'structures': failed_structures,
    }


def validation_node(campaign):
    """The ``StabilityWorkChain`` that validated the candidates in the generation stage (``None`` if it did not run)."""
    for child in campaign.called:
        if child.process_label == 'GenerationWorkChain':
            return next((node for node in child.called if node.process_label == 'StabilityWorkChain'), None)
    return None


def verdicts(campaign) -> dict[str, dict]:
    """Each validated candidate's verdict (``predicted``, ``rejected`` or ``failed``), energy and relaxed structure."""
    validation = validation_node(campaign)
    if validation is None:
        return {}
    namespaces = {
        key: namespace
        for namespace in ('predicted', 'rejected')
        if namespace in campaign.outputs
        for key in campaign.outputs[namespace]
    }
    results = validation.outputs.results if 'results' in validation.outputs else {}
    relaxed = validation.outputs.relaxed_structures if 'relaxed_structures' in validation.outputs else {}
    table = {}
    for key in validation.inputs.structures:
        table[key] = {
            'verdict': namespaces.get(key, 'failed' if key not in results else 'not evaluated'),
            'energy_eV': results[key].base.attributes.get('energy') if key in results else None,
            'structure': relaxed[key].get_pymatgen() if key in relaxed else None,
            'formula': relaxed[key].get_formula() if key in relaxed else None,
            'rejection_reason': relaxed[key].base.extras.get('crystalgan_rejection_reason', None)
            if key in relaxed
            else None,
        }
    return table


def compare_verdicts(clean: dict[str, dict], faulty: dict[str, dict], poisoned: list[str]) -> dict:
    """Candidate by candidate: same verdict, same relaxed structure (StructureMatcher) and energy difference."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    rows = {}
    for key in sorted(set(clean) | set(faulty)):
        before, after = clean.get(key, {}), faulty.get(key, {})
        both = before.get('structure') is not None and after.get('structure') is not None
        energies = before.get('energy_eV'), after.get('energy_eV')
        rows[key] = {
            'poisoned': key in poisoned,
            'formula': before.get('formula') or after.get('formula'),
            'clean': before.get('verdict'),
            'faulty': after.get('verdict'),
            'structures_match': bool(matcher.fit(before['structure'], after['structure'])) if both else None,
            'energy_difference_eV': abs(energies[1] - energies[0]) if None not in energies else None,
        }
    others = [row for key, row in rows.items() if key not in poisoned]
    return {
        'candidates': rows,
        'identical_apart_from_poisoned': all(
            row['clean'] == row['faulty'] and row['structures_match'] is not False for row in others
        ),
        'poisoned_failed_in_faulty': all(rows[key]['faulty'] == 'failed' for key in poisoned if key in rows),
        'max_energy_difference_eV': max(
            (row['energy_difference_eV'] for row in others if row['energy_difference_eV'] is not None), default=None
        ),
    }


def model_state(campaign, directory: Path) -> dict | None:
    """The trained GAN's checkpoint (``weights_only`` load) of ``campaign``, or ``None`` without a model."""
    import torch

    if 'model' not in campaign.outputs:
        return None
    path = campaign.outputs.model.write_file(directory / f'model-{campaign.pk}.pt')
    return torch.load(path, map_location='cpu', weights_only=True)


def tensor_differences(clean, faulty, path: str = '') -> list[str]:
    """Paths of the tensors (and numbers) that differ between two checkpoints, but for :data:`NOT_COMPARED`."""
    import torch

    if isinstance(clean, dict) and isinstance(faulty, dict):
        keys = (set(clean) | set(faulty)) - NOT_COMPARED
        return [
            d
            for key in sorted(keys, key=str)
            for d in tensor_differences(clean.get(key), faulty.get(key), f'{path}/{key}')
        ]
    if isinstance(clean, torch.Tensor) and isinstance(faulty, torch.Tensor):
        return [] if clean.shape == faulty.shape and torch.equal(clean, faulty) else [path]
    if isinstance(clean, (list, tuple)) and isinstance(faulty, (list, tuple)) and len(clean) == len(faulty):
        return [
            d for index, pair in enumerate(zip(clean, faulty)) for d in tensor_differences(*pair, f'{path}/{index}')
        ]
    return [] if clean == faulty else [path]


def summarise(node, waited: dict, jobs: list[dict]) -> dict:
    """One campaign's outcome, timings and CalcJobs."""
    return {
        'pk': node.pk,
        'exit_status': node.exit_status,
        'exit_message': node.exit_message,
        'finished_ok': node.is_finished_ok,
        'created_to_last_change_seconds': (node.mtime - node.ctime).total_seconds(),
        **waited,
        'stages': per_stage(jobs),
        'failures': failures(node, jobs),
        'started_twice': [job['pk'] for job in jobs if job['started_twice']],
        'calcjobs': jobs,
    }


def recomputed(clean_jobs: list[dict], faulty_jobs: list[dict]) -> dict:
    """CPU seconds per stage, faulty minus clean, and the faulty run's jobs that the clean run did not need."""
    clean, faulty = per_stage(clean_jobs), per_stage(faulty_jobs)
    extra = {
        stage: faulty[stage]['cpu_seconds'] - clean.get(stage, {}).get('cpu_seconds', 0.0)
        for stage in sorted(set(clean) | set(faulty))
        if stage in faulty
    }
    submitted = Counter((job['stage'], job['caller'], key) for job in faulty_jobs for key in job['structures'])
    return {
        'cpu_seconds_faulty_minus_clean': extra,
        'total_cpu_seconds': {
            'clean': sum(job['cpu_seconds'] or 0.0 for job in clean_jobs),
            'faulty': sum(job['cpu_seconds'] or 0.0 for job in faulty_jobs),
        },
        'failed_jobs': [
            {name: job[name] for name in ('pk', 'process_label', 'stage', 'exit_status', 'cpu_seconds', 'structures')}
            for job in faulty_jobs
            if job['exit_status'] != 0
        ],
        'structures_submitted_more_than_once': {  # by the same engine workchain (keys repeat across batches)
            f'{stage}:{caller}:{key}': count for (stage, caller, key), count in sorted(submitted.items()) if count > 1
        },
    }


def report(directory: Path, clean, faulty, poisoned: list[str], waits: dict[str, dict]) -> dict:
    """Compare the finished ``clean`` and ``faulty`` campaigns of the profile in ``directory``."""
    ledger = fault_ledger(directory)
    clean_jobs, faulty_jobs = calcjob_ledger(clean, []), calcjob_ledger(faulty, ledger)
    clean_model, faulty_model = model_state(clean, directory), model_state(faulty, directory)
    differences = (
        tensor_differences(clean_model, faulty_model) if clean_model is not None and faulty_model is not None else None
    )
    validation = validation_node(clean)
    return {
        'validated_candidates': sorted(validation.inputs.structures) if validation else [],
        'poisoned_candidates': poisoned,
        'fault_records': ledger,
        'predictions': compare_verdicts(verdicts(clean), verdicts(faulty), poisoned),
        'model': {
            'identical_weights': differences == [] if differences is not None else None,
            'differing_entries': differences,
            'steps': [state['step'] if state else None for state in (clean_model, faulty_model)],
        },
        'recomputed': recomputed(clean_jobs, faulty_jobs),
        'runs': {
            name: summarise(node, waits.get(name, {}), jobs)
            for name, node, jobs in (('clean', clean, clean_jobs), ('faulty', faulty, faulty_jobs))
        },
    }


def poison(clean, fraction: float, seed: int) -> list[str]:
    """``fraction`` (at least one) of the candidates that ``clean`` validated, drawn with ``seed``."""
    validation = validation_node(clean)
    validated = sorted(validation.inputs.structures) if validation else []
    candidates = [key for key in validated if key.startswith(CANDIDATE_PREFIX) and key[1:].isdigit()]
    count = max(1, round(fraction * len(candidates))) if candidates else 0
    return sorted(np.random.default_rng(seed).choice(candidates, size=count, replace=False).tolist()) if count else []


def run_campaigns(directory: Path, args: argparse.Namespace, overrides: dict) -> dict:
    """Run the clean then the faulty campaign in a daemon of a new profile in ``directory``; report them."""
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    temporary_profile(directory / 'aiida', broker_backend='core.zeromq')
    computer = localhost(directory / 'work')
    bindir = Path(sys.executable).parent
    mlip = code(computer, 'mlip', str(bindir / 'crystalgan-mlip'))
    train = code(computer, 'train', str(bindir / 'crystalgan-train'), 'crystalgan.train')
    generate = code(computer, 'generate', str(bindir / 'crystalgan-generate'), 'crystalgan.generate')
    client = get_daemon_client()
    client.start_daemon(number_workers=1)
    try:
        clean = submit(build_campaign(mlip, train, generate, overrides))
        waits = {'clean': await_campaign(client, clean, args.timeout, None, 0)}
        poisoned = poison(clean, args.fraction, args.seed + 1)
        faulty_mlip = code(
            computer, 'faulty-mlip', str(faulty_runner(directory, poisoned, overrides['stability']['relax']))
        )
        faulty_train = code(computer, 'faulty-train', str(faulty_trainer(directory)), 'crystalgan.train')
        faulty = submit(build_campaign(faulty_mlip, faulty_train, generate, overrides))
        print(f'clean campaign <{clean.pk}>, faulty campaign <{faulty.pk}>', file=sys.stderr)
        waits['faulty'] = await_campaign(
            client, faulty, args.timeout, args.kill_stage, args.kill_after, args.second_start
        )
    finally:
        client.stop_daemon(wait=True)
    return report(directory, clean, faulty, poisoned, waits)


def resume_report(directory: Path, clean_pk: int, faulty_pk: int, timeout: float) -> dict:
    """Restart the daemon of a kept profile (``directory``), wait for the faulty campaign to end and report both."""
    use_configuration_directory(directory / 'aiida')
    from aiida import load_profile, orm
    from aiida.engine.daemon.client import get_daemon_client

    load_profile('benchmark', allow_switch=True)
    clean, faulty = orm.load_node(clean_pk), orm.load_node(faulty_pk)
    waits = {}
    if not faulty.is_terminated:
        client = get_daemon_client()
        if not client.is_daemon_running:
            client.start_daemon(number_workers=1)
        try:
            waits['faulty'] = await_campaign(client, faulty, timeout, None, 0)
        finally:
            client.stop_daemon(wait=True)
    poisoned = json.loads((directory / 'crash.json').read_text())['keys']
    return report(directory, clean, faulty, poisoned, waits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--fraction', type=float, default=0.1, help='fraction of the validated candidates that crash')
    parser.add_argument('--validations', type=int, default=10, help="the generation's max_validations")
    parser.add_argument('--num-per-target', type=int, default=24, help='candidates generated per target')
    parser.add_argument(
        '--cheap-pass',
        type=int,
        help='size of the cheap engine pass (up to 4 times as many candidates are post-processed for it); '
        'default: the larger of 12 and --validations',
    )
    parser.add_argument('--checkpoint-every', type=int, default=4, help="the training's checkpoint_every_steps")
    parser.add_argument('--seed', type=int, default=0, help='draws the crashing candidates (with seed + 1)')
    parser.add_argument('--kill-stage', default='QuenchWorkChain', help='stage during which the worker is killed')
    parser.add_argument('--kill-after', type=float, default=5, help="seconds into the stage's first running CalcJob")
    parser.add_argument(
        '--second-start',
        action='store_true',
        help="also start the job of the kill stage's first CalcJob a second time, in its working directory",
    )
    parser.add_argument('--timeout', type=float, default=3600, help='seconds per campaign')
    parser.add_argument(
        '--resume',
        nargs=3,
        metavar=('DIRECTORY', 'CLEAN_PK', 'FAULTY_PK'),
        help='the kept profile of an interrupted benchmark: restart its daemon, await the faulty campaign, report',
    )
    parser.add_argument('--note', help='free text stored in the report (what happened to the run)')
    parser.add_argument('--output', type=Path, help='JSON report')
    args = parser.parse_args(argv)

    overrides = campaign_overrides(args.validations, args.num_per_target, args.cheap_pass, args.checkpoint_every)
    directory = Path(args.resume[0]) if args.resume else Path(tempfile.mkdtemp(prefix='crystalgan-campaign-faults-'))
    try:
        if args.resume:
            results = resume_report(directory, int(args.resume[1]), int(args.resume[2]), args.timeout)
        else:
            results = run_campaigns(directory, args, overrides)
    except BaseException:
        print(f'kept the profile and the jobs in {directory} for inspection (and --resume)', file=sys.stderr)
        raise
    if all(run.get('finished_ok') for run in results.get('runs', {}).values()):
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f'a campaign failed: kept the profile and the jobs in {directory} for inspection', file=sys.stderr)
    summary = {
        'command': 'OMP_NUM_THREADS=1 python benchmarks/fault_injection_campaign.py ' + ' '.join(argv or sys.argv[1:]),
        'note': args.note,
        'overrides': overrides,
        'crash_parameters': overrides['stability']['relax'],
        'cpu_count': os.cpu_count(),
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        **results,
    }
    write_summary(summary, args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
