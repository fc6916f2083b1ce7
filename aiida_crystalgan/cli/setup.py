"""``aiida-crystalgan setup``: a working profile, the ``localhost`` computer and the plugin's codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
from aiida.cmdline.utils import echo

CODES = {
    'crystalgan-mlip': 'crystalgan.mlip',
    'crystalgan-train': 'crystalgan.train',
    'crystalgan-generate': 'crystalgan.generate',
}


def executable_path(name: str) -> str:
    """Absolute path of one of the package's console scripts (beside the running Python first)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise click.ClickException(f'console script `{name}` not found: is aiida-crystalgan installed?')
    return found


def ensure_profile(profile_name: str) -> None:
    """Create a SQLite + ZeroMQ profile with ``verdi presto`` when no profile is configured."""
    from aiida.manage.configuration import get_config, reset_config

    try:
        config = get_config(create=True)
    except Exception as exception:  # noqa: BLE001 - report any configuration problem to the user
        raise click.ClickException(f'cannot read the AiiDA configuration: {exception}') from exception
    if config.profiles:
        echo.echo_report(f'using the existing default profile `{config.default_profile_name}`')
        return
    verdi = executable_path('verdi')
    command = [verdi, 'presto', '--use-zeromq', '--profile-name', profile_name]
    echo.echo_report(f'creating profile `{profile_name}` (SQLite storage, ZeroMQ broker)')
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise click.ClickException(f'`verdi presto` failed:\n{result.stdout}\n{result.stderr}')
    reset_config()


def ensure_codes(computer_label: str) -> dict[str, str]:
    """Create (once) an ``InstalledCode`` on ``computer_label`` for each console script of the plugin."""
    from aiida import load_profile, orm

    load_profile(allow_switch=True)
    try:
        computer = orm.load_computer(computer_label)
    except Exception as exception:  # noqa: BLE001 - not existent or ambiguous
        raise click.ClickException(f'computer `{computer_label}` not found: {exception}') from exception
    created = {}
    for executable, plugin in CODES.items():
        label = executable.replace('-', '_')
        full_label = f'{label}@{computer.label}'
        try:
            orm.load_code(full_label)
        except Exception:  # noqa: BLE001 - the code does not exist yet
            orm.InstalledCode(label=label, computer=computer, filepath_executable=executable_path(executable),
                              default_calc_job_plugin=plugin, with_mpi=False).store()
        created[executable] = full_label
    return created


@click.command('setup')
@click.option('--profile-name', default='crystalgan', show_default=True,
              help='Name of the profile to create when none exists.')
@click.option('--computer', 'computer_label', default='localhost', show_default=True,
              help='Computer on which the codes are set up.')
def setup(profile_name: str, computer_label: str) -> None:
    """Set up the embedded default: profile (SQLite + ZeroMQ), localhost and the three codes."""
    ensure_profile(profile_name)
    for executable, label in ensure_codes(computer_label).items():
        echo.echo_success(f'code `{label}` runs `{executable}`')
