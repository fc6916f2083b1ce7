"""A throw-away AiiDA profile for the benchmark scripts (imported as ``_profile`` when a script runs from here)."""

from __future__ import annotations

import os
from pathlib import Path


def use_configuration_directory(dirpath: Path) -> None:
    """Point AiiDA (this process and the ``verdi`` it starts) at the configuration under ``dirpath``.

    Setting ``AIIDA_PATH`` alone is not enough once ``aiida`` has been imported: it reads the variable at import.
    """
    os.environ['AIIDA_PATH'] = str(dirpath)
    from aiida.manage.configuration import reset_config
    from aiida.manage.configuration.settings import AiiDAConfigDir

    AiiDAConfigDir.set()
    reset_config()


def temporary_profile(dirpath: Path, broker_backend: str | None = None) -> None:
    """Create and load a throw-away SQLite profile under ``dirpath`` (with ``core.zeromq`` as broker for a daemon)."""
    use_configuration_directory(dirpath)
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    config = get_config(create=True)
    profile = create_profile(
        config,
        storage_backend='core.sqlite_dos',
        storage_config={'filepath': str(dirpath / 's')},
        broker_backend=broker_backend,
        name='benchmark',
        email='benchmark@localhost',
        is_test_profile=True,
    )
    config.set_default_profile(profile.name)
    # circus answers slowly on a loaded machine: the 2 s default times out calls such as `stop_daemon`
    config.set_option('daemon.timeout', 60, scope=profile.name)
    config.store()
    load_profile(profile.name, allow_switch=True)
