"""``verdi data crystalgan``: the plugin's data commands under ``verdi data``."""

from __future__ import annotations

import click

from .dataset import dataset


@click.group('crystalgan')
def cmd_data_crystalgan() -> None:
    """Datasets and models of aiida-crystalgan."""


cmd_data_crystalgan.add_command(dataset)
