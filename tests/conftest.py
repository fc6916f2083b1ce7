"""Shared fixtures: a temporary SQLite profile with the ZeroMQ broker, and the codes the plugin runs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']


@pytest.fixture(scope='session')
def aiida_profile(aiida_config, aiida_profile_factory):
    """A temporary SQLite profile with the ZeroMQ broker, so that daemon tests need no RabbitMQ."""
    with aiida_profile_factory(aiida_config, broker_backend='core.zeromq') as profile:
        aiida_config.set_option('daemon.timeout', 120, scope=profile.name)
        aiida_config.store()
        yield profile


def _executable(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f'console script `{name}` is not installed: run `pip install -e .`')
    return found


@pytest.fixture
def installed_code(aiida_localhost):
    """Return a factory of ``InstalledCode``s on ``localhost`` for the plugin's console scripts."""
    from aiida import orm

    def factory(executable: str, default_calc_job_plugin: str):
        label = executable.replace('-', '_')
        try:
            return orm.load_code(f'{label}@{aiida_localhost.label}')
        except Exception:  # noqa: BLE001 - not created yet in this profile
            code = orm.InstalledCode(
                label=label, computer=aiida_localhost, filepath_executable=_executable(executable),
                default_calc_job_plugin=default_calc_job_plugin, with_mpi=False,
            )
            return code.store()

    return factory


@pytest.fixture
def mlip_code(installed_code):
    """The MLIP engine's code (``crystalgan-mlip``) on localhost."""
    return installed_code('crystalgan-mlip', 'crystalgan.mlip')


@pytest.fixture
def train_code(installed_code):
    """The GAN training code (``crystalgan-train``) on localhost."""
    return installed_code('crystalgan-train', 'crystalgan.train')


@pytest.fixture
def generate_code(installed_code):
    """The GAN generation code (``crystalgan-generate``) on localhost."""
    return installed_code('crystalgan-generate', 'crystalgan.generate')
