"""Shared fixtures: a temporary SQLite profile with the ZeroMQ broker, and the codes the plugin runs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from aiida_crystalgan.workflows.protocols import recursive_merge

pytest_plugins = ['aiida.tools.pytest_fixtures']

#: The smallest campaign settings: every stage takes seconds.
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

#: The smallest GAN that trains (fields of ``GanConfig``): three steps of one-layer networks on cells of up to 8 atoms.
TINY_GAN = {
    'steps': 3,
    'batch_size': 4,
    'n_max': 8,
    'cutoff': 4.0,
    'num_rbf': 6,
    'latent_dim': 8,
    'generator_width': 16,
    'generator_depth': 1,
    'critic_width': 16,
    'critic_depth': 1,
    'physics_width': 16,
    'physics_depth': 1,
    'critic_steps': 1,
    'physics_pretrain_steps': 2,
    'physics_warmup_steps': 1,
    'log_every': 1,
}


@pytest.fixture(scope='session')
def aiida_profile(aiida_config, aiida_profile_factory):
    """A temporary SQLite profile with the ZeroMQ broker, so that daemon tests need no RabbitMQ."""
    with aiida_profile_factory(aiida_config, broker_backend='core.zeromq') as profile:
        aiida_config.set_option('daemon.timeout', 120, scope=profile.name)
        aiida_config.store()
        yield profile


@pytest.fixture(scope='session')
def daemon_client(aiida_profile):
    """aiida-core's ``daemon_client``, except that a daemon already stopped is not stopped again at the end.

    ``aiida_profile_clean`` stops the daemon (``reset_storage``); aiida-core's fixture then sends ``quit`` to a daemon
    that is gone and waits ``daemon.timeout`` (120 s) for the answer at the end of the session.
    """
    from aiida.engine.daemon import get_daemon_client

    client = get_daemon_client(aiida_profile.name)
    yield client
    if client.is_daemon_running:
        client.stop_daemon(wait=True)


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
                label=label,
                computer=aiida_localhost,
                filepath_executable=_executable(executable),
                default_calc_job_plugin=default_calc_job_plugin,
                with_mpi=False,
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


@pytest.fixture
def tiny_overrides():
    """Overrides that shrink the `fast` protocol until every stage takes seconds (``TINY``, updated by keywords)."""

    def factory(**overrides):
        return recursive_merge(TINY, overrides)

    return factory


@pytest.fixture(scope='session')
def tiny_gan():
    """Return a factory of the smallest GAN configurations (``TINY_GAN``, updated by keywords), as fresh dicts."""

    def factory(**values):
        return {**TINY_GAN, **values}

    return factory


@pytest.fixture
def tiny_gan_config(tiny_gan):
    """The smallest GAN configuration, ``TINY_GAN``, as a fresh dict."""
    return tiny_gan()


def pytest_collection_modifyitems(config, items):
    """Start the slow tests first, so that two xdist workers finish together (the tests that share the system
    services are one `xdist_group`, on one worker)."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)
