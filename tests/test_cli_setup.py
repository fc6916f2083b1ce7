"""``aiida-crystalgan setup`` for a remote computer: codes under ``--executable-dir``, never this machine's paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida import orm
from click.testing import CliRunner

from aiida_crystalgan.cli import cmd_root

LABELS = ('crystalgan_mlip', 'crystalgan_train', 'crystalgan_generate')


def invoke(*arguments: str):
    return CliRunner().invoke(cmd_root, list(arguments))


@pytest.fixture
def cluster(aiida_computer):
    """A remote Slurm computer (not configured: setting up codes needs no connection)."""
    return aiida_computer(hostname='cluster.example.org', transport_type='core.ssh', scheduler_type='core.slurm')


def codes_on(computer) -> list[orm.InstalledCode]:
    return (
        orm.QueryBuilder()
        .append(orm.Computer, filters={'id': computer.pk}, tag='computer')
        .append(orm.InstalledCode, with_computer='computer')
        .all(flat=True)
    )


def test_remote_codes_run_the_executables_under_the_given_directory(cluster):
    arguments = (
        'setup',
        '--computer',
        cluster.label,
        '--executable-dir',
        '/opt/crystalgan/venv/bin',
        '--prepend-text',
        'module load cuda/12.4',
    )
    for _ in range(2):
        result = invoke(*arguments)
        assert result.exit_code == 0, result.output
    assert len(codes_on(cluster)) == 3
    for label in LABELS:
        code = orm.load_code(f'{label}@{cluster.label}')
        assert str(code.filepath_executable) == f'/opt/crystalgan/venv/bin/{label.replace("_", "-")}'
        assert code.prepend_text == 'module load cuda/12.4'


def test_remote_computer_refuses_the_local_executables(cluster):
    result = invoke('setup', '--computer', cluster.label)
    assert result.exit_code != 0
    assert f'computer `{cluster.label}` is remote' in result.output
    assert '--executable-dir' in result.output
    assert codes_on(cluster) == []


def test_relative_executable_dir_is_refused(cluster):
    result = invoke('setup', '--computer', cluster.label, '--executable-dir', 'venv/bin')
    assert result.exit_code != 0
    assert '`venv/bin` is not an absolute path' in result.output
    assert codes_on(cluster) == []


def test_existing_codes_with_another_directory_are_refused(cluster):
    assert invoke('setup', '--computer', cluster.label, '--executable-dir', '/opt/a/bin').exit_code == 0
    result = invoke('setup', '--computer', cluster.label, '--executable-dir', '/opt/b/bin')
    assert result.exit_code != 0
    assert 'already exists and runs `/opt/a/bin/crystalgan-mlip`' in result.output
    assert str(orm.load_code(f'crystalgan_mlip@{cluster.label}').filepath_executable) == '/opt/a/bin/crystalgan-mlip'


def test_local_computer_keeps_this_installation_s_executables(aiida_localhost):
    result = invoke('setup', '--computer', aiida_localhost.label)
    assert result.exit_code == 0, result.output
    code = orm.load_code(f'crystalgan_train@{aiida_localhost.label}')
    assert Path(code.filepath_executable).is_file()
