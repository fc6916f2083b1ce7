"""Time the README's main job as a new user sees it: wall time to the candidate table, CPU time of every process.

Runs ``bash scripts/demo.sh`` in a checkout (by default a fresh ``git clone`` of this repository, so that the
``.venv`` is created too) as a child of a subreaper, so that the CPU time of the daemon and of the calculations it
starts is counted although they detach from the script. Samples ``/proc/loadavg`` every 30 s, because on a shared
machine the wall time says little without the load. Linux only.

    python benchmarks/demo_timing.py --clone-into /tmp/demo-fresh --output docs/benchmarks/demo_timing.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
STAMP = re.compile(r'^\[demo \+(\d+) s\] (.*)$')


def become_subreaper() -> None:
    """Adopt the processes that the demo detaches (the daemon), so that their CPU time is counted on exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER) failed')


def sample_load(samples: list[float], stop: threading.Event, interval_s: float = 30.0) -> None:
    """Append the 1-minute load average every ``interval_s`` seconds until ``stop`` is set."""
    while not stop.is_set():
        samples.append(float(Path('/proc/loadavg').read_text().split()[0]))
        stop.wait(interval_s)


def reap_orphans() -> None:
    """Wait for every adopted process that is still running (the daemon is stopped by the demo's exit trap)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_demo(checkout: Path, log_path: Path) -> dict:
    """Run the demo in ``checkout``; return its step stamps, wall time, CPU time and load samples."""
    become_subreaper()
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(samples, stop), daemon=True)
    sampler.start()
    stamps: list[tuple[int, str]] = []
    start = time.monotonic()
    with (
        log_path.open('w') as log,
        subprocess.Popen(
            ['bash', 'scripts/demo.sh'], cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            match = STAMP.match(line.strip())
            if match:
                stamps.append((int(match.group(1)), match.group(2)))
        returncode = process.wait()
    wall_s = time.monotonic() - start
    reap_orphans()
    stop.set()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        'returncode': returncode,
        'wall_s': round(wall_s, 1),
        'cpu_user_s': round(usage.ru_utime, 1),
        'cpu_system_s': round(usage.ru_stime, 1),
        'load_average': {
            'mean': round(statistics.fmean(samples), 2) if samples else None,
            'min': min(samples, default=None),
            'max': max(samples, default=None),
            'samples': len(samples),
        },
        'steps': [{'seconds': seconds, 'step': step} for seconds, step in stamps],
        'first_candidate_table_s': next((s for s, step in stamps if step == 'candidate table'), None),
    }


def main() -> int:
    """Clone (or reuse) a checkout, run the demo there and write the measurement as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--clone-into', type=Path, help='fresh clone of this repository to run in (must not exist)')
    parser.add_argument('--checkout', type=Path, help='an existing checkout to run in instead (keeps its .venv)')
    parser.add_argument('--output', type=Path, required=True, help='JSON file for the measurement')
    args = parser.parse_args()
    if (args.clone_into is None) == (args.checkout is None):
        parser.error('give exactly one of --clone-into and --checkout')
    if args.clone_into is not None:
        if args.clone_into.exists():
            parser.error(f'{args.clone_into} exists: a fresh clone needs a new directory')
        repository = Path(__file__).resolve().parents[1]
        subprocess.run(['git', 'clone', '--quiet', str(repository), str(args.clone_into)], check=True)
        checkout = args.clone_into
    else:
        checkout = args.checkout
    commit = subprocess.run(
        ['git', 'rev-parse', 'HEAD'], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout.strip()
    result = {'commit': commit, 'fresh_clone': args.clone_into is not None, 'cores': os.cpu_count()}
    result.update(run_demo(checkout, args.output.with_suffix('.log')))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps({key: value for key, value in result.items() if key != 'steps'}, indent=2))
    return result['returncode']


if __name__ == '__main__':
    sys.exit(main())
