"""``aiida-crystalgan setup``: a working profile and the plugin's codes on ``localhost`` or a remote computer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

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


def code_executables(computer, executable_dir: str | None) -> dict[str, str]:
    """Path of each console script on ``computer``: under ``executable_dir``, or this machine's for a local computer."""
    if executable_dir is not None:
        directory = PurePosixPath(executable_dir)
        if not directory.is_absolute():
            raise click.ClickException(f'--executable-dir `{executable_dir}` is not an absolute path')
        return {executable: str(directory / executable) for executable in CODES}
    if computer.transport_type != 'core.local':
        raise click.ClickException(
            f'computer `{computer.label}` is remote (transport `{computer.transport_type}`): the executables of this '
            'machine do not exist there. Install aiida-crystalgan on it and pass the directory of its console '
            'scripts with --executable-dir (e.g. the `bin` folder of its virtual environment).'
        )
    return {executable: executable_path(executable) for executable in CODES}


def ensure_codes(computer_label: str, executable_dir: str | None = None, prepend_text: str = '') -> dict[str, str]:
    """Create (once) an ``InstalledCode`` on ``computer_label`` for each console script of the plugin.

    Existing codes are kept; with ``executable_dir`` or ``prepend_text`` given they must match them, else refused.
    """
    from aiida import load_profile, orm
    from aiida.common.exceptions import NotExistent

    load_profile(allow_switch=True)
    try:
        computer = orm.load_computer(computer_label)
    except Exception as exception:  # noqa: BLE001 - not existent or ambiguous
        raise click.ClickException(f'computer `{computer_label}` not found: {exception}') from exception
    paths = code_executables(computer, executable_dir)
    created = {}
    for executable, plugin in CODES.items():
        label = executable.replace('-', '_')
        full_label = f'{label}@{computer.label}'
        try:
            code = orm.load_code(full_label)
        except NotExistent:
            orm.InstalledCode(
                label=label,
                computer=computer,
                filepath_executable=paths[executable],
                default_calc_job_plugin=plugin,
                with_mpi=False,
                prepend_text=prepend_text,
            ).store()
        else:
            existing = (str(code.filepath_executable), code.prepend_text)
            if (executable_dir is not None or prepend_text) and existing != (paths[executable], prepend_text):
                raise click.ClickException(
                    f'code `{full_label}` already exists and runs `{existing[0]}` with another set-up; '
                    f'delete it (`verdi code delete {full_label}`) or register the codes on another computer label'
                )
        created[executable] = full_label
    return created


@click.command('setup')
@click.option(
    '--profile-name', default='crystalgan', show_default=True, help='Name of the profile to create when none exists.'
)
@click.option(
    '--computer',
    'computer_label',
    default='localhost',
    show_default=True,
    help='Computer on which the codes are set up.',
)
@click.option(
    '--executable-dir',
    type=str,
    default=None,
    help='Directory of the console scripts on that computer (required for a remote computer), '
    'e.g. the `bin` folder of the virtual environment where aiida-crystalgan is installed there.',
)
@click.option(
    '--prepend-text',
    type=str,
    default='',
    help='Shell lines run before each executable, e.g. `module load cuda` or `source <venv>/bin/activate`.',
)
def setup(profile_name: str, computer_label: str, executable_dir: str | None, prepend_text: str) -> None:
    """Set up a profile (SQLite + ZeroMQ when none exists) and the plugin's three codes on a computer.

    On ``localhost`` the codes run this installation's console scripts; on a remote computer (a cluster) they run
    those under ``--executable-dir`` (see docs/cluster.md).
    """
    ensure_profile(profile_name)
    for executable, label in ensure_codes(computer_label, executable_dir, prepend_text).items():
        echo.echo_success(f'code `{label}` runs `{executable}`')
