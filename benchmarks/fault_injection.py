"""Fault injection at the engine level: a batch of candidates in which a set fraction crash the MLIP runner.

A clean run and a faulty run relax the same candidates (same seeds) with ``MlipEngineWorkChain``. In the faulty run a
wrapper of ``crystalgan-mlip`` kills the runner (``os._exit(9)``, as a segfault or the OOM killer would) whenever it
reaches one of the chosen candidates. Reported: which candidates succeeded, the largest energy difference of the
others against the clean run, the calculations and model loads each run needed, wall-clock times, and the structures
computed more than once (the recomputed work).

With ``--daemon-kill SECONDS`` a third run submits the faulty batch to a daemon (ZeroMQ broker, one worker) and
SIGKILLs the worker that many seconds after the first calculation was submitted; circus starts a new worker, which
continues the workchain from its last checkpoint. The peak number of processes alive at once is recorded (the daemon
slots the batch needs).

    python benchmarks/fault_injection.py [--candidates 20] [--fraction 0.1] [--seed 0] [--daemon-kill 20] \
        [--skip-faulty] [--output docs/benchmarks/fault_injection.json]

Runs in a temporary AiiDA profile (SQLite; ZeroMQ broker) that is deleted afterwards; CHGNet on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _profile import temporary_profile

#: File, in the benchmark's temporary directory, where the faulty executables record what they were doing.
FAULT_LEDGER = 'faults.jsonl'

FAULTY_RUNNER = '''#!{python}
"""crystalgan-mlip that dies (exit 9, no status.json) when it reaches a structure of {crash_file}.

The crash file holds the ``keys`` to crash on and the ``parameters`` (a subset of the operation's parameters) of the
calculations in which they crash. Before dying, the runner appends its directory and timing to {ledger!r}.
"""
import json, os, sys
from aiida_crystalgan.io.status import process_timing
from aiida_crystalgan.mlip import runner

crash = json.load(open({crash_file!r}))
evaluate = runner.evaluate


def faulty(operation, atoms, calculator, config, **options):
    key = json.load(open('results/running.json'))['key']
    parameters = config.get('parameters', {{}})
    if key in crash['keys'] and all(parameters.get(name) == value for name, value in crash['parameters'].items()):
        with open({ledger!r}, 'a') as ledger:
            ledger.write(json.dumps({{'job': 'mlip', 'key': key, 'cwd': os.getcwd(), **process_timing()}}) + '\\n')
        os._exit(9)
    return evaluate(operation, atoms, calculator, config, **options)


runner.evaluate = faulty
sys.exit(runner.main())
'''


def faulty_runner(directory: Path, keys: list[str], parameters: dict | None = None) -> Path:
    """Write a ``crystalgan-mlip`` that crashes on ``keys`` in calculations with ``parameters`` into ``directory``.

    Each crash appends the job's directory and CPU and wall seconds to ``directory / 'faults.jsonl'`` (the killed
    runner writes no ``status.json``).
    """
    crash_file = directory / 'crash.json'
    crash_file.write_text(json.dumps({'keys': sorted(keys), 'parameters': parameters or {}}))
    script = directory / 'faulty-mlip'
    script.write_text(
        FAULTY_RUNNER.format(python=sys.executable, crash_file=str(crash_file), ledger=str(directory / FAULT_LEDGER))
    )
    script.chmod(0o755)
    return script


def fault_ledger(directory: Path) -> list[dict]:
    """The records that the faulty executables appended to ``directory / 'faults.jsonl'`` before dying."""
    path = directory / FAULT_LEDGER
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def localhost(workdir: Path):
    """A configured localhost computer running jobs in ``workdir``."""
    from aiida import orm

    computer = orm.Computer(
        label='localhost',
        hostname='localhost',
        transport_type='core.local',
        scheduler_type='core.direct',
        workdir=str(workdir),
    ).store()
    computer.configure()
    computer.set_default_mpiprocs_per_machine(1)
    return computer


def code(computer, label: str, executable: str, plugin: str = 'crystalgan.mlip'):
    """An ``InstalledCode`` ``label`` on ``computer`` running ``executable`` for the CalcJob ``plugin``."""
    from aiida import orm

    return orm.InstalledCode(
        label=label, computer=computer, filepath_executable=executable, default_calc_job_plugin=plugin, with_mpi=False
    ).store()


def candidates(count: int, seed: int) -> dict:
    """``count`` rattled Nb and NbO cells, as a GAN would propose them: keys ``c000``, ``c001``..."""
    from aiida import orm
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    structures = {}
    for index in range(count):
        atoms = bulk('Nb', 'bcc', a=3.3, cubic=True) if index % 2 else bulk('NbO', 'rocksalt', a=4.3)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 31)))
        atoms.set_cell(atoms.cell * (1 + rng.normal(0, 0.03)), scale_atoms=True)
        structures[f'c{index:03d}'] = orm.StructureData(ase=atoms)
    return structures


def alive_processes() -> int:
    """The processes of the profile that are neither finished nor excepted nor killed (each holds a daemon slot)."""
    from aiida import orm

    query = orm.QueryBuilder().append(
        orm.ProcessNode, filters={'attributes.process_state': {'in': ['created', 'waiting', 'running']}}
    )
    return query.count()


def daemon_workers(client) -> list:
    """The daemon's live worker processes (``psutil``); a killed worker that circus has not reaped is left out."""
    import psutil

    workers = []
    for child in psutil.Process(client.get_daemon_pid()).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and 'worker' in ' '.join(child.cmdline()):
                workers.append(child)
        except psutil.Error:  # it ended while we looked
            continue
    return workers


def kill_daemon_workers(client) -> list[int]:
    """SIGKILL the daemon's workers (circus starts new ones); return their pids."""
    workers = daemon_workers(client)
    for worker in workers:
        worker.kill()
    return [worker.pid for worker in workers]


def run_in_daemon(inputs: dict, kill_after: float, timeout: float = 3600) -> tuple[object, dict]:
    """Submit the engine to a daemon, SIGKILL its worker ``kill_after`` s after the first job, wait for the end."""
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_crystalgan.engines.mlip.workchain import MlipEngineWorkChain

    client = get_daemon_client()
    client.start_daemon(number_workers=1)
    try:
        node = submit(MlipEngineWorkChain, **inputs)
        start, killed, peak = time.monotonic(), None, 0
        while not node.is_terminated and time.monotonic() - start < timeout:
            peak = max(peak, alive_processes())
            jobs = [n for n in node.called if isinstance(n, orm.CalcJobNode)]
            if killed is None and jobs and time.time() - jobs[0].ctime.timestamp() > kill_after:
                killed = {'pids': kill_daemon_workers(client), 'after_seconds': time.monotonic() - start}
            time.sleep(1)
    finally:
        client.stop_daemon(wait=True)
    return node, {'killed_workers': killed, 'peak_alive_processes': peak}


def run_batch(mlip, structures: dict, parameters: dict, kill_after: float | None = None) -> dict:
    """Relax ``structures`` with the engine; the outcome, the calculations and the work done."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_crystalgan.engines.mlip.workchain import MlipEngineWorkChain

    inputs = {
        'code': mlip,
        'operation': orm.Str('relax'),
        'parameters': orm.Dict(parameters),
        'structures': structures,
        'options': orm.Dict({'withmpi': False}),
    }
    start = time.perf_counter()
    daemon = {}
    if kill_after is None:
        _, node = run_get_node(MlipEngineWorkChain, **inputs)
    else:
        node, daemon = run_in_daemon(inputs, kill_after)
    results = node.outputs
    seconds = time.perf_counter() - start
    calculations = sorted((n for n in node.called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)
    evaluated: dict[str, int] = {}
    for calculation in calculations:
        finished = set(calculation.outputs.results) if 'results' in calculation.outputs else set()
        for key in finished:
            evaluated[key] = evaluated.get(key, 0) + 1
    return {
        'ok': node.is_finished_ok,
        'exit_status': node.exit_status,
        'seconds': seconds,
        'energies': {
            key: r.base.attributes.get('energy') for key, r in (results.results.items() if 'results' in results else ())
        },
        'failures': results.failures.get_dict() if 'failures' in results else {},
        'calculations': [{'structures': len(c.inputs.structures), 'exit_status': c.exit_status} for c in calculations],
        'recomputed': sum(count - 1 for count in evaluated.values()),
        **daemon,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--candidates', type=int, default=20)
    parser.add_argument('--fraction', type=float, default=0.1, help='fraction of the candidates that crash the engine')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--daemon-kill',
        type=float,
        help='also run the faulty batch in a daemon whose worker is '
        'SIGKILLed this many seconds after the first calculation started',
    )
    parser.add_argument('--skip-faulty', action='store_true', help='leave out the faulty run without the daemon')
    parser.add_argument('--output', type=Path, help='JSON report')
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix='crystalgan-faults-'))
    try:
        temporary_profile(tmp / 'aiida', broker_backend='core.zeromq')
        computer = localhost(tmp / 'work')
        bindir = Path(sys.executable).parent
        clean = code(computer, 'mlip', str(bindir / 'crystalgan-mlip'))
        structures = candidates(args.candidates, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        crash = sorted(
            rng.choice(sorted(structures), size=max(1, round(args.fraction * len(structures))), replace=False).tolist()
        )
        faulty = code(computer, 'faulty-mlip', str(faulty_runner(tmp, crash)))
        parameters = {'fmax': 0.05, 'max_steps': 100, 'relax_cell': True}

        runs = {'clean': run_batch(clean, structures, parameters)}
        if not args.skip_faulty:
            runs['faulty'] = run_batch(faulty, structures, parameters)
        if args.daemon_kill is not None:
            runs['faulty_daemon_killed'] = run_batch(faulty, structures, parameters, kill_after=args.daemon_kill)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    good = sorted(set(structures) - set(crash))
    clean_energies = runs['clean']['energies']
    faulty_run = runs['faulty' if 'faulty' in runs else 'faulty_daemon_killed']
    faulty_energies = faulty_run['energies']
    summary = {
        'candidates': len(structures),
        'crashing': crash,
        'seed': args.seed,
        'cpu_count': os.cpu_count(),
        'load_average': os.getloadavg()[0],
        'faulty_succeeded_exactly_the_good_ones': sorted(faulty_energies) == good,
        'crashing_reported_as': sorted({entry['exit_label'] for entry in faulty_run['failures'].values()}),
        'max_energy_difference_eV': {
            name: max(abs(run['energies'][key] - clean_energies[key]) for key in good if key in run['energies'])
            for name, run in runs.items()
        },
        'runs': runs,
    }
    write_summary(summary, args.output)
    return 0


def write_summary(summary: dict, output: Path | None) -> None:
    """Print ``summary`` as JSON and write it to ``output`` when given."""
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if output:
        output.write_text(text + '\n')


if __name__ == '__main__':
    sys.exit(main())
