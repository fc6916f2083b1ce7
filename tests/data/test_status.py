"""A second start of the same job (``io.status.sole_instance``): it waits for the first and takes its outcome."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path

from aiida_crystalgan.io.status import EXIT_OK, EXIT_SOFT_WALLCLOCK, LOCK_FILE, sole_instance, write_status

SECOND_START = """
import sys
from aiida_crystalgan.io.status import sole_instance
with sole_instance(sys.argv[1]) as earlier:
    print(earlier)
"""


def hold_lock(directory: Path):
    """The lock of ``directory`` as a first instance holds it while it runs."""
    handle = open(directory / LOCK_FILE, 'a')  # noqa: SIM115 - held across the test's steps
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def start(arguments: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``arguments`` and return once the process waits for the lock (it says so on stderr)."""
    process = subprocess.Popen(arguments, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if 'another instance runs' in line:
            return process
    raise AssertionError(f'the process ended without waiting for the lock (exit {process.wait()})')


def test_a_second_start_waits_for_the_first_and_takes_its_status(tmp_path):
    first = hold_lock(tmp_path)
    second = start([sys.executable, '-c', SECOND_START, str(tmp_path)], tmp_path)
    time.sleep(1)
    assert second.poll() is None, 'the second start waits while the first runs'
    write_status(tmp_path, EXIT_SOFT_WALLCLOCK, 'stopped before the limit')
    first.close()
    out, err = second.communicate(timeout=60)
    assert out.strip() == str(EXIT_SOFT_WALLCLOCK)
    assert 'its outputs stand' in err


def test_a_first_start_and_a_later_run_do_the_work(tmp_path):
    """A free lock means no other instance runs: a status left by an earlier, finished run does not stop this one."""
    with sole_instance(tmp_path) as earlier:
        assert earlier is None
    write_status(tmp_path, EXIT_OK, 'done')
    with sole_instance(tmp_path) as earlier:
        assert earlier is None


def test_a_second_start_after_a_first_that_died_does_the_work(tmp_path):
    first = hold_lock(tmp_path)
    second = start([sys.executable, '-c', SECOND_START, str(tmp_path)], tmp_path)
    time.sleep(1)
    first.close()  # died without a status
    out, err = second.communicate(timeout=60)
    assert out.strip() == 'None' and 'died without a status' in err


def test_the_mlip_runner_started_twice_computes_once(tmp_path):
    """``crystalgan-mlip`` started while a first instance holds the job's directory: it waits, computes nothing,
    leaves the first's results and status as they are and exits with its code (before, two runners raced in the
    directory and one failed on the other's ``running.json``)."""
    (tmp_path / 'results').mkdir()
    (tmp_path / 'input.json').write_text(json.dumps({'operation': 'forces', 'structures': 'absent.h5'}))
    first = hold_lock(tmp_path)
    runner = Path(sys.executable).with_name('crystalgan-mlip')
    second = start([str(runner), 'input.json'], tmp_path)
    time.sleep(1)
    assert second.poll() is None
    write_status(tmp_path / 'results', EXIT_OK, '1 structures, 0 failed', finished=1, failed=0)
    first.close()
    _, err = second.communicate(timeout=120)
    assert second.returncode == EXIT_OK, err
    status = json.loads((tmp_path / 'results' / 'status.json').read_text())
    assert status['message'] == '1 structures, 0 failed', 'the first start stands: the input was not even read'
