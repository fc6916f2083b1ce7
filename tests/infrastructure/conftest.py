"""Real services on 127.0.0.1 (scripts/services.sh): Slurm behind an SSH server, PostgreSQL and RabbitMQ.

The session fixture starts them and stops what it started. Without them the tests fail when
``CRYSTALGAN_REQUIRE_SERVICES`` is set (``scripts/test.sh`` and CI) and are skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVICES_SCRIPT = Path(__file__).parents[2] / 'scripts' / 'services.sh'
REQUIRED = bool(os.environ.get('CRYSTALGAN_REQUIRE_SERVICES'))
SLURM_COMPUTER = 'slurm-ssh'
RABBITMQ = {
    'broker_protocol': 'amqp',
    'broker_username': 'guest',
    'broker_password': 'guest',
    'broker_host': '127.0.0.1',
    'broker_port': 5672,
    'broker_virtual_host': '',
}


def unavailable(reason: str):
    """Fail when the services are required, skip otherwise."""
    message = f'{reason} (the infrastructure tests need `bash scripts/services.sh install` as root)'
    if REQUIRED:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def services_script(command: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ['bash', str(SERVICES_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        unavailable(f'`services.sh {command}` failed:\n{result.stdout}\n{result.stderr}')
    return result.stdout


@pytest.fixture(scope='session')
def services() -> dict[str, str]:
    """Start Slurm, munge, sshd, PostgreSQL and RabbitMQ; return the settings to reach them; stop them at the end."""
    if os.geteuid() != 0:
        unavailable('the services run system daemons and need root')
    started = time.monotonic()
    services_script('start')
    print(f'services started in {time.monotonic() - started:.1f} s', file=sys.stderr)
    settings = dict(line.split('=', 1) for line in services_script('env').splitlines() if '=' in line)
    try:
        yield settings
    finally:
        services_script('stop')


def slurm_computer(services: dict[str, str], workdir: Path):
    """The ``slurm-ssh`` computer of the loaded profile: Slurm through ``core.ssh`` on 127.0.0.1, polled each second."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_computer(SLURM_COMPUTER)
    except NotExistent:
        pass
    computer = orm.Computer(
        label=SLURM_COMPUTER,
        hostname='127.0.0.1',
        transport_type='core.ssh',
        scheduler_type='core.slurm',
        workdir=str(workdir),
    ).store()
    computer.configure(
        username=os.environ.get('USER') or 'root',
        port=int(services['CRYSTALGAN_SSH_PORT']),
        key_filename=services['CRYSTALGAN_SSH_KEY'],
        look_for_keys=False,
        allow_agent=False,
        key_policy='AutoAddPolicy',
        safe_interval=0.1,
    )
    computer.set_minimum_job_poll_interval(1.0)
    computer.set_default_mpiprocs_per_machine(1)
    return computer


def slurm_codes(services: dict[str, str], workdir: Path) -> dict[str, object]:
    """The plugin's codes on ``slurm-ssh``, registered as on a cluster: ``setup --executable-dir``."""
    from aiida import orm

    from aiida_crystalgan.cli.setup import ensure_codes

    slurm_computer(services, workdir)
    labels = ensure_codes(SLURM_COMPUTER, executable_dir=str(Path(sys.executable).parent))
    return {executable: orm.load_code(label) for executable, label in labels.items()}


@pytest.fixture
def slurm(services, tmp_path_factory) -> dict[str, object]:
    """The codes ``crystalgan-mlip``, ``-train`` and ``-generate`` on the Slurm computer of the loaded profile."""
    return slurm_codes(services, tmp_path_factory.mktemp('slurm-work'))


@contextlib.contextmanager
def postgres_database(services: dict[str, str]):
    """A fresh PostgreSQL database on 127.0.0.1, dropped on exit; yields its ``core.psql_dos`` storage settings."""
    import psycopg

    name = f'crystalgan_test_{secrets.token_hex(4)}'
    credentials = {
        'host': '127.0.0.1',
        'port': 5432,
        'user': services['CRYSTALGAN_PG_USER'],
        'password': services['CRYSTALGAN_PG_PASSWORD'],
    }
    with psycopg.connect(dbname='postgres', autocommit=True, **credentials) as connection:
        connection.execute(f'CREATE DATABASE {name}')
    try:
        yield {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': '127.0.0.1',
            'database_port': 5432,
            'database_username': credentials['user'],
            'database_password': credentials['password'],
            'database_name': name,
        }
    finally:
        with psycopg.connect(dbname='postgres', autocommit=True, **credentials) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')


@pytest.fixture(scope='module')
def production_profile(services, aiida_config, tmp_path_factory):
    """A PostgreSQL + RabbitMQ profile, loaded for the module; its daemon is stopped at the end.

    Not a test profile: the task queue of a test profile expires seconds after its last consumer, so the processes
    of a killed daemon would be lost, which is not what happens in production.
    """
    from aiida.engine.daemon.client import DaemonException, get_daemon_client
    from aiida.manage.configuration import create_profile, profile_context

    default = aiida_config.default_profile_name
    name = f'crystalgan-production-{secrets.token_hex(4)}'
    with postgres_database(services) as storage_config:
        storage_config['repository_uri'] = tmp_path_factory.mktemp('psql-repository').as_uri()
        profile = create_profile(
            aiida_config,
            storage_backend='core.psql_dos',
            storage_config=storage_config,
            broker_backend='core.rabbitmq',
            broker_config=RABBITMQ,
            name=name,
            email='test@localhost',
        )
        aiida_config.set_option('daemon.timeout', 120, scope=name)
        aiida_config.set_option('warnings.development_version', False, scope=name)
        # services.sh sets RabbitMQ's consumer_timeout to undefined: the version warning does not apply.
        aiida_config.set_option('warnings.rabbitmq_version', False, scope=name)
        aiida_config.store()
        try:
            with profile_context(profile, allow_switch=True):
                yield profile
                client = get_daemon_client(name)
                with contextlib.suppress(DaemonException):
                    if client.is_daemon_running:
                        client.stop_daemon(wait=True)
        finally:
            aiida_config.delete_profile(name, delete_storage=False)
            aiida_config.set_default_profile(default, overwrite=True)
            aiida_config.store()
